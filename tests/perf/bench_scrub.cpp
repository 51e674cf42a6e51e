// How fast a scrub checks a chunk store (read, decompress, SHA-256 of every chunk), next to
// sha256sum over the same files (read and hash only: it checks nothing against anything). Prints
// figures; asserts nothing.
//
//   bench_scrub [MIB] [SOURCE_TREE]
// MIB of generated data (half random, half text-like) is packaged into a fresh chunk store; with
// SOURCE_TREE a real tree is packaged instead (e.g. /usr/include/boost).
#include "bench_common.h"

#include <distrib/content/chunk_store.h>
#include <distrib/content/packager.h>
#include <distrib/content/scrub.h>

#include "harness.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>

using namespace distrib;
using Clock = std::chrono::steady_clock;

namespace {

void generate(const std::filesystem::path& dir, int mib) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < mib; ++i) {
    std::string data(1 << 20, '\0');
    if (i % 2 == 0) {
      for (std::size_t j = 0; j + 8 <= data.size(); j += 8) {
        const auto x = rng();
        std::memcpy(&data[j], &x, 8);
      }
    } else {
      // Text-like: lines of words from a small vocabulary (compresses about 4:1).
      static const char* words[] = {"package", "relay ", "agent ",   "chunk ",
                                    "install", "verify", "manifest", "\n"};
      std::size_t j = 0;
      while (j < data.size()) {
        const char* w = words[rng() % 8];
        for (const char* c = w; *c && j < data.size(); ++c) data[j++] = *c;
        if (j < data.size()) data[j++] = ' ';
      }
    }
    distrib::test::write_file(dir / ("part-" + std::to_string(i) + ".dat"), data);
  }
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int mib = argc > 1 ? std::atoi(argv[1]) : 512;
  const std::string tree = argc > 2 ? argv[2] : "";
  distrib::test::TempDir tmp;
  std::filesystem::path source = tree;
  if (tree.empty()) {
    source = tmp / "source";
    generate(source, mib);
  }
  ChunkStore store(tmp / "chunks");
  PackageSpec spec;
  spec.source_dir = source;
  spec.name = "scrubbed";
  spec.version = "1";
  const auto t0 = Clock::now();
  const auto manifest = create_package(spec, store);
  const double pack = seconds_since(t0);
  const auto held = store.list();
  std::uint64_t stored = 0;
  for (const auto& c : held) stored += c.second;
  std::printf("machine: %s\n", bench::machine().c_str());
  std::printf("store: %zu chunks, %.1f MB stored (%.1f MB payload), packaged in %.1f s\n", held.size(),
              static_cast<double>(stored) / 1e6, static_cast<double>(manifest.payload_size) / 1e6, pack);

  // Both read from the page cache: one warming pass first.
  const std::string files = "find " + (tmp / "chunks").string() + " -name '*.zst' -print0 | xargs -0 ";
  distrib::test::run({"sh", "-c", files + "cat > /dev/null"}, std::chrono::seconds(600));
  for (int round = 1; round <= 3; ++round) {
    auto t = Clock::now();
    const auto st = scrub_chunk_store(store, {});
    const double scrub = seconds_since(t);
    t = Clock::now();
    const auto r =
        distrib::test::run({"sh", "-c", files + "sha256sum > /dev/null"}, std::chrono::seconds(600));
    const double sum = seconds_since(t);
    const double scrub_mb = static_cast<double>(st.bytes_checked) / 1e6 / scrub;
    const double sum_mb = static_cast<double>(stored) / 1e6 / sum;
    std::printf(
        "RESULT round=%d chunks=%llu bad=%zu scrub_s=%.2f scrub_stored_mb_s=%.0f scrub_payload_mb_s=%.0f "
        "sha256sum_s=%.2f sha256sum_mb_s=%.0f ratio=%.2f%s\n",
        round, static_cast<unsigned long long>(st.chunks_checked), st.bad.size(), scrub, scrub_mb,
        static_cast<double>(st.raw_bytes_checked) / 1e6 / scrub, sum, sum_mb, scrub_mb / sum_mb,
        r.exit_code == 0 ? "" : " (sha256sum failed)");
  }
  // The online default pace, for the record: what a paced scrub of this store takes.
  ScrubOptions paced;
  paced.bytes_per_second = 64ull << 20;
  const auto t = Clock::now();
  const auto st = scrub_chunk_store(store, paced);
  std::printf("RESULT paced_64MiB_s seconds=%.1f stored_mb_s=%.0f\n", seconds_since(t),
              static_cast<double>(st.bytes_checked) / 1e6 / seconds_since(t));
  return 0;
}
