// Load generator: N simulated agents in one process register with a real distribd manager and
// poll it. Prints registrations/s, polls/s (immediate polls, no work) and the manager's peak RSS
// with all N agents holding a long poll open at once.
//
// usage: bench_poll [AGENTS=10000] [POLL_SECONDS=10]
#include "bench_common.h"
#include "harness.h"
#include "net/asio_fwd.h"

#include <distrib/model/host.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

using namespace distrib::net;
using namespace distrib::test;
using Clock = std::chrono::steady_clock;

namespace {

struct Stats {
  std::atomic<long> registered{0}, polls{0}, holding{0}, errors{0};
};

asio::awaitable<void> agent(int index, tcp::endpoint server, Stats& st, Clock::time_point& poll_end,
                            std::atomic<int>& phase) {
  beast::error_code ec;
  auto ex = co_await asio::this_coro::executor;
  beast::tcp_stream stream(ex);
  // Spread agents over source addresses 127.0.1.x so no address runs out of ports.
  const auto src = asio::ip::make_address_v4("127.0.1." + std::to_string(1 + index % 250));
  stream.socket().open(tcp::v4());
  stream.socket().bind(tcp::endpoint(src, 0));
  co_await stream.async_connect(server, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    ++st.errors;
    co_return;
  }
  const auto id = distrib::make_host_id();
  beast::flat_buffer buf;
  auto call = [&](http::verb verb, std::string target, std::string body) -> asio::awaitable<int> {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "manager");
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = std::move(body);
    }
    req.prepare_payload();
    beast::error_code e;
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, e));
    if (e) co_return -1;
    http::response<http::string_body> res;
    co_await http::async_read(stream, buf, res, asio::redirect_error(asio::use_awaitable, e));
    if (e) co_return -1;
    co_return static_cast<int>(res.result_int());
  };
  const auto body = "{\"host_id\":\"" + id + "\",\"name\":\"sim" + std::to_string(index) +
                    "\",\"addresses\":[],\"os\":\"simulated\"}";
  if (co_await call(http::verb::post, "/v1/agent/register", body) != 200) {
    ++st.errors;
    co_return;
  }
  ++st.registered;
  while (phase.load() < 1) {
    asio::steady_timer t(ex, std::chrono::milliseconds(20));
    co_await t.async_wait(asio::use_awaitable);
  }
  while (Clock::now() < poll_end) {
    if (co_await call(http::verb::get, "/v1/agent/work?wait=0&host_id=" + id, "") != 200) {
      ++st.errors;
      co_return;
    }
    ++st.polls;
  }
  while (phase.load() < 2) {
    asio::steady_timer t(ex, std::chrono::milliseconds(20));
    co_await t.async_wait(asio::use_awaitable);
  }
  // Hold a long poll open, as idle agents do.
  ++st.holding;
  co_await call(http::verb::get, "/v1/agent/work?wait=30&host_id=" + id, "");
}

}  // namespace

int main(int argc, char** argv) {
  const int agents = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int poll_seconds = argc > 2 ? std::atoi(argv[2]) : 10;
  bench::raise_fd_limit();
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--log-level", "warn", "--poll-timeout", "60"});
  const int pid = [&] {
    auto r = run({"/usr/bin/pgrep", "-f", (tmp / "manager").string()});
    return std::atoi(r.out.c_str());
  }();
  std::printf("machine: %s\n", bench::machine().c_str());
  std::printf("manager pid %d at %s; %d simulated agents\n", pid, m.url().c_str(), agents);
  std::printf("manager RSS at start: %.1f MiB\n", bench::proc_status_kib(pid, "VmRSS") / 1024.0);

  asio::io_context io;
  Stats st;
  std::atomic<int> phase{0};
  Clock::time_point poll_end = Clock::now() + std::chrono::hours(1);
  tcp::endpoint server(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(m.port()));
  for (int i = 0; i < agents; ++i) asio::co_spawn(io, agent(i, server, st, poll_end, phase), asio::detached);
  std::thread runner([&] { io.run(); });

  const auto t0 = Clock::now();
  while (st.registered + st.errors < agents && Clock::now() - t0 < std::chrono::minutes(5))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const double reg_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("registration: %ld agents in %.2f s = %.0f registrations/s (errors %ld)\n",
              st.registered.load(), reg_s, st.registered / reg_s, st.errors.load());

  poll_end = Clock::now() + std::chrono::seconds(poll_seconds);
  const auto p0 = Clock::now();
  phase = 1;
  while (Clock::now() < poll_end) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const double poll_s = std::chrono::duration<double>(Clock::now() - p0).count();
  const long polls = st.polls.load();
  std::printf("polling: %ld polls in %.1f s = %.0f polls/s with %ld agents connected\n", polls, poll_s,
              static_cast<double>(polls) / poll_s, st.registered.load());

  phase = 2;
  const auto h0 = Clock::now();
  while (st.holding < st.registered && Clock::now() - h0 < std::chrono::seconds(20))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::printf("long poll: %ld agents holding a poll open; manager RSS %.1f MiB\n", st.holding.load(),
              bench::proc_status_kib(pid, "VmRSS") / 1024.0);
  std::printf("RESULT agents=%d registrations_per_s=%.0f polls_per_s=%.0f peak_rss_mib=%.1f errors=%ld\n",
              agents, st.registered / reg_s, static_cast<double>(polls) / poll_s,
              bench::proc_status_kib(pid, "VmHWM") / 1024.0, st.errors.load());
  m.stop();
  io.stop();
  runner.join();
  return 0;
}
