// One manager node of an active/standby pair (cluster_node.h).
#include <distrib/error.h>
#include <distrib/net/http.h>
#include <distrib/services/cluster_node.h>

#include "util/fs.h"

#include <spdlog/spdlog.h>
#include <boost/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

namespace distrib {

namespace {

void run_hook(const std::string& command, const std::string& node, std::int64_t token,
              const std::string& event) {
  if (command.empty()) return;
  // Node names are letters, digits, '.', '_' and '-' (validate_failover): safe unquoted.
  const std::string env = "export DISTRIB_NODE=" + node + " DISTRIB_TOKEN=" + std::to_string(token) +
                          " DISTRIB_EVENT=" + event + "; ";
  const int rc = std::system((env + command).c_str());
  if (rc != 0) spdlog::warn("--on-{} command exited with status {}", event, rc);
}

}  // namespace

std::string_view to_string(NodeState state) noexcept {
  switch (state) {
    case NodeState::standby:
      return "standby";
    case NodeState::promoting:
      return "promoting";
    case NodeState::active:
      return "active";
    case NodeState::demoting:
      return "demoting";
    case NodeState::fenced:
      return "fenced";
  }
  return "?";
}

bool can_transition(NodeState from, NodeState to) noexcept {
  using S = NodeState;
  switch (from) {
    case S::standby:
      return to == S::promoting;
    case S::promoting:
      return to == S::active || to == S::demoting;
    case S::active:
      return to == S::demoting;
    case S::demoting:
      return to == S::standby || to == S::fenced;
    case S::fenced:
      return to == S::promoting || to == S::standby;
  }
  return false;
}

struct ClusterNode::Impl {
  ManagerSettings manager_settings;
  const StoreRegistry& stores;
  const CoordinatorRegistry& coordinators;
  ClusterNodeSettings settings;

  std::unique_ptr<Store> coordinator_store;  // the coordinator's own connections
  FailoverCoordinator* coordinator = nullptr;
  std::unique_ptr<FailoverDriver> driver;
  std::unique_ptr<HttpServer> status_server;

  // The serving thread starts and stops the Manager: the driver's thread must keep renewing while
  // a Manager starts, and the logical address may still be held for a moment by the node that had
  // it (stopped, not yet demoted): the start is retried while this node stays active.
  mutable std::mutex mutex;
  std::condition_variable changed;
  std::unique_ptr<Manager> manager;
  std::int64_t want_token = 0;  // 0: standby
  std::int64_t serving_token = 0;
  std::uint64_t generation = 0;  // every promote and demote: a promote overtaken by a demote is void
  NodeState state = NodeState::standby;
  bool giving_up = false;  // stop() under way: a demotion gives the role up (standby, not fenced)
  bool quit = false;
  bool started = false;
  std::thread server;
  // The phases of the last promotion (mutex held): what a takeover spent its time on.
  struct Promotion {
    std::int64_t token = 0;
    double hook_ms = 0, open_ms = 0, start_ms = 0;
    int attempts = 0;
  } promotion;

  Impl(ManagerSettings m, const StoreRegistry& s, const CoordinatorRegistry& c, ClusterNodeSettings n)
      : manager_settings(std::move(m)), stores(s), coordinators(c), settings(std::move(n)) {}

  bool fenced() const { return settings.coordinator != "standalone"; }

  // Moves to `to` (mutex held), logging the change; a change the table does not allow is a
  // fault of this code: logged as an error, and the state follows what happened.
  void set_state_locked(NodeState to, const std::string& why) {
    if (state == to) return;
    if (!can_transition(state, to))
      spdlog::error("node {}: state {} -> {} is not an allowed transition ({})", settings.failover.node,
                    to_string(state), to_string(to), why);
    else
      spdlog::info("node {}: {} -> {} ({})", settings.failover.node, to_string(state), to_string(to), why);
    state = to;
  }

  // A hold under this node's name that is still running (not a crashed self's expired one).
  bool held_by_this_name(const LeaseRecord& lease) const {
    return settings.coordinator != "external" && lease.holder == settings.failover.node &&
           (settings.coordinator == "etcd" || lease.expires_at_ms > fs::now_unix_ms());
  }

  void check_coordinator() {
    if (settings.coordinator == "standalone") return;
    LeaseRecord lease;
    try {
      lease = coordinator->observe();
    } catch (const Error& e) {
      throw Error(ErrorKind::unavailable,
                  "the " + settings.coordinator + " coordinator cannot be reached: " + e.what());
    }
    if (held_by_this_name(lease)) {
      // This node's own hold from before a crash, or another node with the same name? Wait for
      // the hold to run out: a live twin renews it.
      spdlog::warn(
          "the active role is held under this node's name ({}); waiting one lease to see whether "
          "another node with the same name renews it",
          settings.failover.node);
      std::this_thread::sleep_for(settings.failover.lease + settings.failover.renew);
      lease = coordinator->observe();
    }
    if (held_by_this_name(lease))
      throw Error(ErrorKind::invalid_argument,
                  "node name \"" + settings.failover.node +
                      "\" already holds the active lease: another node runs with "
                      "the same --node-name (each node needs its own)");
  }

  std::string status_json() const {
    namespace bj = boost::json;
    const auto lease = coordinator->observe();
    bj::array history;
    for (const auto& t : coordinator->history(10))
      history.push_back(bj::object{{"holder", t.holder},
                                   {"previous", t.previous},
                                   {"token", t.token},
                                   {"at_ms", t.at_ms},
                                   {"gap_ms", t.gap_ms}});
    bool active = false;
    NodeState now_state = NodeState::standby;
    Promotion last;
    {
      std::lock_guard lock(mutex);
      active = manager != nullptr;
      now_state = state;
      last = promotion;
    }
    const auto r = driver ? driver->renewal_stats() : FailoverDriver::RenewalStats{};
    return bj::serialize(bj::object{{"node", settings.failover.node},
                                    {"state", std::string(to_string(now_state))},
                                    {"coordinator", coordinator->kind()},
                                    {"active", active},
                                    {"holder", lease.holder},
                                    {"token", lease.token},
                                    {"since_ms", lease.since_ms},
                                    {"expires_at_ms", lease.expires_at_ms},
                                    {"now_ms", fs::now_unix_ms()},
                                    {"lease_ms", settings.failover.lease.count()},
                                    {"renewals", bj::object{{"count", r.renewals},
                                                            {"p50_ms", r.p50_ms},
                                                            {"p99_ms", r.p99_ms},
                                                            {"max_ms", r.max_ms},
                                                            {"step_downs", r.step_downs}}},
                                    {"promotion", bj::object{{"token", last.token},
                                                             {"hook_ms", last.hook_ms},
                                                             {"open_ms", last.open_ms},
                                                             {"start_ms", last.start_ms},
                                                             {"attempts", last.attempts}}},
                                    {"takeovers", std::move(history)}});
  }

  std::string metrics_text() const {
    NodeState now_state = NodeState::standby;
    std::int64_t token = 0;
    {
      std::lock_guard lock(mutex);
      now_state = state;
      token = serving_token;
    }
    const auto r = driver ? driver->renewal_stats() : FailoverDriver::RenewalStats{};
    const auto node = "node=\"" + settings.failover.node + "\"";  // letters, digits, . _ - only
    std::string out =
        "# HELP distrib_cluster_node_state The state this manager node is in (1), by state.\n"
        "# TYPE distrib_cluster_node_state gauge\n";
    for (const auto st : kAllNodeStates)
      out += "distrib_cluster_node_state{" + node + ",state=\"" + std::string(to_string(st)) + "\"} " +
             (st == now_state ? "1" : "0") + "\n";
    const auto num = [](double v) { return fmt::format("{:.6f}", v); };
    out +=
        "# HELP distrib_cluster_fencing_token The fencing token this node serves with (0: not serving).\n"
        "# TYPE distrib_cluster_fencing_token gauge\n"
        "distrib_cluster_fencing_token{" +
        node + "} " + std::to_string(token) +
        "\n"
        "# HELP distrib_cluster_renewal_lateness_seconds How late the active node's lease renewals "
        "completed against their schedule (last 4096).\n"
        "# TYPE distrib_cluster_renewal_lateness_seconds summary\n"
        "distrib_cluster_renewal_lateness_seconds{" +
        node + ",quantile=\"0.5\"} " + num(r.p50_ms / 1000) +
        "\n"
        "distrib_cluster_renewal_lateness_seconds{" +
        node + ",quantile=\"0.99\"} " + num(r.p99_ms / 1000) +
        "\n"
        "distrib_cluster_renewal_lateness_seconds_sum{" +
        node + "} " + num(r.sum_ms / 1000) +
        "\n"
        "distrib_cluster_renewal_lateness_seconds_count{" +
        node + "} " + std::to_string(r.renewals) +
        "\n"
        "# HELP distrib_cluster_step_downs_total Times this node stepped down while active (an orderly "
        "stop not counted).\n"
        "# TYPE distrib_cluster_step_downs_total counter\n"
        "distrib_cluster_step_downs_total{" +
        node + "} " + std::to_string(r.step_downs) + "\n";
    return out;
  }

  void start_status_server() {
    if (settings.status_address.empty()) return;
    HttpServerSettings hs;
    hs.address = settings.status_address;
    hs.port = settings.status_port;
    hs.threads = 1;
    status_server = std::make_unique<HttpServer>(hs, [this](HttpRequest&& req, Responder r) {
      HttpResponse res;
      if (req.path == "/metrics") {
        res.content_type = "text/plain; version=0.0.4";
        res.body = metrics_text();
      } else if (req.path == "/v1/cluster/status") {
        try {
          res.body = status_json();
        } catch (const std::exception& e) {
          res.status = 503;
          res.body = boost::json::serialize(boost::json::object{{"error", e.what()}});
        }
      } else {
        res.status = 404;
        res.body = R"({"error":"only /v1/cluster/status and /metrics are served on the physical address"})";
      }
      r(std::move(res));
    });
    status_server->start();
  }

  bool giving_up_now() const {
    std::lock_guard lock(mutex);
    return giving_up;
  }

  // A cluster.state event through the serving Manager's store (fenced by the role's token).
  void record_state_event(Manager& m, const std::string& what) {
    Event e;
    e.type = "cluster.state";
    e.at_ms = fs::now_unix_ms();
    e.subject = settings.failover.node;
    e.message = "node " + settings.failover.node + ": " + what;
    try {
      m.store().record_events({e});
    } catch (const std::exception& ex) {
      spdlog::warn("node {}: cluster.state event not recorded: {}", settings.failover.node, ex.what());
    }
  }

  // Stops a Manager that no longer may serve: its store refuses writes first.
  void retire(std::unique_ptr<Manager> m) {
    if (!m) return;
    m->store().set_fencing(settings.cluster, fenced() ? -1 : 0);
    m->stop();
    spdlog::warn("node {} stopped serving", settings.failover.node);
  }

  void serve_loop() {
    std::unique_lock lock(mutex);
    while (!quit) {
      changed.wait(lock, [&] { return quit || (want_token != 0) != (manager != nullptr); });
      if (quit) break;
      if (want_token != 0 && !manager) {
        const auto token = want_token;
        if (promotion.token == token) ++promotion.attempts;
        lock.unlock();
        std::unique_ptr<Manager> m;
        double open_ms = 0, start_ms = 0;
        try {
          const auto t0 = std::chrono::steady_clock::now();
          m = std::make_unique<Manager>(manager_settings, stores);
          m->store().set_fencing(settings.cluster, fenced() ? token : 0);
          const auto t1 = std::chrono::steady_clock::now();
          m->start();
          open_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
          start_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
        } catch (const std::exception& e) {
          m.reset();
          spdlog::warn("node {} cannot serve yet: {}; retrying", settings.failover.node, e.what());
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
        }
        lock.lock();
        if (m && want_token == token) {
          manager = std::move(m);
          serving_token = token;
          promotion.open_ms = open_ms;
          promotion.start_ms = start_ms;
          set_state_locked(NodeState::active, "serving with token " + std::to_string(token));
          const auto p = promotion;
          auto* serving = manager.get();
          lock.unlock();
          spdlog::info(
              "node {} serves {} (fencing token {}): promotion hook {:.0f} ms, store opened {:.0f} ms, "
              "started {:.0f} ms, {} attempt(s)",
              settings.failover.node, serving->url(), token, p.hook_ms, p.open_ms, p.start_ms, p.attempts);
          record_state_event(*serving, "active (fencing token " + std::to_string(token) +
                                           "; store opened in " +
                                           std::to_string(static_cast<long>(p.open_ms)) + " ms, started in " +
                                           std::to_string(static_cast<long>(p.start_ms)) + " ms)");
          lock.lock();
        } else if (m) {
          lock.unlock();
          retire(std::move(m));
          lock.lock();
        }
      } else if (want_token == 0 && manager) {
        auto m = std::move(manager);
        serving_token = 0;
        lock.unlock();
        retire(std::move(m));
        lock.lock();
      }
    }
  }

  void promote(std::int64_t token) {
    std::uint64_t mine = 0;
    {
      std::lock_guard lock(mutex);
      mine = ++generation;
      set_state_locked(NodeState::promoting, "took the role, token " + std::to_string(token));
      promotion = Promotion{token, 0, 0, 0, 0};
    }
    const auto t0 = std::chrono::steady_clock::now();
    run_hook(settings.on_promote, settings.failover.node, token, "promote");
    {
      std::lock_guard lock(mutex);
      promotion.hook_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (generation != mine) return;  // demoted while the hook ran
      want_token = token;
    }
    changed.notify_all();
  }

  void demote(const std::string& why) {
    std::unique_ptr<Manager> m;
    {
      std::lock_guard lock(mutex);
      ++generation;
      want_token = 0;
      serving_token = 0;
      m = std::move(manager);  // stopped here, at once: the lease may already be elsewhere
      set_state_locked(NodeState::demoting, why);
    }
    changed.notify_all();
    // An orderly stop still holds the role: its store may say so. A role lost is told by the new
    // holder (cluster.takeover): this node may not write any more.
    if (m && giving_up_now()) record_state_event(*m, "gives the active role up (" + why + ")");
    retire(std::move(m));
    {
      std::lock_guard lock(mutex);
      // Given up (the node stops) or lost while held: fenced until the role is taken again.
      if (state == NodeState::demoting)
        set_state_locked(giving_up ? NodeState::standby : NodeState::fenced,
                         giving_up ? "role given up" : "role lost; writes refused");
    }
    run_hook(settings.on_demote, settings.failover.node, 0, "demote");
  }
};

ClusterNode::ClusterNode(ManagerSettings manager, const StoreRegistry& stores,
                         const CoordinatorRegistry& coordinators, ClusterNodeSettings settings)
    : impl_(std::make_unique<Impl>(std::move(manager), stores, coordinators, std::move(settings))) {}

ClusterNode::~ClusterNode() {
  stop();
}

void ClusterNode::start() {
  auto& i = *impl_;
  if (i.started) return;
  validate_failover(i.settings.failover);
  auto& s = i.manager_settings;
  // The logical address passes from node to node; a stopped old active may still hold it.
  s.take_over_address = i.fenced();
  if (s.store.backend == "sqlite" && s.store.path.empty())
    s.store.path = (std::filesystem::path(s.state_dir) / "distrib.db").string();
  std::filesystem::create_directories(s.state_dir);
  i.coordinator_store = i.stores.open(s.store);
  CoordinatorContext ctx;
  ctx.store = i.coordinator_store.get();
  ctx.cluster = i.settings.cluster;
  ctx.options = i.settings.options;
  auto coordinator = i.coordinators.make(i.settings.coordinator, ctx);
  i.coordinator = coordinator.get();
  i.check_coordinator();
  s.cluster_status = [&i] { return i.status_json(); };
  s.cluster_metrics = [&i] { return i.metrics_text(); };
  i.start_status_server();
  i.server = std::thread([&i] { i.serve_loop(); });
  FailoverDriver::Callbacks callbacks;
  callbacks.promote = [&i](std::int64_t token) { i.promote(token); };
  callbacks.demote = [&i](const std::string& why) { i.demote(why); };
  i.driver = std::make_unique<FailoverDriver>(i.settings.failover, std::move(coordinator), callbacks);
  spdlog::info("node {} standing by ({} coordinator, lease {} ms, renew {} ms)", i.settings.failover.node,
               i.settings.coordinator, i.settings.failover.lease.count(), i.settings.failover.renew.count());
  i.started = true;
  i.driver->start();
}

void ClusterNode::stop() {
  auto& i = *impl_;
  if (!i.started) return;
  i.started = false;
  {
    std::lock_guard lock(i.mutex);
    i.giving_up = true;
  }
  i.driver->stop();  // demotes (the Manager stops) and gives the role up
  {
    std::lock_guard lock(i.mutex);
    i.quit = true;
  }
  i.changed.notify_all();
  if (i.server.joinable()) i.server.join();
  if (i.status_server) i.status_server->stop();
  std::lock_guard lock(i.mutex);
  if (i.state == NodeState::fenced) i.set_state_locked(NodeState::standby, "stopped");
}

NodeState ClusterNode::state() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->state;
}

bool ClusterNode::serving() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->manager != nullptr;
}

std::string ClusterNode::url() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->manager ? impl_->manager->url() : std::string();
}

std::int64_t ClusterNode::token() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->serving_token;
}

std::string ClusterNode::status_json() const {
  return impl_->status_json();
}

std::uint16_t ClusterNode::status_port() const {
  return impl_->status_server ? impl_->status_server->port() : std::uint16_t{0};
}

}  // namespace distrib
