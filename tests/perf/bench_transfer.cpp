// The transfer engine's figures, each against its baseline in the same run:
//  1. unsplit throughput: C clients fetch a P MiB package in segments (POST /v1/content/chunks,
//     8 MiB of whole chunks per request, as agents do) vs nginx serving the same bytes as one
//     static file to the same clients;
//  2. rate-limit accuracy: a manager limited to R bytes/s per host, one client and then two
//     clients fetching at once: measured rate per host vs configured;
//  3. cross-version dedup on a real tree: a real agent installs DIR as version 1; 1 % of the files
//     change (every 100th file gets a line appended); the agent installs version 2; bytes sent for
//     the upgrade as a share of version 2's size on the wire.
//
// usage: bench_transfer [CLIENTS=20] [PAYLOAD_MIB=200] [RATE_MIB=10] [TREE=/usr/include/boost]
#include "bench_common.h"
#include "bench_fetch.h"
#include "harness.h"

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

using namespace distrib::net;
using namespace distrib::test;
using Clock = std::chrono::steady_clock;
namespace bj = boost::json;

namespace {

const std::uint64_t kSegment =
    std::getenv("SEGMENT_MIB") ? std::strtoull(std::getenv("SEGMENT_MIB"), nullptr, 10) << 20 : 8ull << 20;

struct Chunk {
  std::string digest;
  std::uint64_t size = 0;
};

std::vector<Chunk> manifest_chunks(const ManagerProc& m, const std::string& name,
                                   const std::string& version) {
  const auto manifest = bj::parse(m.ctl({"package", "show", name, version}, true).out);
  std::vector<Chunk> out;
  for (const auto& c : manifest.at("chunks").as_array())
    out.push_back({std::string(c.at("digest").as_string()), c.at("size").to_number<std::uint64_t>()});
  return out;
}

std::vector<std::vector<std::string>> segments(const std::vector<Chunk>& chunks, std::uint64_t size) {
  std::vector<std::vector<std::string>> out;
  std::uint64_t fill = 0;
  for (const auto& c : chunks) {
    if (out.empty() || fill + c.size > size) {
      out.emplace_back();
      fill = 0;
    }
    out.back().push_back(c.digest);
    fill += c.size;
  }
  return out;
}

std::string fake_host_id(int i) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", i);
  return buf;
}

std::uint64_t served_bytes(const ManagerProc& m, const std::string& requester) {
  const auto stats = bj::parse(m.ctl({"stats"}, true).out);
  for (const auto& v : stats.at("content").at("by_requester").as_array())
    if (v.at("host_id").as_string() == requester) return v.at("bytes").to_number<std::uint64_t>();
  return 0;
}

std::uint64_t wire_size(const ManagerProc& m, const std::vector<Chunk>& chunks) {
  std::uint64_t n = 0;
  for (const auto& c : chunks) n += stdfs::file_size(bench::chunk_file(m, c.digest));
  return n;
}

bool wait_job_ok(const ManagerProc& m, const std::string& job) {
  const auto shown = wait_job(m, job, std::chrono::seconds(900));
  return bj::parse(shown).at("progress").at("succeeded") == bj::parse(shown).at("progress").at("total");
}

std::string create_job(const ManagerProc& m, const std::vector<std::string>& args) {
  std::vector<std::string> a{"job", "create"};
  a.insert(a.end(), args.begin(), args.end());
  const auto r = m.ctl(a, true);
  if (r.exit_code != 0) throw std::runtime_error("job create failed: " + r.err);
  return std::to_string(bj::parse(r.out).at("job").at("id").as_int64());
}

}  // namespace

int main(int argc, char** argv) {
  const int clients = argc > 1 ? std::atoi(argv[1]) : 20;
  const int mib = argc > 2 ? std::atoi(argv[2]) : 200;
  const int rate_mib = argc > 3 ? std::atoi(argv[3]) : 10;
  const std::string tree = argc > 4 ? argv[4] : "/usr/include/boost";
  bench::raise_fd_limit();
  std::printf("machine: %s\n", bench::machine().c_str());
  TempDir tmp;

  // --- 1. unsplit throughput vs nginx ------------------------------------------------------
  {
    bench::write_random_payload(tmp / "pkg/payload.bin", mib, 42);
    ManagerProc m(tmp / "manager", {"--log-level", "warn", "--insecure-http", "--threads",
                                    std::getenv("NET_THREADS") ? std::getenv("NET_THREADS") : "2"});
    bench::register_package(m, tmp / "pkg");
    const auto chunks = manifest_chunks(m, "big", "1");
    stdfs::create_directories(tmp / "www");
    {
      std::ofstream file(tmp / "www/payload.bin", std::ios::binary);
      for (const auto& c : chunks) file << read_file(bench::chunk_file(m, c.digest));
    }
    const auto batches = segments(chunks, kSegment);
    std::printf("package: %d MiB payload, %zu chunks, %zu segments of <= 8 MiB, %.1f MiB on the wire\n", mib,
                chunks.size(), batches.size(),
                static_cast<double>(stdfs::file_size(tmp / "www/payload.bin")) / 1048576.0);
    std::uint64_t bytes = 0;
    const double secs = bench::run_parallel(
        clients, [&](int i) { return bench::fetch_batches("127.0.0.1", m.port(), fake_host_id(i), batches); },
        bytes);
    const double distrib_mbs = static_cast<double>(bytes) / 1e6 / secs;
    std::printf("distribd: %d clients fetched %.0f MB in segments in %.2f s = %.0f MB/s\n", clients,
                static_cast<double>(bytes) / 1e6, secs, distrib_mbs);
    m.stop();
    const double nginx_mbs = bench::nginx_throughput(tmp.path(), clients);
    if (nginx_mbs < 0) return 1;
    std::printf("RESULT throughput clients=%d payload_mib=%d distrib_mb_s=%.0f nginx_mb_s=%.0f ratio=%.2f\n",
                clients, mib, distrib_mbs, nginx_mbs, distrib_mbs / nginx_mbs);
    stdfs::remove_all(tmp / "www");
  }

  // --- 2. rate-limit accuracy -----------------------------------------------------------------
  {
    bench::write_random_payload(tmp / "pkg50/payload.bin", 5 * rate_mib, 43);
    ManagerProc m(tmp / "limited", {"--log-level", "warn", "--insecure-http", "--rate-limit",
                                    std::to_string(rate_mib) + "MiB"});
    bench::register_package(m, tmp / "pkg50");
    const auto chunks = manifest_chunks(m, "big", "1");
    const auto batches = segments(chunks, kSegment);
    const double configured = rate_mib * 1048576.0;
    for (int n : {1, 2}) {
      std::uint64_t bytes = 0;
      const double secs = bench::run_parallel(
          n,
          [&](int i) {
            return bench::fetch_batches("127.0.0.1", m.port(), fake_host_id(100 * n + i), batches);
          },
          bytes);
      const double per_host = static_cast<double>(bytes) / n / secs;
      std::printf(
          "rate limit %d MiB/s per host, %d host(s) at once: %.2f MiB/s per host over %.1f s (%+.1f %%)\n",
          rate_mib, n, per_host / 1048576.0, secs, (per_host / configured - 1) * 100);
      std::printf("RESULT rate_limit hosts=%d configured_mib_s=%d measured_mib_s=%.2f error_pct=%.1f\n", n,
                  rate_mib, per_host / 1048576.0, (per_host / configured - 1) * 100);
    }
  }

  // --- 3. dedup on a real tree -------------------------------------------------------------
  if (stdfs::is_directory(tree)) {
    const auto v1 = tmp / "tree-v1";
    stdfs::copy(tree, v1, stdfs::copy_options::recursive | stdfs::copy_options::skip_symlinks);
    std::vector<stdfs::path> files;
    for (const auto& e : stdfs::recursive_directory_iterator(v1))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    ManagerProc m(tmp / "dedup", {"--log-level", "warn", "--insecure-http"});
    AgentProc a(tmp / "agent", m.url(), "bench-agent", "127.0.0.60");
    wait_until([&] { return host_count(m) == 1; }, 20s);
    const auto me = read_file(tmp / "agent/host-id").substr(0, 36);
    auto t0 = Clock::now();
    bench::register_package(m, v1, "tree", "1");
    const double pack_secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto c1 = manifest_chunks(m, "tree", "1");
    if (!wait_job_ok(m, create_job(m, {"install", "tree", "1", "bench-agent"}))) {
      std::fprintf(stderr, "version 1 did not install\n");
      return 1;
    }
    const auto after_v1 = served_bytes(m, me);
    // 1 % of the files change: every 100th gets a line appended.
    std::size_t changed = 0;
    std::uint64_t changed_bytes = 0;
    for (std::size_t i = 0; i < files.size(); i += 100) {
      std::ofstream(files[i], std::ios::app) << "\n// changed for version 2\n";
      ++changed;
      changed_bytes += stdfs::file_size(files[i]);
    }
    bench::register_package(m, v1, "tree", "2");
    const auto c2 = manifest_chunks(m, "tree", "2");
    t0 = Clock::now();
    if (!wait_job_ok(m, create_job(m, {"install", "tree", "2", "bench-agent"}))) {
      std::fprintf(stderr, "version 2 did not install\n");
      return 1;
    }
    const double upgrade_secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto upgrade = served_bytes(m, me) - after_v1;
    std::uint64_t raw2 = 0;
    for (const auto& c : c2) raw2 += c.size;
    const auto wire2 = wire_size(m, c2);
    std::printf(
        "tree %s: %zu files, %.1f MiB payload (%.1f MiB on the wire), %zu / %zu chunks, packaged in %.1f s\n",
        tree.c_str(), files.size(), static_cast<double>(raw2) / 1048576.0,
        static_cast<double>(wire2) / 1048576.0, c1.size(), c2.size(), pack_secs);
    std::printf("changed %zu files (%.2f %% of files, %.2f MiB of them)\n", changed,
                100.0 * static_cast<double>(changed) / static_cast<double>(files.size()),
                static_cast<double>(changed_bytes) / 1048576.0);
    std::printf("upgrade to version 2 sent %.2f MiB in %.1f s = %.2f %% of version 2 on the wire\n",
                static_cast<double>(upgrade) / 1048576.0, upgrade_secs,
                100.0 * static_cast<double>(upgrade) / static_cast<double>(wire2));
    std::printf(
        "RESULT dedup files=%zu changed_files=%zu v2_wire_bytes=%llu upgrade_bytes=%llu share_pct=%.2f\n",
        files.size(), changed, static_cast<unsigned long long>(wire2),
        static_cast<unsigned long long>(upgrade),
        100.0 * static_cast<double>(upgrade) / static_cast<double>(wire2));
  } else {
    std::printf("dedup: %s is not a directory; skipped\n", tree.c_str());
  }
  return 0;
}
