#pragma once
// One manager node of an active/standby pair. A FailoverDriver runs the configured coordinator;
// the node builds and serves a Manager (on the logical address) only while it holds the active
// role, with the store's writes fenced by the role's token, and stops it at once when demoted.
// Optionally it answers GET /v1/cluster/status on a physical address of its own whatever its role.
//
// Transitions (each unit-tested): standby → promoted (the hook runs, then a Manager starts on a
// thread of its own; a start that fails is retried while the node stays active) → serving;
// serving or promoted → demoted (the Manager stops and its store refuses writes before the hook
// runs; a promotion overtaken by a demotion is void) → standby.
#include <distrib/services/failover.h>
#include <distrib/services/manager.h>
#include <distrib/store/store.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace distrib {

/// The state of a manager node, with its allowed transitions in one table (can_transition):
///   standby   ──► promoting ──► active ──► demoting ──► standby (the role given up: stop)
///      ▲             │                        │
///      │             └──────► demoting        └──────► fenced (the role lost, not given up)
///      └─────────────────────────── fenced ◄───────────┘   fenced ──► promoting | standby
/// standby: no role, no Manager; the node tries to take the role. promoting: the role is held
/// (its token); the promotion hook runs and a Manager starts. active: a Manager serves with the
/// role's token. demoting: the role is gone or given up; the Manager stops, its store refusing
/// writes first. fenced: the role was lost while the node held it (expired, taken, or the
/// coordinator unreachable): its store refuses every write; it stays fenced until it takes the
/// role again (promoting) or stops (standby).
enum class NodeState { standby, promoting, active, demoting, fenced };
inline constexpr NodeState kAllNodeStates[] = {NodeState::standby, NodeState::promoting, NodeState::active,
                                               NodeState::demoting, NodeState::fenced};
std::string_view to_string(NodeState state) noexcept;
/// Is `from` → `to` an allowed transition (the table above)? Staying is not a transition.
bool can_transition(NodeState from, NodeState to) noexcept;

struct ClusterNodeSettings {
  std::string coordinator = "db-lease";        ///< a name in the CoordinatorRegistry
  FailoverSettings failover;                   ///< node name, lease, renew interval
  std::string cluster = "distrib";             ///< lease / key name shared by the pair
  std::map<std::string, std::string> options;  ///< coordinator options (etcd: "endpoint")
  /// GET /v1/cluster/status on this address whatever the node's role; empty: not served.
  std::string status_address;
  std::uint16_t status_port = 0;
  /// Shell commands run on promotion and demotion (DISTRIB_NODE, DISTRIB_TOKEN and DISTRIB_EVENT
  /// set), e.g. to move a floating address. A non-zero exit is logged.
  std::string on_promote, on_demote;
};

class ClusterNode {
 public:
  /// Nothing starts before start(). `manager` is what each promotion serves with.
  ClusterNode(ManagerSettings manager, const StoreRegistry& stores, const CoordinatorRegistry& coordinators,
              ClusterNodeSettings settings);
  ~ClusterNode();
  ClusterNode(const ClusterNode&) = delete;
  ClusterNode& operator=(const ClusterNode&) = delete;

  /// Checks the settings, that the coordinator answers and that no live node holds the role
  /// under this node's name (waiting one lease to tell a crashed self from a twin), starts the
  /// status server, then stands by. Throws Error naming the problem.
  void start();
  /// Demotes (if active), gives the role up and stops everything. Idempotent.
  void stop();
  /// A Manager serves now.
  bool serving() const;
  /// The serving Manager's URL; empty while standing by.
  std::string url() const;
  /// The fencing token the node serves with; 0 while standing by.
  std::int64_t token() const;
  /// Where the node is in its state model (each change is logged).
  NodeState state() const;
  /// {node, state, coordinator, active, holder, token, since_ms, expires_at_ms, now_ms, lease_ms,
  /// renewals: {count, p50_ms, p99_ms, max_ms, step_downs}, promotion: {token, hook_ms, open_ms,
  /// start_ms, attempts} (the last one), takeovers}; throws Error when the coordinator cannot be
  /// reached.
  std::string status_json() const;
  /// Prometheus text: the node's state, fencing token, renewal lateness and step-downs.
  std::string metrics_text() const;
  /// Port of the status server (after start(), when one is configured).
  std::uint16_t status_port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace distrib
