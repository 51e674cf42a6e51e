#pragma once
// Active/standby managers: which node is active is decided by a FailoverCoordinator; one
// FailoverDriver per node runs it (timing, retries, watchdog) and promotes or demotes the node.
//
// Coordinator contract (every implementation):
//  - acquire(node, ttl): true only when `node` now holds the active role, with a token greater
//    than any earlier holder's, valid for `ttl` from the call. False when another node holds it.
//  - keep(node, ttl): extends the hold by `ttl`; false once the role may have passed to another
//    node (expired, taken, or unknowable). After false the node must stop serving and writing.
//  - lose(node): gives the role up now (an orderly stop), so a standby need not wait for expiry.
//  - observe(): the current holder as the coordinator sees it; changes nothing.
//  acquire/keep/lose come from one driver thread, never concurrently; observe() and history()
//  may be called from any thread at any time (status pages). A call may throw distrib::Error
//  when the coordinator cannot be reached; the driver treats that as "not acquired" / "not kept".
#include <distrib/store/store.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace distrib {

class FailoverCoordinator {
 public:
  virtual ~FailoverCoordinator() = default;
  virtual std::string kind() const = 0;
  virtual bool acquire(const std::string& node, std::chrono::milliseconds ttl) = 0;
  virtual bool keep(const std::string& node, std::chrono::milliseconds ttl) = 0;
  virtual void lose(const std::string& node) = 0;
  virtual LeaseRecord observe() = 0;
  /// The fencing token of the current hold (0 when not held).
  virtual std::int64_t token() const = 0;
  /// Takeovers the coordinator knows of, newest first (empty when it keeps none).
  virtual std::vector<Takeover> history(int /*limit*/) { return {}; }
};

/// What a coordinator may need: the node's store (db-lease) and settings by key.
struct CoordinatorContext {
  Store* store = nullptr;
  std::string cluster = "distrib";             ///< lease / key name
  std::map<std::string, std::string> options;  ///< e.g. "endpoints" for etcd
};

/// Maps a coordinator name to a factory (the common `Registry`). `register_builtin_coordinators`
/// adds standalone, db-lease, etcd (options: "endpoint", e.g. http://127.0.0.1:2379) and external
/// (a cluster manager such as Pacemaker starts and stops the node).
class CoordinatorRegistry : public Registry<FailoverCoordinator, CoordinatorContext> {
 public:
  CoordinatorRegistry() : Registry("failover coordinator") {}
};
void register_builtin_coordinators(CoordinatorRegistry& registry);

struct FailoverSettings {
  std::string node;  ///< this node's name, unique in the cluster
  std::chrono::milliseconds lease{3000};
  std::chrono::milliseconds renew{1000};
};
/// Throws Error(invalid_argument) naming the problem: no node name, a lease not longer than
/// twice the renew interval (one lost renewal must not cost the role), non-positive times.
void validate_failover(const FailoverSettings& settings);

/// Runs a coordinator for one node. A standby tries to acquire every renew interval; the active
/// node keeps its hold every renew interval. The node is demoted at once when keep() fails or
/// throws, and by a watchdog when no keep() succeeded for the lease minus half a renew interval
/// (a keep() that hangs, a process that was stopped): the role may be elsewhere by then.
class FailoverDriver {
 public:
  /// How late the active node's renewals completed against their schedule (the previous
  /// renewal's start plus the renew interval), over the last 4096 renewals; and how many times
  /// the node stepped down since it started.
  struct RenewalStats {
    std::uint64_t renewals = 0;
    double p50_ms = 0, p99_ms = 0, max_ms = 0, sum_ms = 0;
    std::uint64_t step_downs = 0;
  };
  struct Callbacks {
    std::function<void(std::int64_t token)> promote;     ///< become active (start serving)
    std::function<void(const std::string& why)> demote;  ///< stop serving and writing now
  };
  FailoverDriver(FailoverSettings settings, std::unique_ptr<FailoverCoordinator> coordinator,
                 Callbacks callbacks);
  ~FailoverDriver();
  FailoverDriver(const FailoverDriver&) = delete;
  FailoverDriver& operator=(const FailoverDriver&) = delete;
  void start();
  /// Demotes (if active), gives the role up and stops.
  void stop();
  bool active() const;
  RenewalStats renewal_stats() const;
  FailoverCoordinator& coordinator() { return *coordinator_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<FailoverCoordinator> coordinator_;
};

}  // namespace distrib
