#pragma once
// Installing a package: what is installed, the install directory, the staged swap of the payload
// and the install command.
#include "security/orders.h"
#include "services/agent/inventory.h"
#include "services/agent/publishers.h"
#include "services/agent/transfer.h"

namespace distrib::agent {

/// The record of what this agent installed (`installed.json` in `state_dir`): payload digest →
/// name, version, directory and installed_at. Empty when there is none; an unreadable record is
/// logged and read as empty.
bj::object load_installed(const stdfs::path& state_dir);

class Installer {
 public:
  Installer(Context& ctx, Link& link, Fetcher& fetcher, InventoryReporter& inventory)
      : ctx_(ctx), link_(link), fetcher_(fetcher), inventory_(inventory), publishers_(ctx, link) {}

  /// Runs an install entry: manifest, transfer, assembly, placement, install command, each step
  /// reported. Returns early when the agent is stopping mid-transfer (resumed at the next run).
  /// `order` (when the agent checks orders): the manifest fetched must be the one it names.
  void install(const bj::object& item, std::int64_t entry_id, std::int32_t attempt,
               const security::Order* order = nullptr);
  /// The publisher keys this agent trusts (a parent's answers announce new trusted sets).
  PublisherTrust& publishers() { return publishers_; }

 private:
  stdfs::path install_target(const Manifest& m) const;
  void place_payload(const stdfs::path& archive, const stdfs::path& target, std::int64_t entry_id);

  Context& ctx_;
  Link& link_;
  Fetcher& fetcher_;
  InventoryReporter& inventory_;
  PublisherTrust publishers_;
};

}  // namespace distrib::agent
