// ClusterNode's transitions, driven by a coordinator the test grants and revokes: standby →
// serving → demoted → serving again with a newer token; hooks; a node that stops.
#include <distrib/net/http.h>
#include <distrib/services/cluster_node.h>

#include "harness.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <set>

using namespace distrib;
using namespace distrib::test;

namespace {

// Grants the role while `grant` is set, with a new token at each acquisition.
struct Switch {
  std::atomic<bool> grant{false};
  std::atomic<std::int64_t> token{0};
  std::atomic<bool> unreachable{false};
};

class SwitchCoordinator final : public FailoverCoordinator {
 public:
  explicit SwitchCoordinator(Switch& s) : s_(s) {}
  std::string kind() const override { return "switch"; }
  bool acquire(const std::string& node, std::chrono::milliseconds) override {
    if (s_.unreachable) throw Error(ErrorKind::unavailable, "switch unreachable");
    if (!s_.grant) return false;
    std::lock_guard lock(mutex_);
    holder_ = node;
    held_ = ++s_.token;
    return true;
  }
  bool keep(const std::string&, std::chrono::milliseconds) override { return s_.grant && !s_.unreachable; }
  void lose(const std::string&) override {
    std::lock_guard lock(mutex_);
    holder_.clear();
    held_ = 0;
  }
  LeaseRecord observe() override {
    if (s_.unreachable) throw Error(ErrorKind::unavailable, "switch unreachable");
    std::lock_guard lock(mutex_);
    LeaseRecord r;
    r.name = "distrib";
    r.holder = holder_;
    r.token = held_;
    return r;
  }
  std::int64_t token() const override { return s_.token; }

 private:
  Switch& s_;
  std::mutex mutex_;
  std::string holder_;
  std::int64_t held_ = 0;
};

struct Fixture {
  TempDir tmp;
  Switch sw;
  StoreRegistry stores;
  CoordinatorRegistry coordinators;
  ManagerSettings manager;
  ClusterNodeSettings node;
  Fixture() {
    register_builtin_stores(stores);
    coordinators.add("switch",
                     [this](const CoordinatorContext&) { return std::make_unique<SwitchCoordinator>(sw); });
    manager.state_dir = tmp / "state";
    manager.listen_address = "127.0.0.1";
    manager.port = 0;
    node.coordinator = "switch";
    node.failover.node = "node-a";
    node.failover.lease = std::chrono::milliseconds(600);
    node.failover.renew = std::chrono::milliseconds(100);
    node.status_address = "127.0.0.1";
    node.on_promote = "echo \"$DISTRIB_EVENT $DISTRIB_NODE $DISTRIB_TOKEN\" >> " + (tmp / "hooks").string();
    node.on_demote = node.on_promote;
  }
};

// Whether this node's manager (its host id) answers at `url`: another process of a parallel test
// may take the same port once the node lets it go.
std::string trimmed_host_id(const std::string& state_dir) {
  auto id = read_file(state_dir + "/host-id");
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

bool answers(const std::string& url, const std::string& state_dir) {
  try {
    HttpClient c({url, state_dir + "/pki/ca.crt", "", 2, 2});
    const auto r = c.request("GET", "/v1/status");
    return r.status == 200 && r.body.find(trimmed_host_id(state_dir)) != std::string::npos;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

// Grants the role at once; every renewal after the first blocks for `block` (a renewal held
// back behind a lock, or a coordinator that does not answer).
class SlowKeepCoordinator final : public FailoverCoordinator {
 public:
  explicit SlowKeepCoordinator(std::chrono::milliseconds block) : block_(block) {}
  std::string kind() const override { return "slow"; }
  bool acquire(const std::string&, std::chrono::milliseconds) override { return true; }
  bool keep(const std::string&, std::chrono::milliseconds) override {
    std::this_thread::sleep_for(block_);
    return true;
  }
  void lose(const std::string&) override {}
  LeaseRecord observe() override { return {}; }
  std::int64_t token() const override { return 1; }

 private:
  std::chrono::milliseconds block_;
};

TEST_CASE("a node whose renewal is held back past the lease steps down, saying how late it is", "[cluster]") {
  FailoverSettings s;
  s.node = "late";
  s.lease = std::chrono::milliseconds(600);
  s.renew = std::chrono::milliseconds(100);
  std::mutex m;
  std::string why;
  std::atomic<bool> promoted{false};
  FailoverDriver::Callbacks cb;
  cb.promote = [&](std::int64_t) { promoted = true; };
  cb.demote = [&](const std::string& w) {
    std::lock_guard lock(m);
    if (why.empty()) why = w;
  };
  FailoverDriver driver(s, std::make_unique<SlowKeepCoordinator>(std::chrono::milliseconds(2000)), cb);
  driver.start();
  REQUIRE(wait_until([&] { return promoted.load(); }, std::chrono::seconds(5)));
  REQUIRE(wait_until(
      [&] {
        std::lock_guard lock(m);
        return !why.empty();
      },
      std::chrono::seconds(5)));
  driver.stop();
  INFO(why);
  CHECK(why.rfind("no lease renewal for 600 ms (last one started ", 0) == 0);
  CHECK(why.find("the renewal under way has waited") != std::string::npos);
}

TEST_CASE("renewal lateness is measured against the schedule", "[cluster]") {
  FailoverSettings s;
  s.node = "timed";
  s.lease = std::chrono::milliseconds(2000);
  s.renew = std::chrono::milliseconds(100);
  FailoverDriver driver(s, std::make_unique<SlowKeepCoordinator>(std::chrono::milliseconds(60)), {});
  driver.start();
  REQUIRE(wait_until([&] { return driver.renewal_stats().renewals >= 5; }, std::chrono::seconds(10)));
  const auto r = driver.renewal_stats();
  driver.stop();
  // Each renewal takes 60 ms after it was due (a renew interval after the previous one ended).
  CHECK(r.p50_ms >= 55);
  CHECK(r.p50_ms < 1000);
  CHECK(r.p99_ms >= r.p50_ms);
  CHECK(r.max_ms >= r.p99_ms);
  CHECK(r.step_downs == 0);
}

TEST_CASE("a node's states change only along the table", "[cluster]") {
  using S = NodeState;
  const std::set<std::pair<S, S>> allowed = {
      {S::standby, S::promoting}, {S::promoting, S::active}, {S::promoting, S::demoting},
      {S::active, S::demoting},   {S::demoting, S::standby}, {S::demoting, S::fenced},
      {S::fenced, S::promoting},  {S::fenced, S::standby},
  };
  int checked = 0;
  for (auto from : kAllNodeStates)
    for (auto to : kAllNodeStates) {
      INFO(to_string(from) << " -> " << to_string(to));
      CHECK(can_transition(from, to) == (allowed.count({from, to}) > 0));
      ++checked;
    }
  CHECK(checked == 25);
  std::set<std::string_view> names;
  for (auto s : kAllNodeStates) names.insert(to_string(s));
  CHECK(names == std::set<std::string_view>{"standby", "promoting", "active", "demoting", "fenced"});
}

TEST_CASE("a cluster node serves only while it holds the role, with the role's token", "[cluster]") {
  Fixture f;
  ClusterNode node(f.manager, f.stores, f.coordinators, f.node);
  node.start();
  HttpClient status({"http://127.0.0.1:" + std::to_string(node.status_port()), "", "", 2, 2});

  // standby: nothing serves; the status answers on the physical address
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  CHECK_FALSE(node.serving());
  CHECK(node.url().empty());
  CHECK(status.request("GET", "/v1/cluster/status").body.find("\"active\":false") != std::string::npos);
  CHECK(node.state() == NodeState::standby);
  CHECK(status.request("GET", "/v1/cluster/status").body.find("\"state\":\"standby\"") != std::string::npos);

  // promoted: a manager serves with token 1 and its store is fenced with it
  f.sw.grant = true;
  REQUIRE(wait_until([&] { return node.serving(); }, std::chrono::seconds(10)));
  CHECK(node.token() == 1);
  CHECK(node.state() == NodeState::active);
  const auto first = node.url();
  CHECK(answers(first, f.manager.state_dir.string()));
  CHECK(status.request("GET", "/v1/cluster/status").body.find("\"active\":true") != std::string::npos);
  // The state and token on /metrics of the physical address (and of the manager's own /metrics).
  auto metrics = status.request("GET", "/metrics").body;
  CHECK(metrics.find("distrib_cluster_node_state{node=\"node-a\",state=\"active\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find("distrib_cluster_node_state{node=\"node-a\",state=\"standby\"} 0\n") !=
        std::string::npos);
  CHECK(metrics.find("distrib_cluster_fencing_token{node=\"node-a\"} 1\n") != std::string::npos);
  // Renewals are timed once the node is active.
  REQUIRE(wait_until(
      [&] {
        return status.request("GET", "/metrics")
                   .body.find("distrib_cluster_renewal_lateness_seconds_count{node=\"node-a\"} 0\n") ==
               std::string::npos;
      },
      std::chrono::seconds(5)));
  CHECK(status.request("GET", "/v1/cluster/status").body.find("\"promotion\":{\"token\":1,") !=
        std::string::npos);

  // demoted when the role may have passed: the manager stops at once
  f.sw.grant = false;
  REQUIRE(wait_until([&] { return !node.serving(); }, std::chrono::seconds(10)));
  CHECK(node.token() == 0);
  // lost, not given up: fenced until it takes the role again
  CHECK(wait_until([&] { return node.state() == NodeState::fenced; }, std::chrono::seconds(5)));
  CHECK(status.request("GET", "/v1/cluster/status").body.find("\"state\":\"fenced\"") != std::string::npos);
  metrics = status.request("GET", "/metrics").body;
  CHECK(metrics.find("distrib_cluster_node_state{node=\"node-a\",state=\"fenced\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find("distrib_cluster_step_downs_total{node=\"node-a\"} 1\n") != std::string::npos);
  // The role is dropped first (nothing is written after it); the listener closes right after.
  CHECK(wait_until([&] { return !answers(first, f.manager.state_dir.string()); }, std::chrono::seconds(2)));

  // promoted again: a newer token
  f.sw.grant = true;
  REQUIRE(wait_until([&] { return node.serving(); }, std::chrono::seconds(10)));
  CHECK(node.token() == 2);
  CHECK(node.state() == NodeState::active);
  CHECK(answers(node.url(), f.manager.state_dir.string()));

  // a coordinator that cannot be reached demotes the node (the watchdog, or keep() false)
  f.sw.unreachable = true;
  REQUIRE(wait_until([&] { return !node.serving(); }, std::chrono::seconds(10)));
  CHECK(status.request("GET", "/v1/cluster/status").status == 503);
  f.sw.unreachable = false;
  REQUIRE(wait_until([&] { return node.serving(); }, std::chrono::seconds(10)));

  node.stop();
  CHECK_FALSE(node.serving());
  CHECK(node.state() == NodeState::standby);  // given up
  // every transition ran its hook with the node and the token
  const auto hooks = read_file(f.tmp / "hooks");
  CHECK(hooks.find("promote node-a 1\n") != std::string::npos);
  CHECK(hooks.find("demote node-a 0\n") != std::string::npos);
  CHECK(hooks.find("promote node-a 2\n") != std::string::npos);
  CHECK(hooks.find("promote node-a 3\n") != std::string::npos);
}

TEST_CASE("a cluster node refuses to start when its coordinator cannot be reached or settings are wrong",
          "[cluster]") {
  Fixture f;
  f.sw.unreachable = true;
  {
    ClusterNode node(f.manager, f.stores, f.coordinators, f.node);
    CHECK_THROWS_WITH(node.start(), Catch::Contains("the switch coordinator cannot be reached"));
    CHECK_FALSE(node.serving());
  }
  f.sw.unreachable = false;
  f.node.failover.lease = std::chrono::milliseconds(150);  // not twice the renew interval
  {
    ClusterNode node(f.manager, f.stores, f.coordinators, f.node);
    CHECK_THROWS_AS(node.start(), Error);
  }
  f.node.failover.lease = std::chrono::milliseconds(600);
  f.node.coordinator = "zookeeper";
  {
    ClusterNode node(f.manager, f.stores, f.coordinators, f.node);
    CHECK_THROWS_WITH(node.start(), Catch::Contains("unknown failover coordinator \"zookeeper\""));
  }
}
