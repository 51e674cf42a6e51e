#pragma once
// The trusted publisher set (security/publishers.h) a manager serves. The top manager keeps the trusted set
// (STATE_DIR/publishers.json, signed with its order-signing key): administrators trust and
// revoke keys (every change a new version); a relay keeps the newest set its parent announced
// (verified against the tree's CA) and serves it below. Every work answer announces the version,
// and package registration refuses what agents would refuse (publishers.h: the routes).
#include "security/publishers.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>

namespace distrib::manager {

struct Context;

/// The set this manager serves (shared by the facilities through Context).
class PublisherSetHolder {
 public:
  /// Reads the kept set of `state_dir` (an unreadable one is logged and ignored).
  void load(const std::filesystem::path& state_dir);
  std::int64_t version() const;
  security::PublisherSet set() const;
  std::string signed_text() const;
  /// Keeps a set already verified or signed here, when newer; returns whether it did.
  bool replace(security::PublisherSet set, std::string signed_text);
  /// A change at the top: `change` edits a copy of the set (throwing to refuse), which is then
  /// signed with `signer_key`/`signer_cert` as the next version and kept.
  security::PublisherSet change(const std::function<void(security::PublisherSet&)>& change,
                                const std::string& signer_key, const std::string& signer_cert);

 private:
  mutable std::mutex mutex_;
  std::filesystem::path file_;
  security::PublisherSet set_;
  std::string signed_;
};

}  // namespace distrib::manager
