// Enrolment tokens, bundles and CA fingerprints (enrolment.h).
#include "security/enrolment.h"

#include <distrib/content/digest.h>
#include <distrib/error.h>

#include "security/pki.h"
#include "util/random.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>

namespace distrib::security {

namespace bj = boost::json;

namespace {
constexpr std::string_view kTokenPrefix = "distrib-enrol-";
constexpr std::size_t kIdHex = 8, kSecretHex = 48;
constexpr std::size_t kMaxBundle = 256 * 1024;

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}
}  // namespace

NewToken make_enrol_token() {
  NewToken t;
  t.id = util::random_hex(kIdHex / 2, "token id");
  const auto secret = util::random_hex(kSecretHex / 2, "token secret");
  t.text = std::string(kTokenPrefix) + t.id + "-" + secret;
  t.secret_hash = sha256_hex(secret);
  return t;
}

TokenParts parse_enrol_token(const std::string& text) {
  const std::string_view s = text;
  const auto bad =
      Error(ErrorKind::invalid_argument,
            "not an enrolment token (expected distrib-enrol-ID-SECRET, as distribctl enrol-token "
            "create prints it)");
  if (!s.starts_with(kTokenPrefix) || s.size() != kTokenPrefix.size() + kIdHex + 1 + kSecretHex) throw bad;
  const auto id = s.substr(kTokenPrefix.size(), kIdHex);
  const auto secret = s.substr(kTokenPrefix.size() + kIdHex + 1);
  if (s[kTokenPrefix.size() + kIdHex] != '-' || !is_hex(id) || !is_hex(secret)) throw bad;
  return TokenParts{std::string(id), sha256_hex(secret)};
}

std::string write_bundle(const EnrolBundle& b) {
  bj::array servers;
  for (const auto& s : b.servers) servers.emplace_back(s);
  bj::object o{{"servers", std::move(servers)}, {"ca_certificate", b.ca_certificate}};
  if (!b.token.empty()) o["token"] = b.token;
  if (!b.publishers.empty()) o["publishers"] = b.publishers;
  return bj::serialize(o) + "\n";
}

std::string placement_statement(const std::string& host_id, const std::string& parent, std::int64_t at) {
  return "distrib-placement\n" + host_id + "\n" + parent + "\n" + std::to_string(at);
}

EnrolBundle read_bundle(const std::string& text) {
  if (text.size() > kMaxBundle)
    throw Error(ErrorKind::invalid_argument, "an enrolment bundle is at most 256 KiB");
  bj::error_code ec;
  auto v = bj::parse(text, ec);
  if (ec || !v.is_object())
    throw Error(ErrorKind::invalid_argument, "the enrolment bundle is not a JSON object");
  const auto& o = v.as_object();
  EnrolBundle b;
  if (auto it = o.find("servers"); it != o.end() && it->value().is_array())
    for (const auto& s : it->value().as_array()) {
      if (!s.is_string() || !std::string_view(s.as_string()).starts_with("https://"))
        throw Error(ErrorKind::invalid_argument, "the enrolment bundle's servers must be https:// URLs");
      b.servers.emplace_back(s.as_string());
    }
  if (b.servers.empty()) throw Error(ErrorKind::invalid_argument, "the enrolment bundle names no server");
  if (auto it = o.find("ca_certificate"); it != o.end() && it->value().is_string())
    b.ca_certificate = std::string(it->value().as_string());
  if (b.ca_certificate.empty() || !pki::inspect_certificate(b.ca_certificate).is_ca)
    throw Error(ErrorKind::invalid_argument, "the enrolment bundle's ca_certificate is not a CA certificate");
  if (auto it = o.find("token"); it != o.end()) {
    if (!it->value().is_string())
      throw Error(ErrorKind::invalid_argument, "the enrolment bundle's token is not text");
    b.token = std::string(it->value().as_string());
    parse_enrol_token(b.token);
  }
  // Verified by the agent against the bundle's CA when it takes the set.
  if (auto it = o.find("publishers"); it != o.end()) {
    if (!it->value().is_string())
      throw Error(ErrorKind::invalid_argument, "the enrolment bundle's publishers are not text");
    b.publishers = std::string(it->value().as_string());
  }
  return b;
}

void check_ca_fingerprint(const std::string& ca_pem, const std::string& expected) {
  std::string want;
  for (char c : expected)
    if (c != ':') want += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!want.starts_with("sha256") || want.size() != 6 + 64 || !is_hex(std::string_view(want).substr(6)))
    throw Error(ErrorKind::invalid_argument, "a CA fingerprint is sha256: and 64 hex digits");
  want = "sha256:" + want.substr(6);
  const auto info = pki::inspect_certificate(ca_pem);
  if (!info.is_ca) throw Error(ErrorKind::forbidden, "the server's CA certificate is not a CA certificate");
  if (info.fingerprint != want)
    throw Error(ErrorKind::forbidden, "the server's CA has fingerprint " + info.fingerprint +
                                          ", not the one given (" + want + "); not trusting it");
}

}  // namespace distrib::security
