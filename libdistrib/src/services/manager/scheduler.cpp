// The scheduler thread: expiry, start times and retry backoff, daily windows, rollout waves, last contacts
// written back, event retention.
#include "services/manager/scheduler.h"

#include "services/manager/dispatch.h"

namespace distrib::manager {

void Scheduler::start() {
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::poke() {
  {
    std::lock_guard lock(mutex_);
    poked_ = true;
  }
  cv_.notify_all();
}

// Last contacts go to the store every 10 s (they are kept in memory between), each host's
// once it moved on by a fifth of silent_after_seconds (at most a minute): an idle fleet waiting
// in long polls costs a few writes a second, not one per host every 10 s. Then hosts silent for
// longer than silent_after_seconds are reported (host.silent / host.returned).
void Scheduler::flush_contacts(State& st, std::int64_t now) {
  if (now - st.contacts_flushed < 10) return;
  const std::int64_t silent = ctx_.settings.silent_after_seconds;
  const std::int64_t refresh = silent > 0 ? std::clamp<std::int64_t>(silent / 5, 1, 60) : 60;
  // A host waiting in a long poll is in contact now.
  ctx_.store->touch_hosts(ctx_.work_cache.contacts_to_write(now, refresh));
  st.contacts_flushed = now;
  // Silence is judged once this process has been up for the whole period: a restarted (or
  // newly active) manager does not call everyone silent before they had a chance to poll.
  if (ctx_.settings.silent_after_seconds > 0 &&
      now - ctx_.started_unix >= ctx_.settings.silent_after_seconds) {
    if (const int n = ctx_.store->mark_silent_hosts(now - ctx_.settings.silent_after_seconds); n > 0)
      spdlog::info("{} host(s) went silent or came back", n);
  }
}

// Hourly: events past their retention that every sink has taken go.
void Scheduler::prune_events(State& st, std::int64_t now) {
  if (ctx_.settings.event_retention_days <= 0 || now - st.events_pruned < 3600) return;
  st.events_pruned = now;
  std::int64_t upto = ctx_.store->last_event_id();
  for (const auto& s : ctx_.events->status()) upto = std::min(upto, s.cursor);
  const auto before = (now - std::int64_t{ctx_.settings.event_retention_days} * 86400) * 1000;
  if (const auto n = ctx_.store->prune_events(before, upto); n > 0)
    spdlog::info("{} event(s) older than {} day(s) deleted", n, ctx_.settings.event_retention_days);
}

void Scheduler::tick(State& st) {
  const auto now = fs::now_unix();
  try {
    flush_contacts(st, now);
    prune_events(st, now);
  } catch (const std::exception& e) {
    spdlog::warn("housekeeping: {}", e.what());
  }
  if (auto vias = ctx_.store->expire_entries(st.expired_upto, now); !vias.empty()) {
    spdlog::info("entries expired below {} host(s)", vias.size());
    dispatch_.wake(vias, true);
  }
  st.expired_upto = now;
  if (auto vias = ctx_.store->vias_ready_between(st.ready_upto, now); !vias.empty())
    dispatch_.wake(vias, true);
  st.ready_upto = now;
  const int minute = minute_of_day_now();
  std::map<std::int64_t, bool> open_now;
  for (const auto& job : ctx_.store->open_window_jobs()) {
    const bool open = job.schedule.window.contains(minute);
    if (open && !st.window_open[job.id]) {
      spdlog::info("job {}: install window {} opened", job.id, to_string(job.schedule.window));
      dispatch_.wake(ctx_.store->vias_with_open_entries(job.id), true);
    }
    open_now[job.id] = open;
  }
  st.window_open.swap(open_now);
  for (const auto& job : ctx_.store->running_rollouts()) {
    const auto verdict = evaluate_rollout(job.rollout, job.current_wave, ctx_.store->wave_counts(job.id));
    if (verdict.action == RolloutVerdict::Action::advance) {
      const int next = job.current_wave + 1;
      auto vias = ctx_.store->release_wave(job.id, next);
      spdlog::info("job {}: wave {} of {} released ({} %)", job.id, next, job.rollout.waves.size(),
                   job.rollout.waves[static_cast<std::size_t>(next - 1)]);
      dispatch_.wake(vias, true);
    } else if (verdict.action == RolloutVerdict::Action::stop) {
      ctx_.store->stop_rollout(job.id, verdict.reason);
      spdlog::warn("job {}: rollout stopped at wave {}: {}", job.id, job.current_wave, verdict.reason);
    }
  }
}

void Scheduler::loop() {
  State st;
  st.ready_upto = fs::now_unix();  // entries ready before the start are in the work cache already
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_ || poked_; });
    if (stopping_) break;
    poked_ = false;
    lock.unlock();
    try {
      tick(st);
    } catch (const std::exception& e) {
      spdlog::error("scheduler: {}", e.what());
    }
    lock.lock();
  }
}

}  // namespace distrib::manager
