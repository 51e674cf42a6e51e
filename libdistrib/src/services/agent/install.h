#pragma once
// Installing a package: what is installed, the install directory, the staged swap of the payload
// and the install command.
#include "security/orders.h"
#include "services/agent/chunk_cache.h"
#include "services/agent/installed.h"
#include "services/agent/inventory.h"
#include "services/agent/publishers.h"
#include "services/agent/transfer.h"
#include "services/process.h"

namespace distrib::agent {

class Installer {
 public:
  Installer(Context& ctx, Link& link, Fetcher& fetcher, InventoryReporter& inventory)
      : ctx_(ctx),
        link_(link),
        fetcher_(fetcher),
        inventory_(inventory),
        publishers_(ctx, link),
        cache_(ctx) {}

  /// Runs an install entry: manifest, transfer, assembly, placement, install command, each step
  /// reported. Returns early when the agent is stopping mid-transfer (resumed at the next run).
  /// `order` (when the agent checks orders): the manifest fetched must be the one it names.
  void install(const bj::object& item, std::int64_t entry_id, std::int32_t attempt,
               const security::Order* order = nullptr);
  /// Runs an uninstall entry: the package's uninstall command in its directory, then the directory
  /// removed and the record and inventory updated. Not installed: succeeds saying so.
  void uninstall(const bj::object& item, std::int64_t entry_id, std::int32_t attempt);
  /// The publisher keys this agent trusts (a parent's answers announce new trusted sets).
  PublisherTrust& publishers() { return publishers_; }

 private:
  stdfs::path install_target(const Manifest& m) const;
  void place_payload(const stdfs::path& archive, const stdfs::path& target, std::int64_t entry_id);
  CommandResult run_package_command(const std::string& command, const stdfs::path& cwd,
                                    const std::string& name, const std::string& version,
                                    const stdfs::path& directory, std::int64_t entry_id,
                                    std::uint32_t timeout_seconds);

  Context& ctx_;
  Link& link_;
  Fetcher& fetcher_;
  InventoryReporter& inventory_;
  PublisherTrust publishers_;
  ChunkCache cache_;
};

}  // namespace distrib::agent
