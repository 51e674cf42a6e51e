#pragma once
// A host's own identity on disk (STATE_DIR/identity/): its private key (made at the first start,
// mode 0600, never sent anywhere), the certificate the manager's CA issued for it after
// enrolment, and the CA certificate it trusts for its parents. Agents and relays keep one each.
#include "security/pki.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace distrib::security {

class HostIdentity {
 public:
  /// Prepares `dir` (0700) and makes the key when there is none. Throws Error naming the file it
  /// cannot read or write.
  HostIdentity(std::filesystem::path dir, pki::Identity id);

  const pki::Identity& identity() const noexcept { return id_; }
  std::filesystem::path key_file() const { return dir_ / "host.key"; }
  std::filesystem::path cert_file() const { return dir_ / "host.crt"; }
  std::filesystem::path ca_file() const { return dir_ / "ca.crt"; }
  /// The CA that issued this host's certificate when it is not the one that verifies the parents
  /// (a manager serving with a certificate of the operator's own CA).
  std::filesystem::path issuer_file() const { return dir_ / "issuer.crt"; }
  /// "sha256:HEX" of the public key: what an administrator compares before accepting.
  const std::string& fingerprint() const noexcept { return fingerprint_; }
  /// A certificate signing request for this identity and key (a relay's for the names and
  /// addresses it serves on too).
  std::string request(const std::vector<std::string>& names = {},
                      const std::vector<std::string>& addresses = {}) const;

  /// A signature of `data` with this host's key (pki::sign).
  std::string sign(std::string_view data) const { return pki::sign(key_pem_, data); }

  /// Is a CA certificate trusted yet?
  bool trusts() const;
  /// Trusts `ca_pem` from now on (checked to be a CA certificate).
  void trust(const std::string& ca_pem);

  /// Holds a certificate for this identity and key, from the trusted CA, valid at `now`.
  bool certified(std::int64_t now) const;
  /// Is less than a third of the certificate's lifetime left at `now` (or none valid)?
  bool renewal_due(std::int64_t now) const;
  /// The certificate's expiry (0 when there is none).
  std::int64_t not_after() const;
  /// Keeps `cert_pem` after checking it chains to the trusted CA (or to `issuer_pem`, the CA
  /// the parent named over the verified connection), names this identity and holds this key.
  /// Throws Error(integrity) naming what does not fit.
  void store(const std::string& cert_pem, const std::string& issuer_pem = {});

 private:
  std::string issuer() const;

  std::filesystem::path dir_;
  pki::Identity id_;
  std::string key_pem_, fingerprint_;
};

}  // namespace distrib::security
