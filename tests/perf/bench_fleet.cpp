// Fleet scale: what registering and waking cost as the fleet grows.
//
// 1. Registrations at N existing hosts: a manager's database is filled with N hosts through the
//    store API, then the manager (its own process, plain HTTP) registers M new agents from 128
//    connections. Printed for 1,000 and 100,000 existing hosts, with the ratio of the two rates
//    (1.0 = flat: a registration costs the same whatever the fleet's size).
// 2. Wake-up: A simulated agents (one connection each, source addresses 127.0.1.x) register and
//    hold a long poll; an administrator creates one install job to all of them; each agent's time
//    from the job's request to the answer carrying its work (p50/p99/max), for each A given.
//
// usage: bench_fleet [NEW_REGISTRATIONS=5000] [EXISTING_LARGE=100000] [AGENTS=10000,19000]
// (one process may hold at most 20,000 descriptors here: the manager holds one per agent, so a
// single manager is measured up to 19,000 agents).
#include "bench_common.h"
#include "bench_http.h"
#include "harness.h"
#include "net/asio_fwd.h"

#include <distrib/model/host.h>
#include <distrib/net/http.h>
#include <distrib/store/store.h>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

using namespace distrib;
using namespace distrib::net;
using namespace distrib::test;
namespace bj = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One kept-alive connection from 127.0.1.x, a request at a time.
struct Conn {
  beast::tcp_stream stream;
  beast::flat_buffer buf;
  explicit Conn(asio::any_io_executor ex) : stream(ex) {}

  asio::awaitable<bool> open(const tcp::endpoint& server, int index) {
    beast::error_code ec;
    stream.socket().open(tcp::v4());
    stream.socket().bind(
        tcp::endpoint(asio::ip::make_address_v4("127.0.1." + std::to_string(1 + index % 250)), 0));
    co_await stream.async_connect(server, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }
  // Status and body; status -1 when the connection failed.
  asio::awaitable<std::pair<int, std::string>> call(http::verb verb, const std::string& target,
                                                    std::string body = {}) {
    return bench::http_call(stream, buf, verb, target, std::move(body));
  }
};

std::string register_body(const std::string& id, const std::string& name, int index) {
  return bj::serialize(bj::object{
      {"host_id", id},
      {"name", name},
      {"addresses",
       bj::array{bj::string("10." + std::to_string(index / 65536 % 256) + "." +
                            std::to_string(index / 256 % 256) + "." + std::to_string(index % 256))}},
      {"os", "simulated"}});
}

// --- 1. registrations at N existing hosts

struct RegResult {
  double per_s = 0, cpu_ms = 0;
  long errors = 0;
};

RegResult registrations_at(long existing, int new_hosts) {
  TempDir tmp;
  const auto state = tmp / "manager";
  stdfs::create_directories(state);
  {
    StoreRegistry reg;
    register_builtin_stores(reg);
    StoreSettings s;
    s.backend = "sqlite";
    s.path = (state / "distrib.db").string();
    auto store = reg.open(s);
    const auto t0 = Clock::now();
    for (long i = 0; i < existing; ++i) {
      Host h;
      h.host_id = make_host_id();
      h.name = "old" + std::to_string(i);
      h.addresses = {"172.16." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256)};
      h.os = "simulated";
      store->upsert_host(h);
    }
    std::printf("  %ld existing hosts stored in %.1f s\n", existing, seconds_since(t0));
  }
  ManagerProc m(state, {"--log-level", "warn", "--insecure-http"});
  const int pid = m.pid();
  asio::io_context io;
  const tcp::endpoint server(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(m.port()));
  std::atomic<long> done{0}, errors{0};
  constexpr int kConnections = 128;
  std::atomic<int> next{0};
  for (int c = 0; c < kConnections; ++c)
    asio::co_spawn(
        io,
        [&, c]() -> asio::awaitable<void> {
          Conn conn(co_await asio::this_coro::executor);
          if (!co_await conn.open(server, c)) {
            ++errors;
            co_return;
          }
          for (int i = next++; i < new_hosts; i = next++) {
            auto [status, body] =
                co_await conn.call(http::verb::post, "/v1/agent/register",
                                   register_body(make_host_id(), "new" + std::to_string(i), i));
            if (status == 200) {
              ++done;
            } else if (errors++ == 0) {
              std::printf("  first failed registration: %d %s\n", status, body.substr(0, 300).c_str());
            }
            if (status < 0) co_return;
          }
        },
        asio::detached);
  const double c0 = bench::cpu_seconds(pid);
  const auto t0 = Clock::now();
  io.run();
  const double s = seconds_since(t0);
  RegResult out;
  out.per_s = static_cast<double>(done) / s;
  out.cpu_ms = 1000 * (bench::cpu_seconds(pid) - c0) / std::max<double>(1, static_cast<double>(done));
  out.errors = errors;
  std::printf("  %ld registrations in %.2f s = %.0f/s, manager CPU %.2f ms each (errors %ld)\n", done.load(),
              s, out.per_s, out.cpu_ms, out.errors);
  return out;
}

// --- 2. one job to every waiting agent

struct WakeResult {
  double create_s = 0, p50 = 0, p99 = 0, max = 0, rss_mib = 0;
  long served = 0, errors = 0, repolled = 0;
};

WakeResult wake(int agents) {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--log-level", "warn", "--insecure-http", "--poll-timeout", "120"});
  const int pid = m.pid();
  stdfs::create_directories(tmp / "app");
  { std::ofstream(tmp / "app" / "install.sh") << "true\n"; }
  const auto pkg = m.ctl({"package", "create", (tmp / "app").string(), "--name", "app", "--version", "1",
                          "--install-command", "sh install.sh"});
  if (pkg.exit_code != 0) throw std::runtime_error("package create: " + pkg.err + pkg.out);

  asio::io_context io;
  const tcp::endpoint server(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(m.port()));
  std::atomic<long> registered{0}, holding{0}, errors{0}, repolled{0};
  std::atomic<bool> job_sent{false};
  std::vector<Clock::time_point> got(static_cast<std::size_t>(agents));
  std::atomic<long> served{0};
  for (int i = 0; i < agents; ++i)
    asio::co_spawn(
        io,
        [&, i]() -> asio::awaitable<void> {
          Conn conn(co_await asio::this_coro::executor);
          if (!co_await conn.open(server, i)) {
            ++errors;
            co_return;
          }
          const auto id = make_host_id();
          auto [status, body] = co_await conn.call(http::verb::post, "/v1/agent/register",
                                                   register_body(id, "sim" + std::to_string(i), i));
          if (status != 200) {
            ++errors;
            co_return;
          }
          ++registered;
          for (bool first = true;; first = false) {
            if (first) ++holding;
            auto [st, answer] = co_await conn.call(http::verb::get, "/v1/agent/work?wait=120&host_id=" + id);
            if (st != 200) {
              ++errors;
              co_return;
            }
            if (answer.find("\"entry_id\"") != std::string::npos) {
              got[static_cast<std::size_t>(i)] = Clock::now();
              ++served;
              co_return;
            }
            if (job_sent) ++repolled;
          }
        },
        asio::detached);
  std::thread runner([&] { io.run(); });
  const auto r0 = Clock::now();
  while (holding + errors < agents && seconds_since(r0) < 600)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::printf("  %ld agents registered and holding a poll in %.1f s (errors %ld)\n", holding.load(),
              seconds_since(r0), errors.load());
  std::this_thread::sleep_for(std::chrono::seconds(2));  // every poll parked
  WakeResult out;
  out.rss_mib = bench::proc_status_kib(pid, "VmRSS") / 1024.0;

  bj::array dests;
  for (int i = 0; i < agents; ++i) dests.emplace_back("sim" + std::to_string(i));
  HttpClientSettings cs;
  cs.base_url = m.url();
  HttpClient admin(cs);
  admin.set_timeout(300);
  const auto token = read_file(m.token_file()).substr(0, 64);
  const auto body = bj::serialize(bj::object{{"type", "install"},
                                             {"package", bj::object{{"name", "app"}, {"version", "1"}}},
                                             {"destinations", std::move(dests)}});
  const auto t0 = Clock::now();
  job_sent = true;
  const auto created = admin.request("POST", "/v1/jobs", body, "application/json", token);
  out.create_s = seconds_since(t0);
  if (created.status != 201 && created.status != 200)
    throw std::runtime_error("job create: " + std::to_string(created.status) + " " + created.body);
  while (served + errors < holding && seconds_since(t0) < 120)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  io.stop();
  runner.join();
  std::vector<double> lat;
  for (const auto& t : got)
    if (t != Clock::time_point{}) lat.push_back(std::chrono::duration<double>(t - t0).count());
  std::sort(lat.begin(), lat.end());
  const auto at = [&](double q) {
    return lat.empty()
               ? 0.0
               : lat[std::min(lat.size() - 1, static_cast<std::size_t>(q * static_cast<double>(lat.size())))];
  };
  out.served = static_cast<long>(lat.size());
  out.p50 = at(0.5);
  out.p99 = at(0.99);
  out.max = lat.empty() ? 0 : lat.back();
  out.errors = errors;
  out.repolled = repolled;
  std::printf(
      "  job to %d agents: request answered after %.2f s; work at the agents p50 %.2f s, p99 %.2f s, max "
      "%.2f s "
      "(%ld served, %ld polls ended empty after the job, errors %ld); manager RSS holding %.0f MiB\n",
      agents, out.create_s, out.p50, out.p99, out.max, out.served, out.repolled, out.errors, out.rss_mib);
  return out;
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(std::stoi(part));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int new_hosts = argc > 1 ? std::atoi(argv[1]) : 5000;
  const long large = argc > 2 ? std::atol(argv[2]) : 100000;
  const auto fleets = parse_list(argc > 3 ? argv[3] : "10000,19000");
  bench::raise_fd_limit();
  std::printf("machine: %s\n", bench::machine().c_str());
  try {
    std::printf("registrations with 1000 hosts stored:\n");
    const auto small = registrations_at(1000, new_hosts);
    std::printf("registrations with %ld hosts stored:\n", large);
    const auto big = registrations_at(large, new_hosts);
    std::printf(
        "RESULT registrations_per_s at_1000=%.0f at_%ld=%.0f cpu_ms at_1000=%.2f at_%ld=%.2f ratio=%.2f\n",
        small.per_s, large, big.per_s, small.cpu_ms, large, big.cpu_ms, big.per_s / small.per_s);
    for (const int n : fleets) {
      std::printf("wake-up, %d agents:\n", n);
      const auto w = wake(n);
      std::printf(
          "RESULT wake agents=%d create_s=%.2f p50_s=%.2f p99_s=%.2f max_s=%.2f served=%ld rss_mib=%.0f\n", n,
          w.create_s, w.p50, w.p99, w.max, w.served, w.rss_mib);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_fleet: %s\n", e.what());
    return 1;
  }
  return 0;
}
