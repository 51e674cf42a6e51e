#include <distrib/services/failover.h>
#include "util/fs.h"

#include <distrib/error.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>

namespace distrib {
namespace {

// Always active: a single manager.
class StandaloneCoordinator final : public FailoverCoordinator {
 public:
  std::string kind() const override { return "standalone"; }
  bool acquire(const std::string& node, std::chrono::milliseconds) override {
    node_ = node;
    return true;
  }
  bool keep(const std::string&, std::chrono::milliseconds) override { return true; }
  void lose(const std::string&) override { node_.clear(); }
  LeaseRecord observe() override { return {"standalone", node_, node_.empty() ? 0 : 1, 0, 0}; }
  std::int64_t token() const override { return node_.empty() ? 0 : 1; }

 private:
  std::string node_;
};

// A lease row in the shared database. Taking it over increments its token; the store is fenced
// by the token, so a node that lost the lease writes nothing even before it notices.
class DbLeaseCoordinator final : public FailoverCoordinator {
 public:
  DbLeaseCoordinator(Store& store, std::string name) : store_(store), name_(std::move(name)) {}
  std::string kind() const override { return "db-lease"; }

  bool acquire(const std::string& node, std::chrono::milliseconds ttl) override {
    const auto lease = store_.acquire_lease(name_, node, fs::now_unix_ms(), ttl.count());
    if (lease.holder != node) return false;
    token_ = lease.token;
    store_.set_fencing(name_, token_);
    return true;
  }
  bool keep(const std::string& node, std::chrono::milliseconds ttl) override {
    if (token_ != 0 && store_.renew_lease(name_, node, token_, fs::now_unix_ms(), ttl.count())) return true;
    token_ = 0;
    return false;
  }
  void lose(const std::string& node) override {
    if (token_ != 0) store_.release_lease(name_, node, token_, fs::now_unix_ms());
    token_ = 0;  // the fence stays: the released lease no longer lets this node write
  }
  LeaseRecord observe() override {
    return store_.read_lease(name_).value_or(LeaseRecord{name_, "", 0, 0, 0});
  }
  std::int64_t token() const override { return token_; }
  std::vector<Takeover> history(int limit) override { return store_.takeovers(name_, limit); }

 private:
  Store& store_;
  std::string name_;
  std::int64_t token_ = 0;
};

// A cluster manager (Pacemaker, WSFC) decides: it starts this node when it must be active and
// stops it otherwise. Starting takes the next fencing token in the shared database, so a node
// the cluster manager failed to stop cannot write.
class ExternalCoordinator final : public FailoverCoordinator {
 public:
  ExternalCoordinator(Store* store, std::string name) : store_(store), name_(std::move(name)) {}
  std::string kind() const override { return "external"; }
  bool acquire(const std::string& node, std::chrono::milliseconds) override {
    // Once per process: the cluster manager started it to be active. A node that stepped down
    // (another was started) stays down until the cluster manager restarts it; taking a new
    // token again would make two started nodes take turns.
    if (acquired_once_) return false;
    acquired_once_ = true;
    if (!store_) {
      token_ = 1;
      return true;
    }
    for (int i = 0; i < 3; ++i) {
      const auto cur = store_->read_lease(name_);
      const auto token = (cur ? cur->token : 0) + 1;
      if (store_->raise_fence(name_, node, token, fs::now_unix_ms())) {
        token_ = token;
        return true;
      }
    }
    return false;
  }
  bool keep(const std::string&, std::chrono::milliseconds) override {
    if (!store_) return true;
    const auto cur = store_->read_lease(name_);
    return cur && cur->token == token_;  // another node was started: step down
  }
  void lose(const std::string&) override { token_ = 0; }
  LeaseRecord observe() override {
    return store_ ? store_->read_lease(name_).value_or(LeaseRecord{name_, "", 0, 0, 0})
                  : LeaseRecord{name_, "", token_, 0, 0};
  }
  std::int64_t token() const override { return token_; }
  std::vector<Takeover> history(int limit) override {
    return store_ ? store_->takeovers(name_, limit) : std::vector<Takeover>{};
  }

 private:
  Store* store_;
  std::string name_;
  std::int64_t token_ = 0;
  bool acquired_once_ = false;
};

}  // namespace

std::unique_ptr<FailoverCoordinator> make_etcd_coordinator(const CoordinatorContext& c);  // failover_etcd.cpp

void register_builtin_coordinators(CoordinatorRegistry& registry) {
  registry.add("etcd", make_etcd_coordinator);
  registry.add("external", [](const CoordinatorContext& c) -> std::unique_ptr<FailoverCoordinator> {
    return std::make_unique<ExternalCoordinator>(c.store, c.cluster);
  });
  registry.add("standalone",
               [](const CoordinatorContext&) { return std::make_unique<StandaloneCoordinator>(); });
  registry.add("db-lease", [](const CoordinatorContext& c) -> std::unique_ptr<FailoverCoordinator> {
    if (!c.store)
      throw Error(ErrorKind::invalid_argument, "the db-lease coordinator needs the manager's database");
    return std::make_unique<DbLeaseCoordinator>(*c.store, c.cluster);
  });
}

void validate_failover(const FailoverSettings& s) {
  if (s.node.empty())
    throw Error(ErrorKind::invalid_argument,
                "a clustered manager needs a node name (--node-name), unique in the cluster");
  if (s.node.size() > 64 ||
      s.node.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos)
    throw Error(ErrorKind::invalid_argument, "node name \"" + s.node +
                                                 "\" may hold only letters, digits, '.', '_' and '-' "
                                                 "(at most 64)");
  if (s.renew.count() <= 0 || s.lease.count() <= 0)
    throw Error(ErrorKind::invalid_argument, "lease and renew interval must be positive");
  if (s.lease < 2 * s.renew)
    throw Error(ErrorKind::invalid_argument, "the lease (" + std::to_string(s.lease.count()) +
                                                 " ms) must be at least twice the renew interval (" +
                                                 std::to_string(s.renew.count()) +
                                                 " ms): one late renewal must not cost the active role");
}

struct FailoverDriver::Impl {
  FailoverSettings settings;
  Callbacks callbacks;
  FailoverCoordinator* coordinator = nullptr;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  bool active = false;
  std::chrono::steady_clock::time_point last_kept;        // start of the last successful acquire/keep
  std::chrono::steady_clock::time_point last_done;        // its end
  std::chrono::steady_clock::time_point attempt_started;  // start of the acquire/keep under way
  bool attempting = false;
  std::thread runner, watchdog;
  bool reported_unreachable = false;
  std::vector<double> lateness_ms;  // ring of the last kLatenessSamples renewals
  std::size_t lateness_next = 0;
  RenewalStats totals;
  static constexpr std::size_t kLatenessSamples = 4096;

  // A renewal just completed. It was due a renew interval after the previous one completed; how
  // late it is counts the waits for the thread to run and the renewal's own time.
  void note_renewal_locked() {
    const auto now = std::chrono::steady_clock::now();
    const double late =
        std::max(0.0, std::chrono::duration<double, std::milli>(now - (last_done + settings.renew)).count());
    last_done = now;
    if (lateness_ms.size() < kLatenessSamples)
      lateness_ms.push_back(late);
    else
      lateness_ms[lateness_next] = late;
    lateness_next = (lateness_next + 1) % kLatenessSamples;
    ++totals.renewals;
    totals.sum_ms += late;
    totals.max_ms = std::max(totals.max_ms, late);
  }

  void demote_locked(std::unique_lock<std::mutex>& lock, const std::string& why) {
    if (!active) return;
    active = false;
    if (!stopping) ++totals.step_downs;
    lock.unlock();
    spdlog::warn("node {} steps down: {}", settings.node, why);
    if (callbacks.demote) callbacks.demote(why);
    lock.lock();
  }

  void run() {
    std::unique_lock lock(mutex);
    while (!stopping) {
      const bool was_active = active;
      const auto started = std::chrono::steady_clock::now();
      attempt_started = started;
      attempting = true;
      lock.unlock();
      bool ok = false;
      std::string why;
      try {
        ok = was_active ? coordinator->keep(settings.node, settings.lease)
                        : coordinator->acquire(settings.node, settings.lease);
        if (reported_unreachable && (ok || !was_active)) {
          spdlog::info("failover coordinator {} reachable again", coordinator->kind());
          reported_unreachable = false;
        }
      } catch (const std::exception& e) {
        why = e.what();
        if (!reported_unreachable) spdlog::warn("failover coordinator {}: {}", coordinator->kind(), why);
        reported_unreachable = true;
      }
      lock.lock();
      attempting = false;
      if (stopping) break;
      if (was_active && active) {
        if (ok) {
          note_renewal_locked();
          last_kept = started;
        } else {
          demote_locked(lock, why.empty() ? "the lease was lost (expired or taken by another node)" : why);
        }
      } else if (!was_active && ok && !active) {
        active = true;
        last_kept = started;
        last_done = std::chrono::steady_clock::now();
        const auto token = coordinator->token();
        lock.unlock();
        spdlog::info("node {} is active (fencing token {})", settings.node, token);
        if (callbacks.promote) callbacks.promote(token);
        lock.lock();
      }
      // A standby tries ten times a renew interval: it takes an expired lease within a tenth of
      // one (an attempt is one conditional update, or one read of the etcd key while it is held).
      const auto pause =
          active ? settings.renew : std::max(settings.renew / 10, std::chrono::milliseconds(50));
      wake.wait_for(lock, pause, [&] { return stopping; });
    }
  }

  // Demotes when no renewal succeeded for the lease minus half a renew interval: the lease may
  // expire elsewhere before this node notices through keep().
  void watch() {
    std::unique_lock lock(mutex);
    const auto limit = settings.lease - settings.renew / 2;
    while (!stopping) {
      wake.wait_for(lock, settings.renew / 4, [&] { return stopping; });
      if (stopping) break;
      const auto now = std::chrono::steady_clock::now();
      if (active && now - last_kept > limit) {
        // The measured lateness, and where the renewal is: blocked in the coordinator, or not run.
        const auto ms = [](auto d) {
          return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
        };
        demote_locked(lock,
                      "no lease renewal for " + std::to_string(settings.lease.count()) +
                          " ms (last one started " + std::to_string(ms(now - last_kept)) + " ms ago; " +
                          (attempting ? "the renewal under way has waited " +
                                            std::to_string(ms(now - attempt_started)) + " ms"
                                      : std::string("no renewal under way: this process was not scheduled")) +
                          ")");
      }
    }
  }
};

FailoverDriver::FailoverDriver(FailoverSettings settings, std::unique_ptr<FailoverCoordinator> coordinator,
                               Callbacks callbacks)
    : impl_(std::make_unique<Impl>()), coordinator_(std::move(coordinator)) {
  validate_failover(settings);
  impl_->settings = std::move(settings);
  impl_->callbacks = std::move(callbacks);
  impl_->coordinator = coordinator_.get();
}

FailoverDriver::~FailoverDriver() {
  stop();
}

void FailoverDriver::start() {
  impl_->runner = std::thread([this] { impl_->run(); });
  impl_->watchdog = std::thread([this] { impl_->watch(); });
}

void FailoverDriver::stop() {
  {
    std::unique_lock lock(impl_->mutex);
    if (impl_->stopping) return;
    impl_->stopping = true;
    impl_->demote_locked(lock, "stopping");
  }
  impl_->wake.notify_all();
  if (impl_->runner.joinable()) impl_->runner.join();
  if (impl_->watchdog.joinable()) impl_->watchdog.join();
  try {
    coordinator_->lose(impl_->settings.node);
  } catch (const std::exception& e) {
    spdlog::warn("giving up the active role: {}", e.what());
  }
}

bool FailoverDriver::active() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->active;
}

FailoverDriver::RenewalStats FailoverDriver::renewal_stats() const {
  std::lock_guard lock(impl_->mutex);
  auto out = impl_->totals;
  auto sorted = impl_->lateness_ms;
  if (!sorted.empty()) {
    std::sort(sorted.begin(), sorted.end());
    const auto at = [&](double q) {
      return sorted[std::min(sorted.size() - 1,
                             static_cast<std::size_t>(q * static_cast<double>(sorted.size())))];
    };
    out.p50_ms = at(0.50);
    out.p99_ms = at(0.99);
  }
  return out;
}

}  // namespace distrib
