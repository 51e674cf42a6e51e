// The audit trail's writer: batches on the store pool, retried until the store takes them.
#include "services/manager/audit_trail.h"

namespace distrib::manager {

void AuditTrail::start() {
  {
    std::lock_guard lock(mutex_);
    stopped_ = false;
    flushing_ = retry_set_ = false;
    timers_ = std::make_unique<TimerQueue>();
    if (pending_.empty() || !ctx_.pool) return;
    flushing_ = true;
  }
  ctx_.pool->submit([this] { flush(); });
}

void AuditTrail::lose(const AuditRecord& rec, const char* why) {
  ++lost_;
  spdlog::error("audit trail: record lost ({}): {} {} by {} from {} → {}", why, rec.action, rec.target,
                rec.actor, rec.remote, rec.result);
}

void AuditTrail::record(AuditRecord rec) {
  bool start_flush = false;
  {
    std::lock_guard lock(mutex_);
    if (pending_.size() >= kMaxPending) {
      lose(pending_.front(), "too many waiting to be written");
      pending_.pop_front();
    }
    pending_.push_back(std::move(rec));
    // While a retry is set, new records wait for it: the store is known not to take them.
    start_flush = !flushing_ && !retry_set_ && !stopped_ && ctx_.pool;
    if (start_flush) flushing_ = true;
  }
  if (start_flush) ctx_.pool->submit([this] { flush(); });
}

void AuditTrail::flush() {
  for (;;) {
    std::vector<AuditRecord> batch;
    {
      std::lock_guard lock(mutex_);
      if (pending_.empty()) {
        flushing_ = false;
        return;
      }
      const auto n = std::min<std::size_t>(pending_.size(), 500);
      batch.assign(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    try {
      ctx_.store->append_audit(batch);
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex_);
      flushing_ = false;
      if (last_error_ != e.what())
        spdlog::error("audit trail: {} record(s) cannot be written yet ({}); retrying every {} s",
                      pending_.size(), e.what(), kRetryEvery.count());
      last_error_ = e.what();
      if (!stopped_ && timers_ && !retry_set_) {
        retry_set_ = true;
        timers_->at(TimerQueue::Clock::now() + kRetryEvery, [this] {
          std::lock_guard retry_lock(mutex_);
          retry_set_ = false;
          if (flushing_ || stopped_ || !ctx_.pool) return;
          flushing_ = true;
          ctx_.pool->submit([this] { flush(); });
        });
      }
      return;
    }
    std::lock_guard lock(mutex_);
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(batch.size()));
    if (!last_error_.empty()) {
      spdlog::info("audit trail: written again after \"{}\"", last_error_);
      last_error_.clear();
    }
  }
}

void AuditTrail::stop() {
  std::unique_ptr<TimerQueue> timers;
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    timers = std::move(timers_);
  }
  if (timers) timers->stop();
  // The pool has drained (the manager stops it first), so no flush runs now: one last attempt here.
  std::vector<AuditRecord> rest;
  {
    std::lock_guard lock(mutex_);
    rest.assign(pending_.begin(), pending_.end());
    pending_.clear();
  }
  if (rest.empty()) return;
  try {
    ctx_.store->append_audit(rest);
  } catch (const std::exception& e) {
    std::lock_guard lock(mutex_);
    for (const auto& rec : rest) lose(rec, e.what());
  }
}

std::uint64_t AuditTrail::pending() const {
  std::lock_guard lock(mutex_);
  return pending_.size();
}

std::uint64_t AuditTrail::lost() const {
  std::lock_guard lock(mutex_);
  return lost_;
}

}  // namespace distrib::manager
