#pragma once
// What the delivery benchmarks share: a random payload and simulated agents fetching chunks.
#include "harness.h"
#include "net/asio_fwd.h"

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bench {

using namespace distrib::net;

/// Writes `mib` MiB of random (incompressible) bytes, the worst case for transfer.
inline void write_random_payload(const std::filesystem::path& file, int mib, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary);
  std::vector<std::uint64_t> block(1 << 17);
  for (int i = 0; i < mib; ++i) {
    for (auto& w : block) w = rng();
    out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(block.size() * 8));
  }
}

// Reads the rest of a response whose header was read, discarding the body; returns its bytes.
template <class Stream>
std::uint64_t drain_body(Stream& stream, beast::flat_buffer& buf,
                         http::response_parser<http::buffer_body>& parser, std::vector<char>& sink) {
  std::uint64_t got = 0;
  while (!parser.is_done()) {
    parser.get().body().data = sink.data();
    parser.get().body().size = sink.size();
    beast::error_code ec;
    http::read(stream, buf, parser, ec);
    if (ec && ec != http::error::need_buffer) throw beast::system_error(ec);
    got += sink.size() - parser.get().body().size;
  }
  return got;
}

// A kept-alive connection to address:port.
inline void connect(beast::tcp_stream& stream, const std::string& address, int port) {
  stream.connect(tcp::endpoint(asio::ip::make_address(address), static_cast<unsigned short>(port)));
}

// GETs each target on one kept-alive connection, discarding the body; returns bytes received.
template <class Stream>
std::uint64_t fetch_targets(Stream& stream, const std::vector<std::string>& targets) {
  beast::flat_buffer buf;
  std::vector<char> sink(256 * 1024);
  std::uint64_t total = 0;
  for (const auto& t : targets) {
    for (int attempt = 0;; ++attempt) {
      http::request<http::empty_body> req{http::verb::get, t, 11};
      req.set(http::field::host, "bench");
      http::write(stream, req);
      http::response_parser<http::buffer_body> parser;
      parser.body_limit(boost::none);
      http::read_header(stream, buf, parser);
      const int status = parser.get().result_int();
      const auto got = drain_body(stream, buf, parser, sink);
      if (status == 200) {
        total += got;
        break;
      }
      // 503 from a relay whose parent fetch failed: agents retry after a pause.
      if (attempt >= 20) throw std::runtime_error("GET " + t + " answered " + std::to_string(status));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return total;
}

inline std::uint64_t fetch_all(const std::string& address, int port,
                               const std::vector<std::string>& targets) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  connect(stream, address, port);
  return fetch_targets(stream, targets);
}

/// The same over TLS with `ctx` (its CA, and a client certificate when the server asks for one).
inline std::uint64_t fetch_all_tls(const std::string& address, int port,
                                   const std::vector<std::string>& targets, asio::ssl::context& ctx) {
  asio::io_context io;
  beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
  connect(beast::get_lowest_layer(stream), address, port);
  stream.handshake(asio::ssl::stream_base::client);
  return fetch_targets(stream, targets);
}

/// Fetches `batches` (lists of chunk digests) as agents do: one POST /v1/content/chunks per
/// segment on one kept-alive connection. Returns bytes of chunk data received (frames included).
inline std::uint64_t fetch_batches(const std::string& address, int port, const std::string& host_id,
                                   const std::vector<std::vector<std::string>>& batches) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  connect(stream, address, port);
  beast::flat_buffer buf;
  std::vector<char> sink(256 * 1024);
  std::uint64_t total = 0;
  for (const auto& segment : batches) {
    // The server may answer a prefix (rate limit, batch size): ask again for the rest.
    for (std::size_t from = 0; from < segment.size();) {
      boost::json::array digests;
      for (std::size_t i = from; i < segment.size(); ++i) digests.emplace_back(segment[i]);
      http::request<http::string_body> req{http::verb::post, "/v1/content/chunks", 11};
      req.set(http::field::host, "bench");
      req.set(http::field::content_type, "application/json");
      req.body() =
          boost::json::serialize(boost::json::object{{"host_id", host_id}, {"digests", std::move(digests)}});
      req.prepare_payload();
      http::write(stream, req);
      http::response_parser<http::buffer_body> parser;
      parser.body_limit(boost::none);
      http::read_header(stream, buf, parser);
      if (parser.get().result_int() != 200)
        throw std::runtime_error("batch answered " + std::to_string(parser.get().result_int()));
      const auto served = std::stoul(std::string(parser.get()["X-Distrib-Chunks"]));
      if (served == 0) throw std::runtime_error("empty batch");
      from += served;
      total += drain_body(stream, buf, parser, sink);
    }
  }
  return total;
}

/// Registers the directory `dir` as package "big" 1 at `m` and returns its chunk digests.
inline std::vector<std::string> register_package(const distrib::test::ManagerProc& m,
                                                 const std::filesystem::path& dir,
                                                 const std::string& name = "big",
                                                 const std::string& version = "1") {
  using namespace std::chrono_literals;
  auto created = m.ctl({"package", "create", dir.string(), "--name", name, "--version", version}, true, 900s);
  if (created.exit_code != 0) throw std::runtime_error("package create failed: " + created.err);
  const auto manifest = boost::json::parse(m.ctl({"package", "show", name, version}, true).out);
  std::vector<std::string> digests;
  for (const auto& c : manifest.at("chunks").as_array()) digests.emplace_back(c.at("digest").as_string());
  return digests;
}

inline int free_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

/// nginx (2 workers, sendfile) serving `root` on 127.0.0.1:port, its files under `dir`; returns
/// once it accepts connections (nullptr when it did not start).
inline std::unique_ptr<distrib::test::Process> start_nginx(const std::filesystem::path& dir,
                                                           const std::filesystem::path& root, int port,
                                                           const std::string& tls_cert = {},
                                                           const std::string& tls_key = {}) {
  using namespace std::chrono_literals;
  std::filesystem::create_directories(dir / "logs");
  const auto d = dir.string();
  distrib::test::write_file(
      dir / "nginx.conf",
      "user root;\nworker_processes 2;\ndaemon off;\nerror_log " + d + "/error.log;\npid " + d +
          "/nginx.pid;\nevents { worker_connections 4096; }\nhttp {\n access_log off;\n sendfile on;\n"
          " keepalive_requests 100000;\n client_body_temp_path " +
          d + ";\n proxy_temp_path " + d + ";\n fastcgi_temp_path " + d + ";\n uwsgi_temp_path " + d +
          ";\n scgi_temp_path " + d + ";\n server {\n  listen 127.0.0.1:" + std::to_string(port) +
          (tls_cert.empty()
               ? std::string()
               : " ssl;\n  ssl_certificate " + tls_cert + ";\n  ssl_certificate_key " + tls_key) +
          ";\n  root " + root.string() + ";\n }\n}\n");
  auto p = std::make_unique<distrib::test::Process>(
      std::vector<std::string>{"/usr/sbin/nginx", "-p", d, "-c", d + "/nginx.conf"}, dir / "stdout.log");
  const bool up = distrib::test::wait_until(
      [&] {
        try {
          asio::io_context io;
          tcp::socket s(io);
          s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
          return true;
        } catch (...) {
          return false;
        }
      },
      10s);
  if (!up) return nullptr;
  return p;
}

/// Runs `clients` threads, each calling fetch(i); returns the seconds until all ended and sets
/// `bytes` to what they fetched.
inline double run_parallel(int clients, const std::function<std::uint64_t(int)>& fetch,
                           std::uint64_t& bytes) {
  std::atomic<std::uint64_t> total{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      try {
        total += fetch(i);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "client failed: %s\n", e.what());
        ++failures;
      }
    });
  for (auto& t : threads) t.join();
  bytes = total;
  if (failures) std::fprintf(stderr, "%d client(s) failed\n", failures.load());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// nginx serving DIR/www/payload.bin as a static file to `clients` at once (the baseline of the
/// delivery benchmarks); prints and returns MB/s, or -1 when nginx did not start.
inline double nginx_throughput(const std::filesystem::path& dir, int clients,
                               asio::ssl::context* tls = nullptr, const std::string& tls_cert = {},
                               const std::string& tls_key = {}) {
  const int port = free_port();
  auto nginx = start_nginx(dir / (tls ? "nginx-tls" : "nginx"), dir / "www", port, tls_cert, tls_key);
  if (!nginx) {
    std::fprintf(stderr, "nginx did not start: %s\n",
                 distrib::test::read_file(dir / "nginx/error.log").c_str());
    return -1;
  }
  std::uint64_t bytes = 0;
  const double secs = run_parallel(
      clients,
      [&](int) {
        return tls ? fetch_all_tls("127.0.0.1", port, {"/payload.bin"}, *tls)
                   : fetch_all("127.0.0.1", port, {"/payload.bin"});
      },
      bytes);
  const double mbs = static_cast<double>(bytes) / 1e6 / secs;
  std::printf("nginx%s: %d clients fetched %.0f MB in %.2f s = %.0f MB/s\n", tls ? " (TLS)" : "", clients,
              static_cast<double>(bytes) / 1e6, secs, mbs);
  return mbs;
}

/// Where the manager keeps a chunk.
inline std::filesystem::path chunk_file(const distrib::test::ManagerProc& m, const std::string& digest) {
  return m.state_dir() / "chunks" / digest.substr(0, 2) / (digest + ".zst");
}

}  // namespace bench
