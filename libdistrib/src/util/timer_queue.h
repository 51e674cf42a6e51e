#pragma once
// One thread running small callbacks at given times (paced answers). Callbacks must be quick and
// must not throw; those still queued at stop() are dropped (their owners answer on destruction).
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace distrib {

class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;
  TimerQueue() : thread_([this] { loop(); }) {}
  ~TimerQueue() { stop(); }
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  void at(Clock::time_point when, std::function<void()> fn) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      tasks_.emplace(when, std::move(fn));
    }
    cv_.notify_one();
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
    tasks_.clear();
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (tasks_.empty()) {
        cv_.wait(lock);
        continue;
      }
      const auto when = tasks_.begin()->first;
      if (Clock::now() < when) {
        cv_.wait_until(lock, when);
        continue;
      }
      auto fn = std::move(tasks_.begin()->second);
      tasks_.erase(tasks_.begin());
      lock.unlock();
      fn();
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace distrib
