#pragma once
// Writes the audit trail. A record is written after its change was made and answered, so it cannot
// fail the change any more: a record that cannot be written (a full disk, the database away) is
// kept in memory and written again every few seconds until the store takes it, oldest first. At
// most kMaxPending wait; beyond that the oldest are logged in full and counted as lost, as are those
// still waiting when the manager stops. GET /metrics shows both counts.
#include "services/manager/common.h"

#include "util/timer_queue.h"

#include <deque>

namespace distrib::manager {

class AuditTrail {
 public:
  explicit AuditTrail(Context& ctx) : ctx_(ctx) {}
  ~AuditTrail() { stop(); }

  void start();
  /// One last attempt to write what waits; what still cannot be written is logged and counted lost.
  void stop();
  /// Queues the record; it is written on the store pool.
  void record(AuditRecord rec);

  std::uint64_t pending() const;
  std::uint64_t lost() const;

  static constexpr std::size_t kMaxPending = 10000;
  static constexpr std::chrono::seconds kRetryEvery{5};

 private:
  void flush();
  void lose(const AuditRecord& rec, const char* why);

  Context& ctx_;
  std::unique_ptr<TimerQueue> timers_;
  mutable std::mutex mutex_;
  std::deque<AuditRecord> pending_;
  bool flushing_ = false, retry_set_ = false, stopped_ = false;
  std::uint64_t lost_ = 0;
  std::string last_error_;
};

}  // namespace distrib::manager
