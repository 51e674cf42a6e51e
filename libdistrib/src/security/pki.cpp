// The private PKI (pki.h) on OpenSSL 3: keys, requests, certificates, verification.
#include "security/pki.h"

#include <distrib/content/digest.h>
#include <distrib/error.h>
#include <distrib/model/host.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>

namespace distrib::pki {

namespace {

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const noexcept { F(p); }
};
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using Req = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;
using Ext = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using Store = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtx = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
void free_names(GENERAL_NAMES* n) {
  GENERAL_NAMES_free(n);
}
using Names = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES, free_names>>;
void free_exts(STACK_OF(X509_EXTENSION) * s) {
  sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
}
using Exts = std::unique_ptr<STACK_OF(X509_EXTENSION), Deleter<STACK_OF(X509_EXTENSION), free_exts>>;

constexpr std::string_view kUriPrefix = "urn:distrib:";
constexpr std::size_t kMaxPem = 64 * 1024;

// The most recent OpenSSL error, for messages.
std::string ssl_error() {
  const auto code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no detail";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

[[noreturn]] void fail(const std::string& what) {
  throw Error(ErrorKind::internal, what + ": " + ssl_error());
}

void check(int ok, const char* what) {
  if (ok != 1) fail(what);
}

Bio read_bio(const std::string& pem, const char* what) {
  if (pem.empty() || pem.size() > kMaxPem)
    throw Error(ErrorKind::invalid_argument, std::string(what) + " is empty or larger than 64 KiB");
  Bio b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!b) fail("BIO_new_mem_buf");
  return b;
}

std::string bio_text(BIO* b) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

Key load_key(const std::string& pem) {
  auto b = read_bio(pem, "private key");
  Key k(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr));
  if (!k) throw Error(ErrorKind::invalid_argument, "not a PEM private key: " + ssl_error());
  return k;
}

Key load_public(const std::string& pem) {
  auto b = read_bio(pem, "public key");
  Key k(PEM_read_bio_PUBKEY(b.get(), nullptr, nullptr, nullptr));
  if (!k) throw Error(ErrorKind::invalid_argument, "not a PEM public key: " + ssl_error());
  return k;
}

Cert load_cert(const std::string& pem) {
  auto b = read_bio(pem, "certificate");
  Cert c(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
  if (!c) throw Error(ErrorKind::invalid_argument, "not a PEM certificate: " + ssl_error());
  return c;
}

Req load_req(const std::string& pem) {
  auto b = read_bio(pem, "certificate request");
  Req r(PEM_read_bio_X509_REQ(b.get(), nullptr, nullptr, nullptr));
  if (!r) throw Error(ErrorKind::invalid_argument, "not a PEM certificate request: " + ssl_error());
  return r;
}

std::string pem_of(X509* c) {
  Bio b(BIO_new(BIO_s_mem()));
  check(PEM_write_bio_X509(b.get(), c), "PEM_write_bio_X509");
  return bio_text(b.get());
}

std::string public_pem(EVP_PKEY* k) {
  Bio b(BIO_new(BIO_s_mem()));
  check(PEM_write_bio_PUBKEY(b.get(), k), "PEM_write_bio_PUBKEY");
  return bio_text(b.get());
}

std::string fingerprint_of_key(EVP_PKEY* k) {
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(k, &der);
  if (n <= 0) fail("i2d_PUBKEY");
  auto out = "sha256:" +
             sha256_hex(std::string_view(reinterpret_cast<const char*>(der), static_cast<std::size_t>(n)));
  OPENSSL_free(der);
  return out;
}

void set_name(X509_NAME* name, const std::string& cn) {
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0),
        "X509_NAME_add_entry_by_txt");
}

void add_ext(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  Ext e(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  if (!e) fail("extension " + value);
  check(X509_add_ext(cert, e.get(), -1), "X509_add_ext");
}

Identity parse_uri(std::string_view uri) {
  // urn:distrib:ROLE:HOST-ID
  if (!uri.starts_with(kUriPrefix)) return {};
  uri.remove_prefix(kUriPrefix.size());
  const auto colon = uri.find(':');
  if (colon == std::string_view::npos) return {};
  return Identity{std::string(uri.substr(colon + 1)), std::string(uri.substr(0, colon))};
}

void check_identity(const Identity& id) {
  if (id.role != "agent" && id.role != "relay")
    throw Error(ErrorKind::invalid_argument,
                "the identity's role \"" + id.role.substr(0, 32) + "\" is neither agent nor relay");
  if (!is_valid_host_id(id.host_id))
    throw Error(ErrorKind::invalid_argument,
                "the identity's host id \"" + id.host_id.substr(0, 64) + "\" is not a UUID");
}

// URIs, DNS names and IP addresses of a subjectAltName.
void read_names(const GENERAL_NAMES* names, CertificateInfo& out) {
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_URI) {
      const auto* s = g->d.uniformResourceIdentifier;
      auto id = parse_uri(std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                           static_cast<std::size_t>(ASN1_STRING_length(s))));
      if (!id.host_id.empty()) out.identities.push_back(std::move(id));
    } else if (g->type == GEN_DNS) {
      const auto* s = g->d.dNSName;
      out.names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                             static_cast<std::size_t>(ASN1_STRING_length(s)));
    } else if (g->type == GEN_IPADD) {
      const auto* s = g->d.iPAddress;
      char buf[64] = {};
      const auto* p = ASN1_STRING_get0_data(s);
      if (ASN1_STRING_length(s) == 4) {
        std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", p[0], p[1], p[2], p[3]);
        out.addresses.emplace_back(buf);
      } else if (ASN1_STRING_length(s) == 16) {
        std::string a;
        for (int k = 0; k < 16; k += 2) {
          std::snprintf(buf, sizeof buf, "%s%x", k ? ":" : "", (p[k] << 8) | p[k + 1]);
          a += buf;
        }
        out.addresses.push_back(a);
      }
    }
  }
}

// "DNS:a,IP:b" for a certificate's subjectAltName.
std::string san_of(const std::vector<std::string>& names, const std::vector<std::string>& addresses) {
  std::string san;
  for (const auto& n : names) {
    if (n.empty() || n.size() > 253 || n.find_first_of(",: ") != std::string::npos)
      throw Error(ErrorKind::invalid_argument, "\"" + n.substr(0, 64) + "\" is not a DNS name");
    san += (san.empty() ? "DNS:" : ",DNS:") + n;
  }
  for (const auto& a : addresses) {
    if (a.empty() || a.size() > 45 || a.find_first_of(", ") != std::string::npos)
      throw Error(ErrorKind::invalid_argument, "\"" + a.substr(0, 64) + "\" is not an IP address");
    san += (san.empty() ? "IP:" : ",IP:") + a;
  }
  return san;
}

std::int64_t unix_of(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

Cert new_cert(X509* issuer, EVP_PKEY* subject_key, const std::string& cn, std::int64_t seconds,
              std::uint64_t serial) {
  if (seconds < 60 || seconds > 36500LL * 86400)
    throw Error(ErrorKind::invalid_argument, "a certificate lives 1 minute to 36500 days");
  Cert c(X509_new());
  if (!c) fail("X509_new");
  check(X509_set_version(c.get(), 2), "X509_set_version");
  check(ASN1_INTEGER_set_uint64(X509_get_serialNumber(c.get()), serial), "serial");
  // A few minutes back: clocks of the tiers are never quite in step.
  if (!X509_gmtime_adj(X509_getm_notBefore(c.get()), -600)) fail("notBefore");
  if (!X509_gmtime_adj(X509_getm_notAfter(c.get()), static_cast<long>(seconds))) fail("notAfter");
  check(X509_set_pubkey(c.get(), subject_key), "X509_set_pubkey");
  set_name(X509_get_subject_name(c.get()), cn);
  check(
      X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(c.get())),
      "X509_set_issuer_name");
  return c;
}

void sign(X509* c, EVP_PKEY* key) {
  if (X509_sign(c, key, EVP_sha256()) <= 0) fail("X509_sign");
}

}  // namespace

std::string generate_key() {
  Key k(EVP_EC_gen("P-256"));
  if (!k) fail("EVP_EC_gen");
  Bio b(BIO_new(BIO_s_mem()));
  check(PEM_write_bio_PrivateKey(b.get(), k.get(), nullptr, nullptr, 0, nullptr, nullptr),
        "PEM_write_bio_PrivateKey");
  return bio_text(b.get());
}

std::string public_key_of(const std::string& key_pem) {
  return public_pem(load_key(key_pem).get());
}

std::string key_fingerprint(const std::string& public_key_pem) {
  return fingerprint_of_key(load_public(public_key_pem).get());
}

std::optional<Identity> parse_identity(std::string_view uri) {
  auto id = parse_uri(uri);
  if (id.host_id.empty() || (id.role != "agent" && id.role != "relay") || !is_valid_host_id(id.host_id))
    return std::nullopt;
  return id;
}

std::string identity_uri(const Identity& id) {
  return std::string(kUriPrefix) + id.role + ":" + id.host_id;
}

namespace {
// A request for `key_pem`'s public key, named `cn`, with the subjectAltName `san`.
std::string request_for(const std::string& key_pem, const std::string& cn, const std::string& san) {
  auto key = load_key(key_pem);
  Req r(X509_REQ_new());
  if (!r) fail("X509_REQ_new");
  check(X509_REQ_set_version(r.get(), 0), "X509_REQ_set_version");
  set_name(X509_REQ_get_subject_name(r.get()), cn);
  check(X509_REQ_set_pubkey(r.get(), key.get()), "X509_REQ_set_pubkey");
  Exts exts(sk_X509_EXTENSION_new_null());
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str());
  if (!ext) fail("subjectAltName");
  sk_X509_EXTENSION_push(exts.get(), ext);
  check(X509_REQ_add_extensions(r.get(), exts.get()), "X509_REQ_add_extensions");
  if (X509_REQ_sign(r.get(), key.get(), EVP_sha256()) <= 0) fail("X509_REQ_sign");
  Bio b(BIO_new(BIO_s_mem()));
  check(PEM_write_bio_X509_REQ(b.get(), r.get()), "PEM_write_bio_X509_REQ");
  return bio_text(b.get());
}

// The request's public key once its signature is checked (an EC key).
EVP_PKEY* checked_key(X509_REQ* r) {
  EVP_PKEY* pub = X509_REQ_get0_pubkey(r);
  if (!pub || X509_REQ_verify(r, pub) != 1)
    throw Error(ErrorKind::invalid_argument, "the certificate request's signature does not verify");
  if (EVP_PKEY_get_base_id(pub) != EVP_PKEY_EC)
    throw Error(ErrorKind::invalid_argument, "the certificate request's key is not an EC key");
  return pub;
}

constexpr std::string_view kUserRole = "user";
}  // namespace

std::string make_request(const std::string& key_pem, const Identity& id,
                         const std::vector<std::string>& names, const std::vector<std::string>& addresses) {
  check_identity(id);
  const auto extra = san_of(names, addresses);
  return request_for(key_pem, id.host_id, "URI:" + identity_uri(id) + (extra.empty() ? "" : "," + extra));
}

std::string user_uri(const std::string& name) {
  return std::string(kUriPrefix) + std::string(kUserRole) + ":" + name;
}

std::optional<std::string> parse_user(std::string_view uri) {
  auto id = parse_uri(uri);
  if (id.role != kUserRole || id.host_id.empty() || id.host_id.size() > 64) return std::nullopt;
  return id.host_id;
}

std::string make_user_request(const std::string& key_pem, const std::string& name) {
  return request_for(key_pem, name, "URI:" + user_uri(name));
}

RequestInfo inspect_request(const std::string& csr_pem) {
  auto r = load_req(csr_pem);
  EVP_PKEY* pub = checked_key(r.get());
  CertificateInfo names;
  Exts exts(X509_REQ_get_extensions(r.get()));
  for (int i = 0; exts && i < sk_X509_EXTENSION_num(exts.get()); ++i) {
    X509_EXTENSION* e = sk_X509_EXTENSION_value(exts.get(), i);
    if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) != NID_subject_alt_name) continue;
    Names n(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(e)));
    if (n) read_names(n.get(), names);
  }
  if (names.identities.size() != 1)
    throw Error(ErrorKind::invalid_argument,
                "the certificate request must name exactly one identity (urn:distrib:ROLE:HOST-ID)");
  RequestInfo out;
  out.identity = names.identities.front();
  check_identity(out.identity);
  out.public_key_pem = public_pem(pub);
  out.fingerprint = fingerprint_of_key(pub);
  out.names = std::move(names.names);
  out.addresses = std::move(names.addresses);
  return out;
}

Authority create_authority(const std::string& name, int days) {
  Authority a;
  a.key_pem = generate_key();
  auto key = load_key(a.key_pem);
  auto c = new_cert(nullptr, key.get(), name, days * 86400LL, 1);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, c.get(), c.get(), nullptr, nullptr, 0);
  add_ext(c.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_ext(c.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(c.get(), &ctx, NID_subject_key_identifier, "hash");
  sign(c.get(), key.get());
  a.cert_pem = pem_of(c.get());
  return a;
}

namespace {
// A leaf certificate for `subject_key` signed by the CA with the extensions of its kind.
std::string issue(const Authority& ca, EVP_PKEY* subject_key, const std::string& cn, const std::string& san,
                  const char* usage, std::int64_t seconds, std::uint64_t serial) {
  auto ca_cert = load_cert(ca.cert_pem);
  auto ca_key = load_key(ca.key_pem);
  auto c = new_cert(ca_cert.get(), subject_key, cn, seconds, serial);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca_cert.get(), c.get(), nullptr, nullptr, 0);
  add_ext(c.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
  add_ext(c.get(), &ctx, NID_key_usage, "critical,digitalSignature,keyAgreement");
  add_ext(c.get(), &ctx, NID_ext_key_usage, usage);
  add_ext(c.get(), &ctx, NID_subject_key_identifier, "hash");
  add_ext(c.get(), &ctx, NID_authority_key_identifier, "keyid:always");
  add_ext(c.get(), &ctx, NID_subject_alt_name, san);
  sign(c.get(), ca_key.get());
  return pem_of(c.get());
}
}  // namespace

std::string issue_server(const Authority& ca, const std::string& key_pem,
                         const std::vector<std::string>& names, const std::vector<std::string>& addresses,
                         int days, std::uint64_t serial) {
  if (names.empty() && addresses.empty())
    throw Error(ErrorKind::invalid_argument, "a server certificate needs at least one name or address");
  const auto san = san_of(names, addresses);
  auto key = load_key(key_pem);
  const auto cn = !names.empty() ? names.front() : addresses.front();
  return issue(ca, key.get(), cn, san, "serverAuth,clientAuth", days * 86400LL, serial);
}

std::string issue_host(const Authority& ca, const std::string& csr_pem, std::int64_t lifetime_seconds,
                       std::uint64_t serial) {
  const auto info = inspect_request(csr_pem);
  auto key = load_public(info.public_key_pem);
  // Only a relay serves hosts: an agent's request for names gets none.
  const auto extra = info.identity.role == "relay" ? san_of(info.names, info.addresses) : std::string();
  const bool serves = !extra.empty();
  return issue(ca, key.get(), info.identity.host_id,
               "URI:" + identity_uri(info.identity) + (serves ? "," + extra : ""),
               serves ? "serverAuth,clientAuth" : "clientAuth", lifetime_seconds, serial);
}

std::string issue_user(const Authority& ca, const std::string& csr_pem, const std::string& name,
                       std::int64_t lifetime_seconds, std::uint64_t serial) {
  auto r = load_req(csr_pem);
  EVP_PKEY* pub = checked_key(r.get());
  return issue(ca, pub, name, "URI:" + user_uri(name), "clientAuth", lifetime_seconds, serial);
}

std::string issue_signer(const Authority& ca, const std::string& key_pem, int days, std::uint64_t serial) {
  auto key = load_key(key_pem);
  return issue(ca, key.get(), "distrib order signer",
               std::string("URI:") + std::string(kUriPrefix) + "signer:orders", "codeSigning", days * 86400LL,
               serial);
}

bool is_order_signer(const CertificateInfo& info) {
  return info.identities.size() == 1 && info.identities.front().role == "signer" &&
         info.identities.front().host_id == "orders" && !info.is_ca;
}

namespace {
std::string sign_with(EVP_PKEY* key, std::string_view data) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!md) fail("EVP_MD_CTX_new");
  check(EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key), "EVP_DigestSignInit");
  std::size_t size = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  check(EVP_DigestSign(md.get(), nullptr, &size, p, data.size()), "EVP_DigestSign");
  std::string sig(size, '\0');
  check(EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(sig.data()), &size, p, data.size()),
        "EVP_DigestSign");
  sig.resize(size);
  return hex_encode(sig);
}
}  // namespace

std::string sign(const std::string& key_pem, std::string_view data) {
  auto key = load_key(key_pem);
  return sign_with(key.get(), data);
}

std::string hex_encode(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

bool hex_decode(std::string_view text, std::string& out) {
  if (text.size() % 2) return false;
  const auto nibble = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  out.clear();
  for (std::size_t i = 0; i < text.size(); i += 2) {
    const int hi = nibble(text[i]), lo = nibble(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(static_cast<unsigned char>(hi * 16 + lo));
  }
  return true;
}

struct SigningKey::Impl {
  Key key;
};

SigningKey::SigningKey(const std::string& key_pem) : impl_(std::make_unique<Impl>(Impl{load_key(key_pem)})) {}
SigningKey::~SigningKey() = default;
SigningKey::SigningKey(SigningKey&&) noexcept = default;
SigningKey& SigningKey::operator=(SigningKey&&) noexcept = default;

std::string SigningKey::sign(std::string_view data) const {
  return sign_with(impl_->key.get(), data);
}

bool verify_signature(const std::string& cert_pem, std::string_view data, const std::string& signature_hex) {
  std::string sig;
  if (signature_hex.empty() || signature_hex.size() > 512 || !hex_decode(signature_hex, sig)) return false;
  try {
    auto c = load_cert(cert_pem);
    EVP_PKEY* key = X509_get0_pubkey(c.get());
    if (!key) return false;
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!md || EVP_DigestVerifyInit(md.get(), nullptr, EVP_sha256(), nullptr, key) != 1) return false;
    const bool ok = EVP_DigestVerify(md.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
    ERR_clear_error();
    return ok;
  } catch (const Error&) {
    return false;
  }
}

CertificateInfo inspect_certificate(const std::string& cert_pem) {
  auto c = load_cert(cert_pem);
  CertificateInfo out;
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(c.get()), NID_commonName, cn, sizeof cn) > 0)
    out.subject = cn;
  Names n(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(c.get(), NID_subject_alt_name, nullptr, nullptr)));
  if (n) read_names(n.get(), out);
  std::uint64_t serial = 0;
  if (ASN1_INTEGER_get_uint64(&serial, X509_get0_serialNumber(c.get())) == 1) out.serial = serial;
  ERR_clear_error();
  out.not_before = unix_of(X509_get0_notBefore(c.get()));
  out.not_after = unix_of(X509_get0_notAfter(c.get()));
  unsigned char* der = nullptr;
  const int der_size = i2d_X509(c.get(), &der);
  if (der_size <= 0) fail("i2d_X509");
  out.fingerprint = "sha256:" + sha256_hex(std::string_view(reinterpret_cast<const char*>(der),
                                                            static_cast<std::size_t>(der_size)));
  OPENSSL_free(der);
  out.is_ca = X509_check_ca(c.get()) != 0;
  if (auto* key = X509_get0_pubkey(c.get())) out.key_fingerprint = fingerprint_of_key(key);
  return out;
}

std::string verify(const std::string& ca_cert_pem, const std::string& cert_pem, std::int64_t at) {
  auto ca = load_cert(ca_cert_pem);
  auto c = load_cert(cert_pem);
  Store store(X509_STORE_new());
  if (!store) fail("X509_STORE_new");
  check(X509_STORE_add_cert(store.get(), ca.get()), "X509_STORE_add_cert");
  StoreCtx ctx(X509_STORE_CTX_new());
  if (!ctx) fail("X509_STORE_CTX_new");
  check(X509_STORE_CTX_init(ctx.get(), store.get(), c.get(), nullptr), "X509_STORE_CTX_init");
  X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<std::time_t>(at));
  if (X509_verify_cert(ctx.get()) == 1) return {};
  ERR_clear_error();
  return X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

}  // namespace distrib::pki
