#pragma once
// The scheduler thread: expiry, start times and retry backoff, daily install windows, rollout waves,
// last contacts written back, silent hosts and event retention.
#include "services/manager/common.h"

#include <condition_variable>
#include <thread>

namespace distrib::manager {

class Dispatch;

class Scheduler {
 public:
  Scheduler(Context& ctx, Dispatch& dispatch) : ctx_(ctx), dispatch_(dispatch) {}
  ~Scheduler() { stop(); }
  void start();
  void stop();
  /// Something changed (an entry ended, a job was made): look again now.
  void poke();

 private:
  struct State {
    std::int64_t contacts_flushed = 0;  // when last contacts last went to the store
    std::int64_t events_pruned = 0;     // when old events were last deleted
    std::int64_t expired_upto = 0;      // expiries up to here are done (0: every past one at start)
    std::int64_t ready_upto = 0;
    std::map<std::int64_t, bool> window_open;
  };
  void flush_contacts(State& st, std::int64_t now);
  void prune_events(State& st, std::int64_t now);
  void tick(State& st);
  void loop();

  Context& ctx_;
  Dispatch& dispatch_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool poked_ = false;
  bool stopping_ = false;
};

}  // namespace distrib::manager
