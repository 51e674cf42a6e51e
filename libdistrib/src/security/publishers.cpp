// Publisher keys, package signatures and the trusted set (publishers.h), on OpenSSL 3's Ed25519.
#include "security/publishers.h"

#include <distrib/content/digest.h>
#include <distrib/error.h>

#include "model/json_codec.h"
#include "security/orders.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <boost/json.hpp>

#include <algorithm>
#include <memory>

namespace distrib::security {

namespace bj = boost::json;

namespace {
constexpr std::string_view kManifestHeader = "distrib-package/1\n";
constexpr std::string_view kSetHeader = "distrib-publishers/1\n";
constexpr std::size_t kMaxKeyPem = 1024;

using Bio = std::unique_ptr<BIO, decltype(&BIO_free_all)>;
using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

[[noreturn]] void openssl_failed(const char* what) {
  const auto code = ERR_get_error();
  ERR_clear_error();
  char buf[256] = "no detail";
  if (code) ERR_error_string_n(code, buf, sizeof buf);
  throw Error(ErrorKind::internal, std::string(what) + ": " + buf);
}

Bio memory_bio(const std::string& text) {
  Bio b(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), BIO_free_all);
  if (!b) openssl_failed("BIO_new_mem_buf");
  return b;
}

std::string bio_text(BIO* b) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

Key ed25519_public(const std::string& pem) {
  if (pem.size() > kMaxKeyPem)
    throw Error(ErrorKind::invalid_argument, "a publisher key is at most 1 KiB of PEM");
  auto b = memory_bio(pem);
  Key k(PEM_read_bio_PUBKEY(b.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  ERR_clear_error();
  if (!k || EVP_PKEY_get_base_id(k.get()) != EVP_PKEY_ED25519)
    throw Error(ErrorKind::invalid_argument,
                "not an Ed25519 public key in PEM (make one with distribctl keys create NAME)");
  return k;
}

Key ed25519_private(const std::string& pem) {
  if (pem.size() > 4 * kMaxKeyPem)
    throw Error(ErrorKind::invalid_argument, "a publisher key is at most 4 KiB of PEM");
  auto b = memory_bio(pem);
  Key k(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  ERR_clear_error();
  if (!k || EVP_PKEY_get_base_id(k.get()) != EVP_PKEY_ED25519)
    throw Error(ErrorKind::invalid_argument,
                "not an Ed25519 private key in PEM (make one with distribctl keys create NAME)");
  return k;
}

std::string public_pem_of(EVP_PKEY* k) {
  Bio b(BIO_new(BIO_s_mem()), BIO_free_all);
  if (!b || PEM_write_bio_PUBKEY(b.get(), k) != 1) openssl_failed("PEM_write_bio_PUBKEY");
  return bio_text(b.get());
}

}  // namespace

PublisherKeyPair make_publisher_key() {
  Key k(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), EVP_PKEY_free);
  if (!k) openssl_failed("EVP_PKEY_Q_keygen");
  Bio b(BIO_new(BIO_s_mem()), BIO_free_all);
  if (!b || PEM_write_bio_PrivateKey(b.get(), k.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    openssl_failed("PEM_write_bio_PrivateKey");
  return {bio_text(b.get()), public_pem_of(k.get())};
}

std::string publisher_key_id(const std::string& public_pem) {
  auto k = ed25519_public(public_pem);
  unsigned char raw[32];
  std::size_t n = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(k.get(), raw, &n) != 1) openssl_failed("EVP_PKEY_get_raw_public_key");
  return "ed25519:" + sha256_hex(std::string_view(reinterpret_cast<const char*>(raw), n)).substr(0, 16);
}

std::string publisher_public_key(const std::string& private_pem) {
  return public_pem_of(ed25519_private(private_pem).get());
}

std::string manifest_statement(const Manifest& m) {
  Manifest bare = m;
  bare.signed_by.clear();
  bare.signature.clear();
  return std::string(kManifestHeader) + manifest_to_json(bare);
}

void sign_manifest(Manifest& m, const std::string& private_pem) {
  auto k = ed25519_private(private_pem);
  const auto statement = manifest_statement(m);
  MdCtx md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned char sig[64];
  std::size_t n = sizeof sig;
  if (!md || EVP_DigestSignInit(md.get(), nullptr, nullptr, nullptr, k.get()) != 1 ||
      EVP_DigestSign(md.get(), sig, &n, reinterpret_cast<const unsigned char*>(statement.data()),
                     statement.size()) != 1)
    openssl_failed("Ed25519 signature");
  m.signed_by = publisher_key_id(public_pem_of(k.get()));
  m.signature = pki::hex_encode(std::string_view(reinterpret_cast<const char*>(sig), n));
}

bool manifest_signature_valid(const Manifest& m, const std::string& public_pem) {
  std::string sig;
  if (m.signature.size() != 128 || !pki::hex_decode(m.signature, sig)) return false;
  try {
    auto k = ed25519_public(public_pem);
    const auto statement = manifest_statement(m);
    MdCtx md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    const bool ok =
        md && EVP_DigestVerifyInit(md.get(), nullptr, nullptr, nullptr, k.get()) == 1 &&
        EVP_DigestVerify(md.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                         reinterpret_cast<const unsigned char*>(statement.data()), statement.size()) == 1;
    ERR_clear_error();
    return ok;
  } catch (const Error&) {
    return false;
  }
}

void validate_publisher_name(const std::string& name) {
  if (name.empty() || name.size() > 64 ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos)
    throw Error(ErrorKind::invalid_argument,
                "a publisher key's name is 1 to 64 letters, digits, '.', '_' or '-'");
}

std::string publisher_set_to_json(const PublisherSet& set) {
  bj::array keys, revoked;
  for (const auto& k : set.keys)
    keys.push_back(
        bj::object{{"id", k.id}, {"name", k.name}, {"public_key", k.public_pem}, {"added", k.added}});
  for (const auto& r : set.revoked) revoked.emplace_back(r);
  return bj::serialize(bj::object{{"version", set.version}, {"keys", keys}, {"revoked", revoked}});
}

PublisherSet publisher_set_from_json(const std::string& text) {
  const auto o = json::parse_object(text);
  PublisherSet set;
  set.version = json::get_int(o, "version");
  if (set.version < 0) throw Error(ErrorKind::invalid_argument, "publisher set version is negative");
  const auto& keys = json::get_array(o, "keys");
  const auto& revoked = json::get_array(o, "revoked");
  if (keys.size() > kMaxPublisherKeys || revoked.size() > kMaxRevokedPublishers)
    throw Error(ErrorKind::invalid_argument, "publisher set holds too many keys");
  for (const auto& v : keys) {
    if (!v.is_object()) throw Error(ErrorKind::invalid_argument, "publisher set key is not an object");
    const auto& ko = v.as_object();
    PublisherKey k{json::get_string(ko, "id"), json::get_string(ko, "name"),
                   json::get_string(ko, "public_key"), json::get_int(ko, "added", 0)};
    validate_publisher_name(k.name);
    if (publisher_key_id(k.public_pem) != k.id)
      throw Error(ErrorKind::invalid_argument,
                  "publisher key " + k.id.substr(0, 40) + " does not match its id");
    set.keys.push_back(std::move(k));
  }
  for (const auto& v : revoked) {
    if (!v.is_string() || v.as_string().size() > 64)
      throw Error(ErrorKind::invalid_argument, "publisher set revocation is not a key id");
    set.revoked.emplace_back(v.as_string());
  }
  return set;
}

std::string sign_publishers(const PublisherSet& set, const pki::SigningKey& key,
                            const std::string& cert_pem) {
  return sign_statement(std::string(kSetHeader) + publisher_set_to_json(set), key, cert_pem);
}

PublisherSet verify_publishers(const std::string& signed_set, const std::string& ca_pem, std::int64_t now) {
  constexpr std::size_t kMax = 16 + kMaxPublisherKeys * 1024 + kMaxRevokedPublishers * 32 + 8192;
  auto opened = open_statement(signed_set, ca_pem, now, kMax, "trusted publisher set refused");
  if (!pki::is_order_signer(opened.signer))
    throw Error(ErrorKind::integrity,
                "trusted publisher set refused: it is not signed by the manager's order signer");
  if (opened.statement.rfind(kSetHeader, 0) != 0)
    throw Error(ErrorKind::integrity, "trusted publisher set refused: not a distrib-publishers/1 statement");
  try {
    return publisher_set_from_json(opened.statement.substr(kSetHeader.size()));
  } catch (const Error& e) {
    throw Error(ErrorKind::integrity, std::string("trusted publisher set refused: ") + e.what());
  }
}

void check_publisher(const Manifest& m, const std::vector<PublisherKey>& trusted,
                     const std::vector<std::string>& revoked, bool required) {
  const auto what = "package " + m.name + " " + m.version;
  if (m.signature.empty()) {
    if (!required && trusted.empty()) return;
    throw Error(ErrorKind::integrity,
                what + " is not signed, and this host runs only signed packages (" +
                    std::to_string(trusted.size()) +
                    " publisher key(s) trusted); create it with package create --sign KEY");
  }
  if (std::find(revoked.begin(), revoked.end(), m.signed_by) != revoked.end())
    throw Error(ErrorKind::integrity, what + " is signed by publisher key " + m.signed_by +
                                          ", which is revoked; sign a new version with a trusted key");
  const auto k =
      std::find_if(trusted.begin(), trusted.end(), [&](const auto& t) { return t.id == m.signed_by; });
  if (k == trusted.end())
    throw Error(ErrorKind::integrity, what + " is signed by publisher key " + m.signed_by.substr(0, 64) +
                                          ", which this host does not trust (distribctl keys trust)");
  if (!manifest_signature_valid(m, k->public_pem))
    throw Error(ErrorKind::integrity, what + ": the publisher signature of " + k->name +
                                          " does not verify (the manifest was altered after signing)");
}

}  // namespace distrib::security
