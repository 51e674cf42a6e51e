// Active/standby managers with the db-lease coordinator: real distribd nodes sharing a database
// and a state directory, agents on the logical address, takeover after kill -9, split brain
// after SIGSTOP, and configuration errors.
#include "ctl_json.h"
#include "harness.h"

#include <distrib/net/http.h>

#include <catch2/catch.hpp>

#include <unistd.h>
#include <csignal>

#include <map>
#include <thread>

using namespace distrib::test;

namespace {

// One manager node of the pair.
struct Node {
  std::string name;
  std::string status_url;
  std::unique_ptr<Process> proc;
  Node(const TempDir& tmp, const stdfs::path& shared, const std::string& node, const std::string& logical_ip,
       int port, const std::string& status_ip, std::vector<std::string> db)
      : name(node), status_url("http://" + status_ip + ":" + std::to_string(port) + "/v1/cluster/status") {
    std::vector<std::string> argv = {distribd_path(),
                                     "--role",
                                     "manager",
                                     "--state-dir",
                                     shared.string(),
                                     "--listen",
                                     logical_ip,
                                     "--port",
                                     std::to_string(port),
                                     "--node-name",
                                     node,
                                     "--status-listen",
                                     status_ip + ":" + std::to_string(port),
                                     "--poll-timeout",
                                     "5",
                                     "--log-level",
                                     "debug"};
    argv.insert(argv.end(), db.begin(), db.end());
    if (std::find(db.begin(), db.end(), "--failover") == db.end())
      argv.insert(argv.end(), {"--failover", "db-lease"});
    proc = std::make_unique<Process>(argv, (tmp / (node + ".log")).string());
  }
  // The node's own view (empty object when it does not answer).
  boost::json::object status() const {
    auto r = run({"curl", "-s", "--max-time", "2", status_url}, 5s);
    if (r.exit_code != 0 || r.out.empty()) return {};
    boost::system::error_code ec;
    auto v = boost::json::parse(r.out, ec);
    return !ec && v.is_object() ? v.as_object() : boost::json::object{};
  }
  bool active() const {
    const auto s = status();
    return s.contains("active") && s.at("active").as_bool();
  }
};

// Is every thread of `pid` stopped (state T in /proc/PID/task/TID/stat)?
bool all_threads_stopped(int pid) {
  std::error_code ec;
  for (const auto& t : stdfs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    const auto stat = read_file(t.path() / "stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'T') return false;
  }
  return !ec;
}

int occurrences(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

int cluster_port() {
  return 47300 + ::getpid() % 200;
}

// A one-member etcd on loopback, on a port below the kernel's range for outgoing connections
// (an outgoing connection may hold a port in it); another port is tried when one is taken.
struct Etcd {
  std::unique_ptr<Process> proc;
  std::string url;
  Etcd(const TempDir& tmp, int port) {
    std::string log;
    for (int attempt = 0; attempt < 5; ++attempt) {
      const int p = port - 20000 + 400 * attempt;  // 27xxx, 27xxx + 400, ...
      url = "http://127.0.0.1:" + std::to_string(p);
      const auto peer = "http://127.0.0.1:" + std::to_string(p + 1);
      const auto data = tmp / ("etcd" + std::to_string(attempt));
      proc = std::make_unique<Process>(
          std::vector<std::string>{"etcd", "--name", "t", "--data-dir", data.string(), "--listen-client-urls",
                                   url, "--advertise-client-urls", url, "--listen-peer-urls", peer,
                                   "--initial-advertise-peer-urls", peer, "--initial-cluster", "t=" + peer},
          (tmp / ("etcd" + std::to_string(attempt) + ".log")).string());
      if (wait_until(
              [&] {
                return !proc->running() ||
                       run({"curl", "-sf", url + "/health"}, 5s).out.find("true") != std::string::npos;
              },
              20s, 100ms) &&
          proc->running())
        return;
      log += proc->log();
      proc.reset();
    }
    FAIL("etcd did not start on any of five ports:\n" << log);
  }
};

RunResult ctl(const std::string& url, const stdfs::path& shared, std::vector<std::string> args,
              bool json = true, std::chrono::seconds timeout = 60s) {
  std::vector<std::string> argv = {distribctl_path(), "--server", url, "--token-file",
                                   (shared / "admin.token").string()};
  if (json) argv.push_back("--json");
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, timeout);
}

stdfs::path counting_package(const TempDir& tmp, std::size_t bytes) {
  const auto dir = tmp / "pkg";
  std::string payload(bytes, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>((i * 2654435761u) >> 11);
  write_file(dir / "payload.bin", payload);
  write_file(dir / "install.sh", "#!/bin/sh\nsleep 1\necho installed >> installs.log\n", true);
  return dir;
}

// A pair's shared PostgreSQL database and coordinator options (and, for etcd, a one-member etcd
// on `etcd_port`).
struct PairBackend {
  std::unique_ptr<Etcd> etcd;
  std::vector<std::string> options;
  PairBackend(const TempDir& tmp, const std::string& coordinator, const std::string& db_name, int etcd_port) {
    options = {
        "--database", "postgresql", "--database-connection", pg_connection(pg_create_database(db_name)),
        "--failover", coordinator};
    if (coordinator == "etcd") {
      etcd = std::make_unique<Etcd>(tmp, etcd_port);
      options.insert(options.end(), {"--etcd-endpoint", etcd->url});
    }
  }
};

// `n` agents named PREFIX0… on the logical address (from 127.0.X.10 on), registered.
struct Fleet {
  std::vector<std::unique_ptr<AgentProc>> agents;
  std::vector<std::string> hosts;
  Fleet(const TempDir& tmp, const stdfs::path& shared, const std::string& logical, const std::string& prefix,
        const std::string& subnet, int n) {
    for (int i = 0; i < n; ++i) {
      hosts.push_back(prefix + std::to_string(i));
      agents.push_back(std::make_unique<AgentProc>(tmp / hosts.back(), logical, hosts.back(),
                                                   subnet + std::to_string(10 + i)));
    }
    REQUIRE(wait_until(
        [&] {
          auto r = ctl(logical, shared, {"hosts", "list"});
          return r.exit_code == 0 && boost::json::parse(r.out).at("hosts").as_array().size() == hosts.size();
        },
        60s, 300ms));
  }
};

}  // namespace

// Three kill -9s in a row while 30 agents fetch a split package: each killed node comes back as
// the standby, the takeover after it is as quick as the first, and every entry succeeds once.
TEST_CASE("kill -9 of the active manager three times during a split transfer: each takeover within seconds",
          "[cluster]") {
  const std::string coordinator = GENERATE(as<std::string>{}, "db-lease", "etcd");
  INFO("coordinator " << coordinator);
  TempDir tmp;
  const auto shared = tmp / "shared";
  static int run_no = 0;
  const int port = cluster_port() + 10 * ++run_no;
  const PairBackend backend(tmp, coordinator,
                            "cluster_" + std::to_string(::getpid()) + "_" + std::to_string(run_no), port + 3);
  const auto& dbopt = backend.options;
  const std::string logical = "https://127.0.6.1:" + std::to_string(port);
  std::map<std::string, std::unique_ptr<Node>> nodes;
  const std::map<std::string, std::string> status_ip = {{"node-a", "127.0.6.2"}, {"node-b", "127.0.6.3"}};
  auto start = [&](const std::string& name) {
    nodes[name] = std::make_unique<Node>(tmp, shared, name, "127.0.6.1", port, status_ip.at(name), dbopt);
  };
  start("node-a");
  REQUIRE(wait_until([&] { return nodes["node-a"]->active(); }, 20s));
  register_server(logical, shared);  // the nodes' CA and admin token are on the shared state
  start("node-b");
  REQUIRE(wait_until([&] { return nodes["node-b"]->status().contains("holder"); }, 20s));
  CHECK_FALSE(nodes["node-b"]->active());

  constexpr int kAgents = 30;
  const Fleet fleet(tmp, shared, logical, "cl", "127.0.6.", kAgents);
  const auto& hosts = fleet.hosts;
  auto pkg = ctl(logical, shared,
                 {"package", "create", counting_package(tmp, 8 << 20).string(), "--name", "ha", "--version",
                  "1", "--install-command", "./install.sh"},
                 true, 300s);  // a loaded machine uploads slowly
  INFO(pkg.err);
  REQUIRE(pkg.exit_code == 0);
  // Segments of 1 MiB a second apart: each agent takes several seconds, so kills land mid-transfer.
  std::vector<std::string> args = {"job", "create", "install", "ha", "1", "--split", "1MiB/1s"};
  args.insert(args.end(), hosts.begin(), hosts.end());
  auto created = ctl(logical, shared, args);
  INFO(created.err);
  REQUIRE(created.exit_code == 0);
  const auto id = json_at(created.out, "/job/id");

  std::string active = "node-a", standby = "node-b";
  for (int kill = 1; kill <= 3; ++kill) {
    INFO("kill " << kill << " of " << active);
    // Transfers under way (at the first kill) or resumed at the new active (the later ones).
    REQUIRE(wait_until(
        [&] {
          auto r = ctl(logical, shared, {"job", "show", id});
          return r.exit_code == 0 && json_at(r.out, "/progress/waiting") != std::to_string(kAgents);
        },
        60s, 50ms));
    const auto killed = std::chrono::steady_clock::now();
    nodes[active]->proc->kill_now();
    REQUIRE(wait_until([&] { return nodes[standby]->active(); }, 30s, 50ms));
    const auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
    WARN(coordinator << ": kill " << kill << ": standby active " << took << " s after kill -9 (lease 3 s)");
    start(active);  // the killed node returns as the standby
    REQUIRE(wait_until([&] { return nodes[active]->status().contains("holder"); }, 20s));
    std::swap(active, standby);
  }

  std::string shown;
  REQUIRE(wait_until(
      [&] {
        auto r = ctl(logical, shared, {"job", "show", id});
        if (r.exit_code != 0) return false;
        shown = r.out;
        return json_at(shown, "/progress/final") == std::to_string(kAgents);
      },
      240s, 500ms));
  INFO(shown);
  CHECK(all_succeeded(shown));
  for (const auto& h : hosts) CHECK(read_file(tmp / h / "packages/ha/1/installs.log") == "installed\n");
  const auto st = nodes[active]->status();
  CHECK(st.at("holder").as_string() == active);
  if (coordinator == "db-lease") CHECK(st.at("token").as_int64() == 4);
  CHECK(st.at("takeovers").as_array().size() == 4);
  // distribctl reaches the cluster status through the logical address.
  auto cs = ctl(logical, shared, {"cluster", "status"});
  CHECK(cs.exit_code == 0);
  CHECK(json_at(cs.out, "/holder") == active);
}

// A hung active (a frozen VM looks like this): its connections stay open and its kernel still
// completes new ones. Agents must get work from the new active while it is stopped, and a
// request queued at it must be refused when it wakes.
TEST_CASE(
    "a stopped active: agents are served by the new active while it is stopped, and it writes nothing when "
    "it wakes",
    "[cluster]") {
  const std::string coordinator = GENERATE(as<std::string>{}, "db-lease", "etcd");
  INFO("coordinator " << coordinator);
  TempDir tmp;
  const auto shared = tmp / "shared";
  static int run_no = 0;
  const int port = cluster_port() + 3 + 100 * ++run_no;
  const PairBackend backend(tmp, coordinator,
                            "cluster_stop_" + std::to_string(::getpid()) + "_" + std::to_string(run_no),
                            port + 5);
  const auto& dbopt = backend.options;
  const std::string logical = "https://127.0.5.1:" + std::to_string(port);
  Node a(tmp, shared, "node-a", "127.0.5.1", port, "127.0.5.2", dbopt);
  REQUIRE(wait_until([&] { return a.active(); }, 20s));
  register_server(logical, shared);
  Node b(tmp, shared, "node-b", "127.0.5.1", port, "127.0.5.3", dbopt);
  REQUIRE(wait_until([&] { return b.status().contains("holder"); }, 20s));
  const Fleet fleet(tmp, shared, logical, "st", "127.0.5.", 10);
  const auto& hosts = fleet.hosts;
  auto pkg = ctl(logical, shared,
                 {"package", "create", counting_package(tmp, 1 << 20).string(), "--name", "hung", "--version",
                  "1", "--install-command", "./install.sh"},
                 true, 120s);
  REQUIRE(pkg.exit_code == 0);

  // An administrator's connection to the old active, open before it stops: a request sent on it
  // waits in the stopped process's socket.
  distrib::HttpClientSettings hs;
  hs.base_url = logical;
  hs.ca_file = (shared / "pki" / "ca.crt").string();
  hs.timeout_seconds = 90;
  distrib::HttpClient old_conn(hs);
  auto token = read_file(shared / "admin.token");
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  REQUIRE(old_conn.request("GET", "/v1/status", {}, "application/json", token).status == 200);

  ::kill(a.proc->pid(), SIGSTOP);
  const auto stopped = std::chrono::steady_clock::now();
  // kill() returns before the process has stopped: wait until every thread has, so the request
  // below cannot be served while node-a still holds the role.
  REQUIRE(wait_until([&] { return all_threads_stopped(a.proc->pid()); }, 10s, 10ms));
  distrib::HttpResponse queued;
  std::string queued_error;
  std::thread late([&] {
    try {
      queued =
          old_conn.request("POST", "/v1/groups", R"({"name":"written-by-old"})", "application/json", token);
    } catch (const std::exception& e) {
      queued_error = e.what();
    }
  });
  REQUIRE(wait_until([&] { return b.active(); }, 30s, 100ms));
  const auto took_over = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  // Work for every agent, through the logical address, while node-a is still stopped.
  std::vector<std::string> args = {"job", "create", "install", "hung", "1"};
  args.insert(args.end(), hosts.begin(), hosts.end());
  RunResult created;
  REQUIRE(wait_until(
      [&] {
        created = ctl(logical, shared, args, true, 10s);
        return created.exit_code == 0;
      },
      30s, 200ms));
  const auto id = json_at(created.out, "/job/id");
  std::string shown;
  const bool done = wait_until(
      [&] {
        auto r = ctl(logical, shared, {"job", "show", id}, true, 10s);
        shown = r.out;
        return r.exit_code == 0 && json_at(shown, "/progress/final") == std::to_string(hosts.size());
      },
      60s, 300ms);
  const auto served = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  INFO(shown);
  CHECK(done);
  CHECK(all_succeeded(shown));
  WARN("stopped active: standby active after " << took_over << " s, every agent served after " << served
                                               << " s (lease 3 s)");
  CHECK(read_file("/proc/" + std::to_string(a.proc->pid()) + "/stat").find(") T ") != std::string::npos);

  ::kill(a.proc->pid(), SIGCONT);
  late.join();
  REQUIRE(wait_until(
      [&] { return read_file(tmp / "node-a.log").find("node node-a steps down") != std::string::npos; },
      20s));
  INFO("the queued request: " << queued.status << " " << queued.body << queued_error);
  CHECK((queued_error.empty() ? queued.status >= 400 : true));
  // Nothing the old node was asked to write after its tenure was written.
  auto groups = ctl(logical, shared, {"group", "list"});
  REQUIRE(groups.exit_code == 0);
  CHECK(groups.out.find("written-by-old") == std::string::npos);
  CHECK(wait_until(
      [&] {
        const auto st = a.status();  // empty while a loaded node does not answer within 2 s
        return st.contains("state") && st.at("state").as_string() == "fenced";
      },
      20s, 200ms));
  // It never took the role back.
  const auto alog = read_file(tmp / "node-a.log");
  CHECK(occurrences(alog, "node node-a is active") == 1);
}

// The active node on a machine with no idle core: agents transferring, install and uninstall jobs
// in turn, and two busy loops. Its renewals have a thread and connections of their own: it keeps
// the role. (bench_failover --keep runs the same for 10 minutes per coordinator.)
TEST_CASE("a loaded active keeps its lease: no step-down under transfers and CPU hogs", "[cluster]") {
  TempDir tmp;
  const auto shared = tmp / "shared";
  const int port = cluster_port() + 7;
  const PairBackend backend(tmp, "db-lease", "cluster_keep_" + std::to_string(::getpid()), 0);
  const std::string logical = "https://127.0.4.1:" + std::to_string(port);
  Node a(tmp, shared, "node-a", "127.0.4.1", port, "127.0.4.2", backend.options);
  REQUIRE(wait_until([&] { return a.active(); }, 20s));
  register_server(logical, shared);
  Node b(tmp, shared, "node-b", "127.0.4.1", port, "127.0.4.3", backend.options);
  const Fleet fleet(tmp, shared, logical, "kp", "127.0.4.", 10);
  auto pkg = ctl(logical, shared,
                 {"package", "create", counting_package(tmp, 4 << 20).string(), "--name", "busy", "--version",
                  "1", "--install-command", "./install.sh"},
                 true, 120s);
  REQUIRE(pkg.exit_code == 0);
  std::vector<std::unique_ptr<Process>> hogs;
  for (int i = 0; i < 2; ++i)
    hogs.push_back(std::make_unique<Process>(std::vector<std::string>{"sh", "-c", "while :; do :; done"},
                                             (tmp / ("hog" + std::to_string(i) + ".log")).string()));
  const auto until = std::chrono::steady_clock::now() + 60s;
  int jobs = 0;
  std::string id;
  while (std::chrono::steady_clock::now() < until) {
    auto shown = id.empty() ? RunResult{} : ctl(logical, shared, {"job", "show", id}, true, 20s);
    if (id.empty() || (shown.exit_code == 0 && json_at(shown.out, "/progress/final") == "10")) {
      std::vector<std::string> args = {"job", "create", jobs % 2 == 0 ? "install" : "uninstall", "busy", "1"};
      if (jobs % 2 == 0) args.insert(args.end(), {"--split", "1MiB/1s"});
      args.insert(args.end(), fleet.hosts.begin(), fleet.hosts.end());
      auto created = ctl(logical, shared, args, true, 20s);
      INFO(created.err);
      REQUIRE(created.exit_code == 0);
      id = json_at(created.out, "/job/id");
      ++jobs;
    }
    std::this_thread::sleep_for(1s);
  }
  hogs.clear();
  const auto st = a.status();
  INFO(boost::json::serialize(st));
  REQUIRE(st.contains("renewals"));
  const auto& r = st.at("renewals").as_object();
  WARN("loaded active for 60 s (" << jobs << " jobs, 2 CPU hogs): renewal lateness p99 "
                                  << r.at("p99_ms").to_number<double>() << " ms, max "
                                  << r.at("max_ms").to_number<double>() << " ms");
  CHECK(jobs >= 2);
  CHECK(st.at("holder").as_string() == "node-a");
  CHECK(st.at("token").as_int64() == 1);
  CHECK(r.at("step_downs").as_int64() == 0);
  CHECK(r.at("count").as_int64() >= 40);
  CHECK(read_file(tmp / "node-a.log").find("steps down") == std::string::npos);
}

TEST_CASE("split brain: a node stopped past its lease steps down when it wakes and writes nothing",
          "[cluster]") {
  TempDir tmp;
  const auto shared = tmp / "shared";  // SQLite on the shared directory: the embedded database
  const int port = cluster_port() + 1;
  const std::string logical = "https://127.0.7.1:" + std::to_string(port);
  Node a(tmp, shared, "node-a", "127.0.7.1", port, "127.0.7.2", {});
  REQUIRE(wait_until([&] { return a.active(); }, 20s));
  register_server(logical, shared);
  Node b(tmp, shared, "node-b", "127.0.7.1", port, "127.0.7.3", {});
  AgentProc agent(tmp / "agent", logical, "sb1", "127.0.7.10");
  REQUIRE(wait_until(
      [&] {
        auto r = ctl(logical, shared, {"hosts", "list"});
        return r.exit_code == 0 && boost::json::parse(r.out).at("hosts").as_array().size() == 1;
      },
      30s, 300ms));

  ::kill(a.proc->pid(), SIGSTOP);
  // The standby takes the lease once it expired (it cannot serve on the logical address until
  // the stopped node lets it go).
  REQUIRE(wait_until(
      [&] {
        const auto s = b.status();
        return s.contains("holder") && s.at("holder").as_string() == "node-b";
      },
      30s, 200ms));
  ::kill(a.proc->pid(), SIGCONT);
  REQUIRE(wait_until(
      [&] { return read_file(tmp / "node-a.log").find("node node-a steps down") != std::string::npos; },
      20s));
  // The new holder serves on the logical address; the old one never took the lease back.
  REQUIRE(wait_until([&] { return ctl(logical, shared, {"cluster", "status"}).exit_code == 0; }, 30s, 300ms));
  const auto cs = ctl(logical, shared, {"cluster", "status"});
  CHECK(json_at(cs.out, "/node") == "node-b");
  CHECK(json_at(cs.out, "/token") == "2");
  CHECK(boost::json::parse(cs.out).at("takeovers").as_array().size() == 2);
  CHECK(json_at(cs.out, "/state") == "active");
  CHECK(a.status().at("active").as_bool() == false);
  CHECK(a.status().at("state").as_string() == "fenced");  // lost the role while it held it
  std::string text;  // once node-b has renewed: how late its renewals are, its step-downs
  CHECK(wait_until(
      [&] {
        text = ctl(logical, shared, {"cluster", "status"}, false).out;
        return text.find("renewals by node-b: ") != std::string::npos;
      },
      10s, 300ms));
  INFO(text);
  CHECK(text.find("answered by node-b, active") != std::string::npos);
  CHECK(text.find(" 0 step-down(s)") != std::string::npos);
  auto mon = run({distribd_path(), "--role", "manager", "--state-dir", shared.string(), "--listen",
                  "127.0.7.1", "--port", std::to_string(port), "--monitor"});
  CHECK(mon.exit_code == 0);
  CHECK(mon.out.find("running: https://127.0.7.1") != std::string::npos);
  // Anything the old node tried to write after waking was refused by the fence.
  const auto alog = read_file(tmp / "node-a.log");
  CHECK(alog.find("node node-a is active (fencing token 3)") == std::string::npos);
  auto hosts = ctl(logical, shared, {"hosts", "list"});
  CHECK(boost::json::parse(hosts.out).at("hosts").as_array().size() == 1);
}

TEST_CASE("cluster configuration errors are refused before any node serves", "[cluster]") {
  TempDir tmp;
  const auto shared = tmp / "shared";
  const int port = cluster_port() + 2;
  auto start = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {distribd_path(), "--role",        "manager",
                                     "--state-dir",   shared.string(), "--listen",
                                     "127.0.8.1",     "--port",        std::to_string(port)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv, 30s);
  };
  SECTION("a lease not longer than twice the renew interval") {
    auto r =
        start({"--failover", "db-lease", "--node-name", "x", "--lease-ms", "1000", "--renew-ms", "1000"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("must be at least twice the renew interval") != std::string::npos);
  }
  SECTION("no node name") {
    auto r = start({"--failover", "db-lease"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("needs a node name") != std::string::npos);
  }
  SECTION("an unknown coordinator") {
    auto r = start({"--failover", "zookeeper", "--node-name", "x"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(
              "unknown failover coordinator \"zookeeper\" (known: db-lease, etcd, external, standalone)") !=
          std::string::npos);
  }
  SECTION("an etcd that cannot be reached") {
    auto r = start({"--failover", "etcd", "--node-name", "x", "--etcd-endpoint", "http://127.0.0.1:1"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("the etcd coordinator cannot be reached") != std::string::npos);
    CHECK(run({"curl", "-s", "--max-time", "1", "http://127.0.8.1:" + std::to_string(port) + "/v1/status"})
              .out.empty());
  }
  SECTION("an etcd coordinator without an endpoint") {
    auto r = start({"--failover", "etcd", "--node-name", "x"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("needs an endpoint") != std::string::npos);
  }
  SECTION("a node restarted right after a crash is not taken for a twin") {
    auto first = std::make_unique<Node>(tmp, shared, "phoenix", "127.0.8.1", port, "127.0.8.2",
                                        std::vector<std::string>{});
    REQUIRE(wait_until([&] { return first->active(); }, 20s));
    first->proc->kill_now();
    first.reset();
    Node again(tmp, shared, "phoenix", "127.0.8.1", port, "127.0.8.2", {});
    CHECK(wait_until([&] { return again.active(); }, 20s));
    CHECK(again.proc->running());
  }
  SECTION("two nodes with the same name") {
    Node a(tmp, shared, "twin", "127.0.8.1", port, "127.0.8.2", {});
    REQUIRE(wait_until([&] { return a.active(); }, 20s));
    auto r = start({"--failover", "db-lease", "--node-name", "twin", "--status-listen",
                    "127.0.8.3:" + std::to_string(port)});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("another node runs with the same --node-name") != std::string::npos);
    CHECK(a.active());  // the first keeps the role
  }
}

TEST_CASE("the OCF resource agent passes ocf-tester and runs an external-coordinator node", "[cluster]") {
  TempDir tmp;
  const int port = cluster_port() + 5;
  const auto conf = tmp / "manager.conf";
  write_file(conf, "role = manager\nstate-dir = " + (tmp / "state").string() +
                       "\nlisten = 127.0.9.1\nport = " + std::to_string(port) +
                       "\nfailover = external\nnode-name = pcmk-1\n");
  // ocf-tester also runs the agent as "nobody": give it a copy where everyone may read it (the
  // checkout may sit where only its owner can enter, such as /root).
  stdfs::permissions(tmp.path(), stdfs::perms::owner_all | stdfs::perms::group_read |
                                     stdfs::perms::group_exec | stdfs::perms::others_read |
                                     stdfs::perms::others_exec);
  const auto agent = (tmp / "ocf-distribd").string();
  stdfs::copy_file(examples_dir() / "ocf/distribd", agent);
  stdfs::permissions(agent, stdfs::perms::owner_all | stdfs::perms::group_read | stdfs::perms::group_exec |
                                stdfs::perms::others_read | stdfs::perms::others_exec);
  // The monitor command (for WSFC and scripts): nothing serves yet.
  auto mon = run({distribd_path(), "--config", conf.string(), "--monitor"});
  CHECK(mon.exit_code == 7);
  CHECK(mon.out.find("not running") != std::string::npos);
  auto r = run({"ocf-tester", "-n", "distrib", "-o", "config=" + conf.string(), "-o",
                "binary=" + distribd_path(), "-o", "pidfile=" + (tmp / "distribd.pid").string(), agent},
               120s);
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("passed all tests") != std::string::npos);
  // Each start took the next fencing token: a node the cluster manager failed to stop cannot write.
  auto log = read_file(tmp / "distribd.pid.log");
  CHECK(log.find("node pcmk-1 is active (fencing token 1)") != std::string::npos);
  CHECK(log.find("node pcmk-1 is active (fencing token 2)") != std::string::npos);
}
