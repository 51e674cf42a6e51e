#pragma once
// The agent's side of publisher signatures (security/publishers.h): the keys it trusts (its
// configuration's --publisher-key files, and the trusted set the top manager signed, from its
// enrolment bundle or fetched when a parent announces a newer version), and the check every
// manifest passes before its payload is fetched.
#include "security/publishers.h"
#include "services/agent/link.h"

#include <mutex>
#include <optional>

namespace distrib::agent {

class PublisherTrust {
 public:
  /// Reads the configured keys (Error(invalid_argument) naming a file that is not an Ed25519
  /// public key) and the trusted set kept in STATE_DIR/publishers.json, or the one of the
  /// enrolment bundle when it is newer.
  PublisherTrust(Context& ctx, Link& link);

  /// Throws Error(integrity) naming why `m` may not run here.
  void check(const Manifest& m) const;
  /// A parent announced set version `version`: a newer one is fetched, verified against the CA
  /// this host trusts, and kept. A set that does not verify is logged and ignored.
  void announced(std::int64_t version);
  std::int64_t version() const;

 private:
  /// Takes a signed set when it verifies and is newer than the one held; returns whether it did.
  bool adopt(const std::string& signed_set, const char* from);
  /// The set of a signed one when this host trusts a CA (nullopt: it trusts none); throws
  /// Error(integrity) when it does not verify.
  std::optional<security::PublisherSet> verified(const std::string& signed_set) const;
  stdfs::path file() const { return ctx_.settings.state_dir / "publishers.json"; }

  Context& ctx_;
  Link& link_;
  std::vector<security::PublisherKey> configured_;
  mutable std::mutex mutex_;
  security::PublisherSet set_;
  std::int64_t refused_version_ = 0;  // a version that did not verify is not fetched again
};

}  // namespace distrib::agent
