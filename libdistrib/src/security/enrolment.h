#pragma once
// What enrolment trusts, as data: enrolment tokens (shown once as "distrib-enrol-ID-SECRET"; only
// the secret's SHA-256 is kept), the enrolment bundle an administrator hands to a new host
// (server URLs, the CA certificate, optionally a token) and the check of a CA certificate
// against a fingerprint given out of band. Every parser throws Error(invalid_argument) naming
// what is wrong and never echoes a secret.
#include <cstdint>
#include <string>
#include <vector>

namespace distrib::security {

/// A new token: its public id, the text handed to hosts (shown once) and the hash kept.
struct NewToken {
  std::string id;
  std::string text;
  std::string secret_hash;
};
NewToken make_enrol_token();

/// The id and the hash of the secret of a token's text.
struct TokenParts {
  std::string id;
  std::string secret_hash;
};
TokenParts parse_enrol_token(const std::string& text);

/// What a new host needs to enrol: where its parents are, which CA to trust, and optionally a
/// token that has it accepted at once.
struct EnrolBundle {
  std::vector<std::string> servers;  ///< parent URLs, https, in order of preference
  std::string ca_certificate;        ///< PEM
  std::string token;                 ///< may be empty: the request then waits for approval
  std::string publishers;            ///< the signed trusted publisher set (publishers.h); may be empty
};
std::string write_bundle(const EnrolBundle& b);
/// Parses and checks a bundle: at least one https server, a CA certificate that is a CA, a
/// well-formed token when one is given.
EnrolBundle read_bundle(const std::string& text);

/// What a host signs when it registers below `parent` at `at` (unix seconds): its placement, which
/// the relays above pass up so that a host may move between relays on its own word, not theirs.
std::string placement_statement(const std::string& host_id, const std::string& parent, std::int64_t at);

/// Throws Error(forbidden) unless the CA certificate's fingerprint is `expected`
/// ("sha256:HEX", case-insensitive, colons between bytes allowed).
void check_ca_fingerprint(const std::string& ca_pem, const std::string& expected);

}  // namespace distrib::security
