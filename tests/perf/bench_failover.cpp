// Failover time of an active/standby manager pair: TRIALS times, the active node is killed with
// SIGKILL and the time is taken until (1) the standby serves on the logical address and (2) every
// one of AGENTS agents has been served by it: a job to all of them, created as soon as the new
// active answers, has every entry final. For db-lease on PostgreSQL and for etcd, with a 3 s
// lease and 1 s renewals. The killed node comes back as the new standby before the next trial.
//
// usage: bench_failover [TRIALS=10] [AGENTS=10]
#include "bench_common.h"
#include "harness.h"

#include <boost/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>

using namespace distrib::test;
using Clock = std::chrono::steady_clock;

namespace {

struct Pair {
  const TempDir& tmp;
  stdfs::path shared;
  std::vector<std::string> common;
  std::string logical;
  int port;
  std::map<std::string, std::unique_ptr<Process>> nodes;
  std::map<std::string, std::string> status_ip = {{"node-a", "127.0.10.2"}, {"node-b", "127.0.10.3"}};

  void start(const std::string& node) {
    std::vector<std::string> argv = {distribd_path(),
                                     "--role",
                                     "manager",
                                     "--state-dir",
                                     shared.string(),
                                     "--listen",
                                     "127.0.10.1",
                                     "--port",
                                     std::to_string(port),
                                     "--node-name",
                                     node,
                                     "--status-listen",
                                     status_ip[node] + ":" + std::to_string(port),
                                     "--poll-timeout",
                                     "5",
                                     "--log-level",
                                     "warn",
                                     "--insecure-http"};  // takeover is measured as before identities
    argv.insert(argv.end(), common.begin(), common.end());
    nodes[node] = std::make_unique<Process>(argv, (tmp / (node + ".log")).string());
  }
  bool active(const std::string& node) {
    auto r = run({"curl", "-s", "--max-time", "1",
                  "http://" + status_ip[node] + ":" + std::to_string(port) + "/v1/cluster/status"},
                 3s);
    return r.out.find("\"active\":true") != std::string::npos;
  }
  RunResult ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        distribctl_path(), "--server", logical, "--token-file", (shared / "admin.token").string(), "--json"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, 30s);
  }
};

struct Trial {
  double serving = 0, all_served = 0;
};

std::vector<Trial> measure(const std::string& coordinator, int trials, int agents_n) {
  TempDir tmp;
  const auto db = pg_create_database("failover_" + std::string(coordinator == "etcd" ? "e" : "d") +
                                     std::to_string(::getpid()));
  Pair pair{
      tmp,
      tmp / "shared",
      {"--database", "postgresql", "--database-connection", pg_connection(db), "--failover", coordinator},
      "",
      47800 + ::getpid() % 100 + (coordinator == "etcd" ? 100 : 0),
      {}};
  pair.logical = "http://127.0.10.1:" + std::to_string(pair.port);
  std::unique_ptr<Process> etcd;
  if (coordinator == "etcd") {
    const int ep = pair.port + 300;
    const auto url = "http://127.0.0.1:" + std::to_string(ep),
               peer = "http://127.0.0.1:" + std::to_string(ep + 1);
    etcd = std::make_unique<Process>(
        std::vector<std::string>{"etcd", "--name", "b", "--data-dir", (tmp / "etcd").string(),
                                 "--listen-client-urls", url, "--advertise-client-urls", url,
                                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                 "--initial-cluster", "b=" + peer},
        (tmp / "etcd.log").string());
    if (!wait_until([&] { return run({"curl", "-sf", url + "/health"}, 3s).exit_code == 0; }, 20s))
      throw std::runtime_error("etcd did not start");
    pair.common.insert(pair.common.end(), {"--etcd-endpoint", url});
  }
  pair.start("node-a");
  if (!wait_until([&] { return pair.active("node-a"); }, 20s))
    throw std::runtime_error("node-a never became active");
  pair.start("node-b");
  std::vector<std::unique_ptr<AgentProc>> agents;
  std::vector<std::string> names;
  for (int i = 0; i < agents_n; ++i) {
    names.push_back("fo" + std::to_string(i));
    agents.push_back(std::make_unique<AgentProc>(tmp / names.back(), pair.logical, names.back(),
                                                 "127.0.10." + std::to_string(20 + i)));
  }
  RunResult last;
  if (!wait_until(
          [&] {
            last = pair.ctl({"hosts", "list"});
            return last.exit_code == 0 &&
                   boost::json::parse(last.out).at("hosts").as_array().size() == names.size();
          },
          30s, 300ms))
    throw std::runtime_error("agents did not register: " + last.out + last.err + agents.front()->log());
  write_file(tmp / "pkg/payload.txt", "x");
  if (pair.ctl({"package", "create", (tmp / "pkg").string(), "--name", "fo", "--version", "1",
                "--install-command", "true"})
          .exit_code != 0)
    throw std::runtime_error("package create failed");

  std::vector<Trial> out;
  std::string active = "node-a", standby = "node-b";
  for (int t = 0; t < trials; ++t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // agents settle into their polls
    const auto t0 = Clock::now();
    pair.nodes[active]->kill_now();
    Trial tr;
    if (!wait_until([&] { return pair.active(standby); }, 30s, 20ms)) throw std::runtime_error("no takeover");
    std::string id;
    if (!wait_until(
            [&] {
              std::vector<std::string> args = {"job", "create", "install", "fo", "1"};
              args.insert(args.end(), names.begin(), names.end());
              auto r = pair.ctl(args);
              if (r.exit_code != 0) return false;
              id = json_at(r.out, "/job/id");
              return true;
            },
            30s, 20ms))
      throw std::runtime_error("the new active does not serve");
    tr.serving = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!wait_until(
            [&] {
              auto r = pair.ctl({"job", "show", id});
              return r.exit_code == 0 && json_at(r.out, "/progress/final") == std::to_string(names.size());
            },
            60s, 50ms))
      throw std::runtime_error("not every agent was served");
    tr.all_served = std::chrono::duration<double>(Clock::now() - t0).count();
    out.push_back(tr);
    std::printf("  %s trial %d: serving after %.2f s, every agent served after %.2f s\n", coordinator.c_str(),
                t + 1, tr.serving, tr.all_served);
    std::fflush(stdout);
    // Each trial reinstalls the same version: the agents answer "already installed" at once.
    pair.start(active);  // the killed node returns as the standby
    std::swap(active, standby);
  }
  return out;
}

void summary(const std::string& what, std::vector<Trial> v) {
  auto stat = [&](auto field) {
    std::vector<double> x;
    for (const auto& t : v) x.push_back(t.*field);
    std::sort(x.begin(), x.end());
    return std::make_tuple(x.front(), x[x.size() / 2], x.back());
  };
  const auto [s0, s1, s2] = stat(&Trial::serving);
  const auto [a0, a1, a2] = stat(&Trial::all_served);
  std::printf(
      "%-24s serving on the logical address: min %.2f / median %.2f / max %.2f s;  every agent served: "
      "min %.2f / median %.2f / max %.2f s\n",
      what.c_str(), s0, s1, s2, a0, a1, a2);
}

}  // namespace

int main(int argc, char** argv) {
  const int trials = argc > 1 ? std::atoi(argv[1]) : 10;
  const int agents = argc > 2 ? std::atoi(argv[2]) : 10;
  std::printf("machine: %s\n", bench::machine().c_str());
  const std::string pg_dir = "/tmp/distrib-bench-pg-" + std::to_string(::getpid());
  int rc = 0;
  try {
    if (!pg_script({"start", pg_dir, "54391"}))
      throw std::runtime_error("cannot start PostgreSQL (postgres.sh)");
    ::setenv("DISTRIB_TEST_PG_DIR", pg_dir.c_str(), 1);
    std::printf("kill -9 of the active manager, %d trials, %d agents, lease 3 s, renew 1 s:\n", trials,
                agents);
    const auto dl = measure("db-lease", trials, agents);
    const auto et = measure("etcd", trials, agents);
    summary("db-lease on PostgreSQL", dl);
    summary("etcd", et);
    std::printf("target: median < 5 s with a 3 s lease\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_failover: %s\n", e.what());
    rc = 1;
  }
  pg_script({"destroy", pg_dir});
  return rc;
}
