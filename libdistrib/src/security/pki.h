#pragma once
// The private PKI of a distrib tree: the manager's CA, certificates for servers (their names and
// addresses) and for hosts (binding a host id and a role, agent or relay), certificate signing
// requests made by hosts, and inspection and verification of both. Keys are ECDSA P-256; every
// text in and out is PEM. Every function throws Error(invalid_argument) for input it cannot
// parse or that fails its checks, naming what is wrong, and Error(internal) when OpenSSL fails.
//
// A host certificate's identity is its subjectAltName URI "urn:distrib:ROLE:HOST-ID" (ROLE:
// agent or relay); its common name is the host id for people reading it. An administrator's
// certificate names a user account instead: "urn:distrib:user:NAME" (never a host identity).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace distrib::pki {

/// A new ECDSA P-256 private key (PKCS#8 PEM).
std::string generate_key();
/// The public key of a private key (PEM), and its fingerprint "sha256:HEX" (of the DER
/// SubjectPublicKeyInfo): what an administrator compares when accepting a host.
std::string public_key_of(const std::string& key_pem);
std::string key_fingerprint(const std::string& public_key_pem);

/// Who a certificate or request speaks for.
struct Identity {
  std::string host_id;
  std::string role;  ///< "agent" or "relay"
};
/// "urn:distrib:ROLE:HOST-ID"
std::string identity_uri(const Identity& id);
/// The identity a "urn:distrib:ROLE:HOST-ID" URI names; nullopt for any other text.
std::optional<Identity> parse_identity(std::string_view uri);

/// A certificate signing request for `id`, signed with `key_pem`; a relay also asks for the DNS
/// names and IP addresses it serves its subtree on.
std::string make_request(const std::string& key_pem, const Identity& id,
                         const std::vector<std::string>& names = {},
                         const std::vector<std::string>& addresses = {});

/// An administrator's certificate identity, "urn:distrib:user:NAME", and the name such a URI
/// names (nullopt for any other text).
std::string user_uri(const std::string& name);
std::optional<std::string> parse_user(std::string_view uri);
/// A request for an administrator's certificate (the issuer decides the name it binds).
std::string make_user_request(const std::string& key_pem, const std::string& name);

struct RequestInfo {
  Identity identity;
  std::string public_key_pem;
  std::string fingerprint;                    ///< key_fingerprint of the request's key
  std::vector<std::string> names, addresses;  ///< DNS names and IP addresses asked for
};
/// Parses a request and checks its signature and its identity (a host id and a known role).
RequestInfo inspect_request(const std::string& csr_pem);

/// A certificate authority: its certificate and private key (PEM).
struct Authority {
  std::string cert_pem;
  std::string key_pem;
};
/// A new self-signed CA named `name`, valid `days` days.
Authority create_authority(const std::string& name, int days);

/// A server certificate for `key_pem`'s public key, for DNS names and IP addresses (at least one),
/// valid `days` days; usable as a client certificate too (a relay's server key talks upward).
std::string issue_server(const Authority& ca, const std::string& key_pem,
                         const std::vector<std::string>& names, const std::vector<std::string>& addresses,
                         int days, std::uint64_t serial);
/// A host certificate for the identity and key of a checked request, valid `lifetime_seconds`
/// (60 s and more). A relay's certificate is a server certificate too, for the names and
/// addresses its request asked for (it serves its subtree with it).
std::string issue_host(const Authority& ca, const std::string& csr_pem, std::int64_t lifetime_seconds,
                       std::uint64_t serial);

/// A client certificate for the account `name` and the key of a request (its signature checked;
/// the names the request asks for are ignored), valid `lifetime_seconds`.
std::string issue_user(const Authority& ca, const std::string& csr_pem, const std::string& name,
                       std::int64_t lifetime_seconds, std::uint64_t serial);

/// The top manager's order-signing certificate for `key_pem` ("urn:distrib:signer:orders", code
/// signing only): what agents check every work item against (security/orders.h).
std::string issue_signer(const Authority& ca, const std::string& key_pem, int days, std::uint64_t serial);

struct CertificateInfo {
  std::string subject;                        ///< the common name
  std::vector<Identity> identities;           ///< from urn:distrib: URIs (a host certificate has one)
  std::vector<std::string> names, addresses;  ///< DNS names and IP addresses
  std::uint64_t serial = 0;
  std::int64_t not_before = 0, not_after = 0;  ///< Unix seconds
  std::string fingerprint;                     ///< "sha256:HEX" of the certificate's DER
  std::string key_fingerprint;                 ///< key_fingerprint of its public key
  bool is_ca = false;
};
CertificateInfo inspect_certificate(const std::string& cert_pem);
/// Does the certificate name the order signer (and nothing else)?
bool is_order_signer(const CertificateInfo& info);

/// Signs `data` with `key_pem` (ECDSA with SHA-256); the signature in hex.
std::string sign(const std::string& key_pem, std::string_view data);

/// Lower-case hex of bytes, and back (false on an odd length or a character that is not
/// lower-case hex).
std::string hex_encode(std::string_view bytes);
bool hex_decode(std::string_view text, std::string& out);

/// A private key parsed once to sign many times (parsing a PEM key costs several times an ECDSA
/// signature). sign() may be called from several threads at once.
class SigningKey {
 public:
  explicit SigningKey(const std::string& key_pem);
  ~SigningKey();
  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  std::string sign(std::string_view data) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};
/// Is `signature_hex` a signature of `data` by the key `cert_pem` certifies?
bool verify_signature(const std::string& cert_pem, std::string_view data, const std::string& signature_hex);

/// Does `cert_pem` chain to `ca_cert_pem`, and is it valid at `at` (Unix seconds)? Returns an
/// empty string when it does, otherwise why not.
std::string verify(const std::string& ca_cert_pem, const std::string& cert_pem, std::int64_t at);

}  // namespace distrib::pki
