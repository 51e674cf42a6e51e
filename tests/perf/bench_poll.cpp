// Load generator: N simulated agents in one process register with a real distribd manager and
// poll it. Prints registrations/s, polls/s (immediate polls, no work) and the manager's peak RSS
// with all N agents holding a long poll open at once. Twice in one run: over plain HTTP
// (--insecure-http, the baseline) and over mutual TLS as enrolled agents (each with its own
// certificate of the manager's CA, issued before the clock starts), and prints the ratios.
//
// usage: bench_poll [AGENTS=10000] [POLL_SECONDS=10]
#include "bench_common.h"
#include "bench_http.h"
#include "harness.h"
#include "net/asio_fwd.h"
#include "security/authority.h"
#include "security/pki.h"
#include "util/fs.h"

#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <distrib/model/host.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

using namespace distrib::net;
using namespace distrib::test;
using Clock = std::chrono::steady_clock;

namespace {

struct Stats {
  std::atomic<long> registered{0}, polls{0}, holding{0}, errors{0}, handshake_errors{0};
  std::atomic<long> returned{0}, holding_beats{0};
};

// What each agent's TLS needs: a context trusting the manager's CA, the key all agents share
// (one key, a certificate of its own each: keys are not what is measured) and the certificates.
struct Tls {
  asio::ssl::context ctx{asio::ssl::context::tls_client};
  EVP_PKEY* key = nullptr;
  std::vector<X509*> certs;
  std::vector<std::string> ids;
};

template <class Stream>
asio::awaitable<void> session(Stream& stream, const std::string& id, int index, Stats& st,
                              Clock::time_point& poll_end, std::atomic<int>& phase) {
  auto ex = co_await asio::this_coro::executor;
  beast::flat_buffer buf;
  auto call = [&](http::verb verb, std::string target, std::string body) -> asio::awaitable<int> {
    const auto [status, answer] = co_await bench::http_call(stream, buf, verb, target, std::move(body));
    co_return status;
  };
  const auto body = "{\"host_id\":\"" + id + "\",\"name\":\"sim" + std::to_string(index) +
                    "\",\"addresses\":[],\"os\":\"simulated\"}";
  if (co_await call(http::verb::post, "/v1/agent/register", body) != 200) {
    ++st.errors;
    co_return;
  }
  ++st.registered;
  // The main thread moves every agent to the next phase at once.
  const auto until_phase = [&](int n) -> asio::awaitable<void> {
    while (phase.load() < n) {
      asio::steady_timer t(ex, std::chrono::milliseconds(20));
      co_await t.async_wait(asio::use_awaitable);
    }
  };
  co_await until_phase(1);
  while (Clock::now() < poll_end) {
    if (co_await call(http::verb::get, "/v1/agent/work?wait=0&host_id=" + id, "") != 200) {
      ++st.errors;
      co_return;
    }
    ++st.polls;
  }
  co_await until_phase(2);
  // Hold a long poll open, as idle agents do.
  ++st.holding;
  co_await call(http::verb::get, "/v1/agent/work?wait=20&host_id=" + id, "");
  ++st.returned;
  co_await until_phase(3);
  // Again with a heartbeat: the manager sends a byte every 2 s while the poll is held.
  ++st.holding_beats;
  co_await call(http::verb::get, "/v1/agent/work?wait=20&heartbeat=1&host_id=" + id, "");
}

asio::awaitable<void> agent(int index, tcp::endpoint server, Stats& st, Clock::time_point& poll_end,
                            std::atomic<int>& phase, Tls* tls) {
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
  if (!tls) {
    co_await session(stream, distrib::make_host_id(), index, st, poll_end, phase);
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> secure(std::move(stream), tls->ctx);
  const auto i = static_cast<std::size_t>(index);
  if (SSL_use_certificate(secure.native_handle(), tls->certs[i]) != 1 ||
      SSL_use_PrivateKey(secure.native_handle(), tls->key) != 1) {
    ++st.errors;
    co_return;
  }
  co_await secure.async_handshake(asio::ssl::stream_base::client,
                                  asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    ++st.errors;
    co_return;
  }
  co_await session(secure, tls->ids[i], index, st, poll_end, phase);
}

// Certificates for `n` agents from the manager's CA (as enrolment would issue them).
std::unique_ptr<Tls> issue_agents(const stdfs::path& state_dir, int n) {
  auto tls = std::make_unique<Tls>();
  const distrib::security::TlsFiles files{state_dir / "pki/ca.crt", state_dir / "pki/ca.key", {}, {}};
  const auto ca = distrib::security::load_authority(files);
  tls->ctx.load_verify_file(files.ca_cert.string());
  tls->ctx.set_verify_mode(asio::ssl::verify_peer);
  const auto key_pem = distrib::pki::generate_key();
  BIO* kb = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  tls->key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
  BIO_free(kb);
  for (int i = 0; i < n; ++i) {
    tls->ids.push_back(distrib::make_host_id());
    const auto pem =
        distrib::pki::issue_host(ca, distrib::pki::make_request(key_pem, {tls->ids.back(), "agent"}), 86400,
                                 distrib::security::random_serial());
    BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    tls->certs.push_back(PEM_read_bio_X509(b, nullptr, nullptr, nullptr));
    BIO_free(b);
  }
  return tls;
}

struct Result {
  double registrations_per_s = 0, polls_per_s = 0, peak_rss_mib = 0, holding_rss_mib = 0;
  double hold_cpu = 0, hold_beats_cpu = 0;  // the manager's share of a core while polls are held
  long errors = 0;
};

// One run against a fresh manager: plain HTTP, or mutual TLS.
Result measure(int agents, int poll_seconds, bool mutual_tls) {
  TempDir tmp;
  std::vector<std::string> opts = {"--log-level", "warn", "--poll-timeout", "60"};
  if (!mutual_tls) opts.push_back("--insecure-http");
  ManagerProc m(tmp / "manager", opts);
  const int pid = [&] {
    auto r = run({"/usr/bin/pgrep", "-f", (tmp / "manager").string()});
    return std::atoi(r.out.c_str());
  }();
  std::unique_ptr<Tls> tls;
  if (mutual_tls) {
    const auto i0 = Clock::now();
    tls = issue_agents(tmp / "manager", agents);
    std::printf("issued %d agent certificates in %.2f s (not timed below)\n", agents,
                std::chrono::duration<double>(Clock::now() - i0).count());
  }
  std::printf("-- %s: manager pid %d at %s; %d simulated agents; RSS at start %.1f MiB\n",
              mutual_tls ? "mutual TLS" : "plain HTTP", pid, m.url().c_str(), agents,
              bench::proc_status_kib(pid, "VmRSS") / 1024.0);

  asio::io_context io;
  Stats st;
  std::atomic<int> phase{0};
  Clock::time_point poll_end = Clock::now() + std::chrono::hours(1);
  tcp::endpoint server(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(m.port()));
  for (int i = 0; i < agents; ++i)
    asio::co_spawn(io, agent(i, server, st, poll_end, phase, tls.get()), asio::detached);
  std::thread runner([&] { io.run(); });

  Result out;
  const auto t0 = Clock::now();
  while (st.registered + st.errors < agents && Clock::now() - t0 < std::chrono::minutes(5))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const double reg_s = std::chrono::duration<double>(Clock::now() - t0).count();
  out.registrations_per_s = static_cast<double>(st.registered) / reg_s;
  std::printf(
      "registration (connect%s + register): %ld agents in %.2f s = %.0f registrations/s (errors %ld)\n",
      mutual_tls ? ", TLS handshake" : "", st.registered.load(), reg_s, out.registrations_per_s,
      st.errors.load());

  poll_end = Clock::now() + std::chrono::seconds(poll_seconds);
  const auto p0 = Clock::now();
  phase = 1;
  while (Clock::now() < poll_end) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const double poll_s = std::chrono::duration<double>(Clock::now() - p0).count();
  out.polls_per_s = static_cast<double>(st.polls.load()) / poll_s;
  std::printf("polling: %ld polls in %.1f s = %.0f polls/s with %ld agents connected\n", st.polls.load(),
              poll_s, out.polls_per_s, st.registered.load());

  phase = 2;
  const auto h0 = Clock::now();
  while (st.holding < st.registered && Clock::now() - h0 < std::chrono::seconds(20))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  out.holding_rss_mib = bench::proc_status_kib(pid, "VmRSS") / 1024.0;
  out.peak_rss_mib = bench::proc_status_kib(pid, "VmHWM") / 1024.0;
  out.errors = st.errors.load();
  std::printf("long poll: %ld agents holding a poll open; manager RSS %.1f MiB (peak %.1f MiB)\n",
              st.holding.load(), out.holding_rss_mib, out.peak_rss_mib);
  // The manager's CPU while every agent holds a poll: 10 s without heartbeats, then (once those
  // polls ended) 10 s of polls asking for one.
  const auto share = [&](double seconds) {
    const double c0 = bench::cpu_seconds(pid);
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    return (bench::cpu_seconds(pid) - c0) / seconds;
  };
  out.hold_cpu = share(10);
  const auto r0 = Clock::now();
  while (st.returned < st.holding && Clock::now() - r0 < std::chrono::seconds(30))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  phase = 3;
  while (st.holding_beats < st.returned && Clock::now() - r0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::seconds(3));  // past the first beat
  out.hold_beats_cpu = share(10);
  std::printf(
      "held polls, manager CPU: %.1f %% of a core without heartbeats, %.1f %% with a heartbeat every 2 s "
      "(%ld polls)\n",
      100 * out.hold_cpu, 100 * out.hold_beats_cpu, st.holding_beats.load());
  m.stop();
  io.stop();
  runner.join();
  if (tls) {
    for (auto* c : tls->certs) X509_free(c);
    EVP_PKEY_free(tls->key);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int agents = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int poll_seconds = argc > 2 ? std::atoi(argv[2]) : 10;
  bench::raise_fd_limit();
  std::printf("machine: %s\n", bench::machine().c_str());
  const auto plain = measure(agents, poll_seconds, false);
  const auto mtls = measure(agents, poll_seconds, true);
  std::printf(
      "RESULT agents=%d plain: registrations_per_s=%.0f polls_per_s=%.0f peak_rss_mib=%.1f errors=%ld\n",
      agents, plain.registrations_per_s, plain.polls_per_s, plain.peak_rss_mib, plain.errors);
  std::printf(
      "RESULT agents=%d mtls: registrations_per_s=%.0f polls_per_s=%.0f peak_rss_mib=%.1f errors=%ld\n",
      agents, mtls.registrations_per_s, mtls.polls_per_s, mtls.peak_rss_mib, mtls.errors);
  std::printf(
      "RESULT held polls, manager CPU (share of a core): plain %.3f, with heartbeats %.3f; mtls %.3f, "
      "with heartbeats %.3f\n",
      plain.hold_cpu, plain.hold_beats_cpu, mtls.hold_cpu, mtls.hold_beats_cpu);
  std::printf("RESULT ratio mtls/plain: registrations %.2f polls %.2f peak_rss %.2f\n",
              mtls.registrations_per_s / plain.registrations_per_s, mtls.polls_per_s / plain.polls_per_s,
              mtls.peak_rss_mib / plain.peak_rss_mib);
  return 0;
}
