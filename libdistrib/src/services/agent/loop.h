#pragma once
// The agent's work loop on its worker thread: register, flush the outbox, long-poll, process each
// entry; then the stop phase (installs timed "at agent stop") and a last flush.
#include "services/agent/collection.h"
#include "services/agent/install.h"
#include "services/agent/inventory.h"
#include "services/agent/orders.h"

namespace distrib::agent {

class WorkLoop {
 public:
  WorkLoop(Context& ctx, Link& link, Installer& installer, InventoryReporter& inventory, FileCollector& files)
      : ctx_(ctx), link_(link), installer_(installer), inventory_(inventory), files_(files), orders_(ctx) {}

  /// Runs until the context is stopping; failed contacts are retried with backoff, never thrown.
  /// Ends with the stop phase and a last flush of the outbox.
  void run();

 private:
  bool process_work(const bj::array& work);
  void process(const bj::object& item);
  void run_item(const bj::object& item, std::int64_t entry_id, std::int32_t attempt,
                const security::Order* order);
  void fail(std::int64_t entry_id, std::int32_t attempt, const std::string& why);
  void stop_phase();

  Context& ctx_;
  Link& link_;
  Installer& installer_;
  InventoryReporter& inventory_;
  FileCollector& files_;
  OrderCheck orders_;
  bool fresh_start_ = true;   // the first work answer after starting (at-start installs are due)
  int parent_heartbeat_ = 0;  // seconds between the bytes of a held poll, as the parent said (0: none)
  std::unique_ptr<HttpClient> stop_client_;
};

}  // namespace distrib::agent
