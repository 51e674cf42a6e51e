// The manager's work cache (work_cache.h).
#include "services/manager/work_cache.h"

namespace distrib::manager {

WorkCache::WorkCache(std::function<void(std::vector<Waiter>)> expire) : expire_(std::move(expire)) {}

WorkCache::~WorkCache() {
  stop();
}

void WorkCache::start() {
  std::lock_guard lock(mutex_);
  if (sweeper_.joinable()) return;
  stopping_ = false;
  sweeper_ = std::thread([this] { sweep_loop(); });
}

std::vector<WorkCache::Waiter> WorkCache::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  sweeper_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
  std::vector<Waiter> left;
  std::lock_guard lock(mutex_);
  for (auto& [host, list] : waiters_)
    for (auto& w : list) left.push_back(std::move(w.responder));
  waiters_.clear();
  return left;
}

void WorkCache::mark(const std::vector<std::string>& hosts) {
  std::lock_guard lock(mutex_);
  hosts_with_work_.insert(hosts.begin(), hosts.end());
}

std::size_t WorkCache::hosts_with_work() const {
  std::lock_guard lock(mutex_);
  return hosts_with_work_.size();
}

void WorkCache::contact(const std::string& host, std::int64_t now) {
  std::lock_guard lock(mutex_);
  last_contact_[host] = now;
}

WorkCache::Poll WorkCache::poll(const std::string& host, std::int64_t now, bool answer_now,
                                std::chrono::seconds wait, const std::function<Waiter()>& park) {
  std::lock_guard lock(mutex_);
  last_contact_[host] = now;
  if (answer_now || hosts_with_work_.count(host)) return Poll::work;
  if (wait.count() <= 0) return Poll::nothing;
  waiters_[host].push_back({park(), std::chrono::steady_clock::now() + wait});
  return Poll::parked;
}

std::uint64_t WorkCache::generation(const std::string& host) {
  std::lock_guard lock(mutex_);
  return generation_[host];
}

void WorkCache::settle(const std::string& host, std::uint64_t seen) {
  std::lock_guard lock(mutex_);
  if (generation_[host] == seen) hosts_with_work_.erase(host);
}

std::vector<std::pair<std::string, WorkCache::Waiter>> WorkCache::wake(const std::vector<std::string>& hosts,
                                                                       bool has_work) {
  std::vector<std::pair<std::string, Waiter>> woken;
  std::lock_guard lock(mutex_);
  for (const auto& h : hosts) {
    if (has_work) {
      hosts_with_work_.insert(h);
      ++generation_[h];
    }
    auto it = waiters_.find(h);
    if (it == waiters_.end()) continue;
    for (auto& w : it->second) woken.emplace_back(h, std::move(w.responder));
    waiters_.erase(it);
  }
  return woken;
}

void WorkCache::release(const std::string& via, const std::string& host) {
  std::lock_guard lock(mutex_);
  released_[via].insert(host);
}

void WorkCache::unrelease(const std::string& via, const std::string& host) {
  std::lock_guard lock(mutex_);
  if (auto it = released_.find(via); it != released_.end()) it->second.erase(host);
}

std::vector<std::string> WorkCache::take_released(const std::string& via) {
  std::lock_guard lock(mutex_);
  auto it = released_.find(via);
  if (it == released_.end()) return {};
  std::vector<std::string> out(it->second.begin(), it->second.end());
  released_.erase(it);
  return out;
}

std::vector<std::pair<std::string, std::int64_t>> WorkCache::contacts_to_write(std::int64_t now,
                                                                               std::int64_t refresh) {
  refresh = std::max<std::int64_t>(1, refresh);
  std::vector<std::pair<std::string, std::int64_t>> out;
  std::lock_guard lock(mutex_);
  const auto consider = [&](const std::string& h, std::int64_t t) {
    auto [it, fresh] = written_.try_emplace(h, 0);
    if (!fresh && t < it->second + refresh) return;
    it->second =
        fresh ? t - static_cast<std::int64_t>(std::hash<std::string>{}(h) % static_cast<std::size_t>(refresh))
              : t;
    out.emplace_back(h, t);
  };
  for (const auto& [h, list] : waiters_)
    if (!list.empty()) consider(h, now);
  for (const auto& [h, t] : last_contact_)
    if (auto w = waiters_.find(h); w == waiters_.end() || w->second.empty()) consider(h, t);
  return out;
}

std::unordered_map<std::string, std::int64_t> WorkCache::last_contacts() const {
  std::lock_guard lock(mutex_);
  return last_contact_;
}

WorkCache::Load WorkCache::load(std::int64_t cutoff) const {
  Load out;
  std::lock_guard lock(mutex_);
  for (const auto& [h, t] : last_contact_)
    if (t >= cutoff) ++out.connected;
  for (const auto& [h, list] : waiters_) out.waiting += static_cast<std::int64_t>(list.size());
  return out;
}

void WorkCache::sweep_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    sweeper_cv_.wait_for(lock, std::chrono::milliseconds(200));
    if (stopping_) break;  // what still waits goes back to the caller of stop()
    const auto now = std::chrono::steady_clock::now();
    std::vector<Waiter> expired;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      auto& list = it->second;
      for (auto w = list.begin(); w != list.end();) {
        if (w->deadline <= now) {
          expired.push_back(std::move(w->responder));
          w = list.erase(w);
        } else {
          ++w;
        }
      }
      it = list.empty() ? waiters_.erase(it) : std::next(it);
    }
    if (expired.empty()) continue;
    lock.unlock();
    expire_(std::move(expired));
    lock.lock();
  }
}

}  // namespace distrib::manager
