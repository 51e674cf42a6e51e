// A host's key, certificate and trusted CA on disk (host_identity.h).
#include "security/host_identity.h"

#include <distrib/error.h>

#include "util/fs.h"

#include <sys/stat.h>
#include <ctime>

namespace distrib::security {

namespace {
bool present(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}
}  // namespace

HostIdentity::HostIdentity(std::filesystem::path dir, pki::Identity id)
    : dir_(std::move(dir)), id_(std::move(id)) {
  fs::ensure_writable_dir(dir_, "identity directory");
  ::chmod(dir_.c_str(), 0700);
  if (present(key_file())) {
    key_pem_ = fs::read_file(key_file());
  } else {
    key_pem_ = pki::generate_key();
    fs::write_file_atomic(key_file(), key_pem_);
    ::chmod(key_file().c_str(), 0600);
  }
  fingerprint_ = pki::key_fingerprint(pki::public_key_of(key_pem_));
}

std::string HostIdentity::request(const std::vector<std::string>& names,
                                  const std::vector<std::string>& addresses) const {
  return pki::make_request(key_pem_, id_, names, addresses);
}

bool HostIdentity::trusts() const {
  return present(ca_file());
}

void HostIdentity::trust(const std::string& ca_pem) {
  if (!pki::inspect_certificate(ca_pem).is_ca)
    throw Error(ErrorKind::invalid_argument, "the certificate given as the CA is not a CA certificate");
  fs::write_file_atomic(ca_file(), ca_pem);
}

std::string HostIdentity::issuer() const {
  return fs::read_file(present(issuer_file()) ? issuer_file() : ca_file());
}

bool HostIdentity::certified(std::int64_t now) const {
  if (!trusts() || !present(cert_file())) return false;
  try {
    const auto cert = fs::read_file(cert_file());
    if (!pki::verify(issuer(), cert, now).empty()) return false;
    const auto info = pki::inspect_certificate(cert);
    return info.identities.size() == 1 && info.identities[0].host_id == id_.host_id &&
           info.identities[0].role == id_.role && info.key_fingerprint == fingerprint_;
  } catch (const Error&) {
    return false;
  }
}

std::int64_t HostIdentity::not_after() const {
  if (!present(cert_file())) return 0;
  try {
    return pki::inspect_certificate(fs::read_file(cert_file())).not_after;
  } catch (const Error&) {
    return 0;
  }
}

bool HostIdentity::renewal_due(std::int64_t now) const {
  if (!certified(now)) return true;
  const auto info = pki::inspect_certificate(fs::read_file(cert_file()));
  return (info.not_after - now) * 3 < (info.not_after - info.not_before);
}

void HostIdentity::store(const std::string& cert_pem, const std::string& issuer_pem) {
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  const auto trusted = fs::read_file(ca_file());
  bool other_issuer = false;
  if (const auto why = pki::verify(trusted, cert_pem, now); !why.empty()) {
    other_issuer =
        !issuer_pem.empty() && issuer_pem != trusted && pki::verify(issuer_pem, cert_pem, now).empty();
    if (!other_issuer) throw Error(ErrorKind::integrity, "the certificate received does not verify: " + why);
  }
  const auto info = pki::inspect_certificate(cert_pem);
  if (info.identities.size() != 1 || info.identities[0].host_id != id_.host_id ||
      info.identities[0].role != id_.role)
    throw Error(ErrorKind::integrity, "the certificate received is not for " + pki::identity_uri(id_));
  if (info.key_fingerprint != fingerprint_)
    throw Error(ErrorKind::integrity, "the certificate received certifies another key than this host's");
  if (other_issuer) {
    fs::write_file_atomic(issuer_file(), issuer_pem);
  } else {
    std::error_code ec;
    std::filesystem::remove(issuer_file(), ec);
  }
  fs::write_file_atomic(cert_file(), cert_pem);
}

}  // namespace distrib::security
