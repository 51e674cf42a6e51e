#pragma once
// The agent's inventory: the collectors, user items and field definitions, reports asked for by a
// job, and the inventory thread that reports periodically and on change.
#include "services/agent/link.h"

#include <thread>

namespace distrib::agent {

class InventoryReporter {
 public:
  /// Takes the platform's collectors and those of the settings.
  InventoryReporter(Context& ctx, Link& link);
  InventoryReporter(const InventoryReporter&) = delete;
  InventoryReporter& operator=(const InventoryReporter&) = delete;

  /// Starts the inventory thread (not with inventory_check_seconds 0). It waits for the first
  /// registration and ends when the context is stopping.
  void start();
  /// Wakes the thread and breaks off its call in flight; after Context::request_stop. Safe from
  /// any thread.
  void abort();
  /// Waits for the thread to end.
  void join();
  /// The software inventory changed: check now. Safe from any thread.
  void poke_inventory();

  /// Collects `scope` and reports it for a job's entry (on the worker thread, to the registered
  /// parent).
  void report_inventory_now(InventoryScope scope, std::int64_t entry_id, std::int32_t attempt);

  /// Field definitions the agent last received (in `state_dir`); nullopt when it never did.
  static std::optional<std::vector<InventoryField>> cached_fields(const stdfs::path& state_dir);

 private:
  void add_user_items(InventoryItems& items);
  InventoryItems collect_inventory(InventoryScope scope);
  /// With `digests`: the digest handshake (volatile values only, the stable items' digests named).
  bj::object send_inventory(HttpClient& client, InventoryScope scope, const InventoryItems& items,
                            const bj::object* digests = nullptr);
  void inventory_check();
  void inventory_loop();
  stdfs::path fields_file() const { return ctx_.settings.state_dir / "inventory-fields.json"; }
  stdfs::path inventory_state_file() const { return ctx_.settings.state_dir / "inventory-state.json"; }

  Context& ctx_;
  Link& link_;
  std::vector<std::unique_ptr<InventoryCollector>> platform_;
  std::vector<InventoryCollector*> collectors_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool poked_ = false;
  std::shared_ptr<HttpClient> client_;  // the thread's current client (aborted on stop)
};

}  // namespace distrib::agent
