// Delivery throughput: C concurrent clients fetch a P MiB package from a real distribd manager
// (every chunk, kept-alive connections, as agents do), then fetch the same bytes as one static
// file from nginx in the same run. Prints aggregate MB/s for both and the ratio; then the same over
// TLS: the manager with mutual TLS (the clients present an agent certificate of its CA) against
// nginx serving HTTPS with the manager's own server certificate.
//
// usage: bench_delivery [CLIENTS=50] [PAYLOAD_MIB=100]
#include "bench_common.h"
#include "bench_fetch.h"
#include "harness.h"

#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>

using namespace distrib::net;
using namespace distrib::test;

int main(int argc, char** argv) {
  const int clients = argc > 1 ? std::atoi(argv[1]) : 50;
  const int mib = argc > 2 ? std::atoi(argv[2]) : 100;
  bench::raise_fd_limit();
  TempDir tmp;
  std::printf("machine: %s\n", bench::machine().c_str());

  bench::write_random_payload(tmp / "pkg/payload.bin", mib, 42);
  ManagerProc m(tmp / "manager", {"--log-level", "warn", "--insecure-http"});
  std::vector<std::string> chunk_targets;
  stdfs::create_directories(tmp / "www");
  std::ofstream file(tmp / "www/payload.bin", std::ios::binary);
  for (const auto& d : bench::register_package(m, tmp / "pkg")) {
    chunk_targets.push_back("/v1/content/chunks/" + d);
    file << read_file(bench::chunk_file(m, d));
  }
  file.close();
  const auto file_bytes = stdfs::file_size(tmp / "www/payload.bin");
  std::printf("package: %d MiB payload, %zu chunks, %.1f MiB on the wire\n", mib, chunk_targets.size(),
              static_cast<double>(file_bytes) / 1048576.0);

  std::uint64_t bytes = 0;
  const double secs = bench::run_parallel(
      clients, [&](int) { return bench::fetch_all("127.0.0.1", m.port(), chunk_targets); }, bytes);
  const double distrib_mbs = static_cast<double>(bytes) / 1e6 / secs;
  std::printf("distribd: %d clients fetched %.0f MB in %.2f s = %.0f MB/s\n", clients,
              static_cast<double>(bytes) / 1e6, secs, distrib_mbs);
  m.stop();

  // nginx serving the same bytes as one static file, same clients, same machine, same run.
  const double nginx_mbs = bench::nginx_throughput(tmp.path(), clients);
  if (nginx_mbs < 0) return 1;
  std::printf("RESULT clients=%d payload_mib=%d distrib_mb_s=%.0f nginx_mb_s=%.0f ratio=%.2f\n", clients, mib,
              distrib_mbs, nginx_mbs, distrib_mbs / nginx_mbs);

  // Over TLS: the same state directory served with mutual TLS; the clients are one enrolled agent.
  ManagerProc secure(tmp / "manager", {"--log-level", "warn"});
  const auto agent = enrol_test_host(secure, tmp / "agent", "bench-agent");
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(agent.ca_file);
  ctx.use_certificate_chain_file(agent.cert_file);
  ctx.use_private_key_file(agent.key_file, asio::ssl::context::pem);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  const double tls_secs = bench::run_parallel(
      clients, [&](int) { return bench::fetch_all_tls("127.0.0.1", secure.port(), chunk_targets, ctx); },
      bytes);
  const double distrib_tls_mbs = static_cast<double>(bytes) / 1e6 / tls_secs;
  std::printf("distribd (mutual TLS): %d clients fetched %.0f MB in %.2f s = %.0f MB/s\n", clients,
              static_cast<double>(bytes) / 1e6, tls_secs, distrib_tls_mbs);
  secure.stop();
  const auto pki = tmp / "manager/pki";
  const double nginx_tls_mbs = bench::nginx_throughput(
      tmp.path(), clients, &ctx, (pki / "server.crt").string(), (pki / "server.key").string());
  if (nginx_tls_mbs < 0) return 1;
  std::printf(
      "RESULT tls clients=%d payload_mib=%d distrib_mb_s=%.0f nginx_mb_s=%.0f ratio=%.2f "
      "tls_cost=%.2f\n",
      clients, mib, distrib_tls_mbs, nginx_tls_mbs, distrib_tls_mbs / nginx_tls_mbs,
      distrib_tls_mbs / distrib_mbs);
  return 0;
}
