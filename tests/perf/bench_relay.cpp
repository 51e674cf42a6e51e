// Relay fan-out: A simulated agents, spread over R relays, fetch a P MiB package through the
// relays (cold caches: each relay pulls every chunk from the manager once, single flight), then
// the same A agents fetch it straight from the manager, in the same run. Prints the manager's
// egress as a multiple of the package size (target: R plus protocol overhead) and the ratio of
// the two completion times.
//
// usage: bench_relay [AGENTS=200] [RELAYS=4] [PAYLOAD_MIB=100]
#include "bench_common.h"
#include "bench_fetch.h"
#include "harness.h"

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>

using namespace distrib::net;
using namespace distrib::test;
using Clock = std::chrono::steady_clock;
namespace bj = boost::json;

namespace {

struct Target {
  std::string address;
  int port;
};

double run_agents(int agents, const std::vector<Target>& servers, const std::vector<std::string>& targets,
                  std::uint64_t& bytes) {
  std::atomic<std::uint64_t> total{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int i = 0; i < agents; ++i)
    threads.emplace_back([&, i] {
      const auto& s = servers[static_cast<std::size_t>(i) % servers.size()];
      try {
        total += bench::fetch_all(s.address, s.port, targets);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "agent failed: %s\n", e.what());
        ++failures;
      }
    });
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  bytes = total;
  if (failures) std::fprintf(stderr, "%d agent(s) failed\n", failures.load());
  return secs;
}

std::uint64_t bytes_served(const ManagerProc& m) {
  auto r = m.ctl({"stats"}, true);
  if (r.exit_code != 0) throw std::runtime_error("stats failed: " + r.err);
  return bj::parse(r.out).at("content").at("bytes_served").to_number<std::uint64_t>();
}

}  // namespace

int main(int argc, char** argv) {
  const int agents = argc > 1 ? std::atoi(argv[1]) : 200;
  const int relays = argc > 2 ? std::atoi(argv[2]) : 4;
  const int mib = argc > 3 ? std::atoi(argv[3]) : 100;
  bench::raise_fd_limit();
  TempDir tmp;
  std::printf("machine: %s\n", bench::machine().c_str());
  bench::write_random_payload(tmp / "pkg/payload.bin", mib, 7);
  ManagerProc m(tmp / "manager", {"--log-level", "warn", "--insecure-http"});
  std::vector<std::string> targets;
  std::uint64_t wire = 0;
  for (const auto& d : bench::register_package(m, tmp / "pkg")) {
    targets.push_back("/v1/content/chunks/" + d);
    wire += stdfs::file_size(bench::chunk_file(m, d));
  }
  std::printf("package: %d MiB payload, %zu chunks, %.1f MiB on the wire; %d agents, %d relays\n", mib,
              targets.size(), static_cast<double>(wire) / 1048576.0, agents, relays);

  std::vector<std::unique_ptr<ManagerProc>> relay_procs;
  std::vector<Target> relay_targets;
  for (int i = 0; i < relays; ++i) {
    const auto address = "127.0.0." + std::to_string(21 + i);
    relay_procs.push_back(std::make_unique<ManagerProc>(
        tmp / ("relay" + std::to_string(i)),
        std::vector<std::string>{"--parent", m.url(), "--insecure-http", "--host-name",
                                 "relay" + std::to_string(i), "--log-level", "warn"},
        address));
    relay_targets.push_back({address, relay_procs.back()->port()});
  }

  const auto before = bytes_served(m);
  std::uint64_t bytes = 0;
  const double relay_secs = run_agents(agents, relay_targets, targets, bytes);
  const auto egress = bytes_served(m) - before;
  const double multiple = static_cast<double>(egress) / static_cast<double>(wire);
  std::printf(
      "through %d relays: %d agents fetched %.0f MB in %.2f s; manager egress %.1f MiB = %.2f x package\n",
      relays, agents, static_cast<double>(bytes) / 1e6, relay_secs, static_cast<double>(egress) / 1048576.0,
      multiple);
  relay_procs.clear();

  const auto before_direct = bytes_served(m);
  const double direct_secs = run_agents(agents, {{"127.0.0.1", m.port()}}, targets, bytes);
  const auto direct_egress = bytes_served(m) - before_direct;
  std::printf(
      "straight from the manager: %d agents fetched %.0f MB in %.2f s; manager egress %.1f MiB = %.2f x "
      "package\n",
      agents, static_cast<double>(bytes) / 1e6, direct_secs, static_cast<double>(direct_egress) / 1048576.0,
      static_cast<double>(direct_egress) / static_cast<double>(wire));
  std::printf(
      "RESULT agents=%d relays=%d payload_mib=%d egress_multiple=%.2f relay_s=%.2f direct_s=%.2f "
      "time_ratio=%.2f\n",
      agents, relays, mib, multiple, relay_secs, direct_secs, relay_secs / direct_secs);
  return 0;
}
