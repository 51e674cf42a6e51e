// Collected files at a real manager: HOSTS simulated agents each send one file of MIB MiB for a
// collect-files job, all at once, each on its own connection. The manager's resident memory is
// sampled every 100 ms while the files arrive; it prints the peak, the time and the rate, and the
// requests told to come back later (503: the server's budget for bodies held in memory) and
// sent again a second later.
//
// usage: bench_collect [HOSTS=50] [MIB=256]
#include "bench_common.h"
#include "bench_fetch.h"
#include "harness.h"

#include <distrib/model/host.h>
#include <distrib/net/http.h>

#include <boost/json.hpp>

#include <atomic>
#include <cstdio>
#include <thread>

using namespace distrib::test;
namespace bj = boost::json;
using namespace bench;

namespace {

// One upload of `bytes` bytes (a repeated 1 MiB pattern) on a fresh connection: the status.
int upload(int port, const std::string& target, std::uint64_t bytes) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  connect(stream, "127.0.0.1", port);
  http::request<http::empty_body> req{http::verb::post, target, 11};
  req.set(http::field::host, "manager");
  req.set(http::field::content_type, "application/octet-stream");
  req.content_length(bytes);
  http::request_serializer<http::empty_body> sr(req);
  http::write_header(stream, sr);
  static const std::string block = [] {
    std::string b(1 << 20, '\0');
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<char>('a' + i % 23);
    return b;
  }();
  beast::error_code ec;
  for (std::uint64_t sent = 0; sent < bytes && !ec;) {
    const auto n = std::min<std::uint64_t>(block.size(), bytes - sent);
    asio::write(stream, asio::buffer(block.data(), n), ec);
    sent += n;
  }
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(stream, buf, res, ec);
  if (ec) return -1;
  return static_cast<int>(res.result_int());
}

}  // namespace

int main(int argc, char** argv) {
  const int hosts = argc > 1 ? std::atoi(argv[1]) : 50;
  const std::uint64_t mib = argc > 2 ? static_cast<std::uint64_t>(std::atoll(argv[2])) : 256;
  const std::uint64_t bytes = mib << 20;
  raise_fd_limit();
  std::printf("machine: %s\n", machine().c_str());

  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--log-level", "warn", "--insecure-http"});
  distrib::HttpClientSettings cs;
  cs.base_url = m.url();
  distrib::HttpClient http_client(cs);
  std::vector<std::string> ids, names;
  for (int i = 0; i < hosts; ++i) {
    ids.push_back(distrib::make_host_id());
    names.push_back("up" + std::to_string(i));
    auto res = http_client.request("POST", "/v1/agent/register",
                                   bj::serialize(bj::object{{"host_id", ids.back()},
                                                            {"name", names.back()},
                                                            {"addresses", bj::array{}},
                                                            {"os", "simulated"},
                                                            {"role", "agent"}}),
                                   "application/json");
    if (res.status != 200) {
      std::printf("registration refused: %d %s\n", res.status, res.body.c_str());
      return 1;
    }
  }
  const auto token = read_file(m.token_file()).substr(0, 64);
  bj::array dests;
  for (const auto& n : names) dests.emplace_back(n);
  auto job = http_client.request(
      "POST", "/v1/jobs",
      bj::serialize(bj::object{{"type", "collect-files"},
                               {"collect", bj::object{{"paths", bj::array{"/var/log/big.log"}},
                                                      {"max_file_bytes", bytes},
                                                      {"max_total_bytes", bytes}}},
                               {"destinations", dests}}),
      "application/json", token);
  if (job.status != 201) {
    std::printf("job refused: %d %s\n", job.status, job.body.c_str());
    return 1;
  }
  const auto job_id = bj::parse(job.body).as_object().at("job").as_object().at("id").as_int64();

  const long rss_before = proc_status_kib(m.pid(), "VmRSS");
  std::atomic<bool> done{false};
  std::atomic<long> peak{rss_before};
  std::thread sampler([&] {
    while (!done) {
      const long kib = proc_status_kib(m.pid(), "VmRSS");
      if (kib > peak) peak = kib;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::atomic<long> refused{0}, failed{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> senders;
  for (int i = 0; i < hosts; ++i)
    senders.emplace_back([&, i] {
      const auto target = "/v1/agent/collect?host_id=" + ids[static_cast<std::size_t>(i)] +
                          "&job_id=" + std::to_string(job_id) +
                          "&path=" + distrib::url_encode("/var/log/big.log");
      for (int attempt = 0; attempt < 600; ++attempt) {
        const int status = upload(m.port(), target, bytes);
        if (status == 200) return;
        if (status != 503) {
          if (failed++ == 0) std::printf("upload refused: %d\n", status);
          return;
        }
        ++refused;
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
      ++failed;
    });
  for (auto& t : senders) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  done = true;
  sampler.join();
  const long hwm = proc_status_kib(m.pid(), "VmHWM");
  const double total_mib = static_cast<double>(hosts) * static_cast<double>(mib);
  std::printf(
      "%d uploads of %llu MiB at once: %.1f s, %.0f MiB/s, %ld refused for later (503) and sent again, "
      "%ld failed\n",
      hosts, static_cast<unsigned long long>(mib), secs, total_mib / secs, refused.load(), failed.load());
  std::printf(
      "manager RSS: %.0f MiB before, peak %.0f MiB sampled (VmHWM %.0f MiB) for %.0f MiB received; "
      "peak / one file = %.2f\n",
      static_cast<double>(rss_before) / 1024.0, static_cast<double>(peak.load()) / 1024.0,
      static_cast<double>(hwm) / 1024.0, total_mib,
      static_cast<double>(peak.load()) / 1024.0 / static_cast<double>(mib));
  return failed ? 1 : 0;
}
