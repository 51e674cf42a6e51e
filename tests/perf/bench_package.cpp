// Packaging at disk speed: `distribctl package create` (walk, tar, content-defined chunks,
// SHA-256 and zstd on every core, missing-chunk checks, batched uploads over TLS to a manager on
// the same machine, which verifies and stores them) against the plain
// `tar -cf - DIR | zstd -T0 -3 > /dev/null` of the same tree, in the same run.
//
// Trees: 1 GiB of random data (16 files of 64 MiB: nothing to compress, nothing shared), and a
// real tree (default /usr/include/boost, 180 MiB of headers: /usr/include itself holds a symlink
// out of the tree, which packages refuse). Each is packaged twice: to a manager that holds none
// of its chunks, then again (everything held: the missing-chunk check alone).
//
// usage: bench_package [RANDOM_MIB=1024] [TREE=/usr/include/boost]
#include "bench_common.h"
#include "harness.h"

#include <distrib/content/chunk_store.h>
#include <distrib/content/packager.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>

using namespace distrib;
using namespace distrib::test;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double mib_of(const stdfs::path& dir) {
  std::uintmax_t total = 0;
  for (const auto& e :
       stdfs::recursive_directory_iterator(dir, stdfs::directory_options::skip_permission_denied))
    if (e.is_regular_file() && !e.is_symlink()) total += e.file_size();
  return static_cast<double>(total) / (1 << 20);
}

void make_random_tree(const stdfs::path& dir, int mib) {
  stdfs::create_directories(dir);
  std::mt19937_64 rng(42);
  std::vector<std::uint64_t> block(1 << 17);  // 1 MiB
  const int files = std::max(1, mib / 64);
  for (int f = 0; f < files; ++f) {
    std::ofstream out(dir / ("data" + std::to_string(f) + ".bin"), std::ios::binary);
    for (int m = 0; m < mib / files; ++m) {
      for (auto& w : block) w = rng();
      out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(block.size() * 8));
    }
  }
}

struct Figures {
  double tar_s = 0, package_s = 0, again_s = 0, local_s = 0, mib = 0;
};

Figures measure(const std::string& label, const stdfs::path& tree, TempDir& tmp) {
  Figures f;
  f.mib = mib_of(tree);
  // Read once so both sides start from the page cache.
  run({"/bin/sh", "-c", "tar -cf - -C '" + tree.string() + "' . > /dev/null"}, std::chrono::seconds(600));

  auto t0 = Clock::now();
  const auto tar =
      run({"/bin/sh", "-c", "tar -cf - -C '" + tree.string() + "' . | zstd -T0 -3 -q > /dev/null"},
          std::chrono::seconds(600));
  f.tar_s = seconds_since(t0);
  if (tar.exit_code != 0) throw std::runtime_error("tar | zstd failed: " + tar.err);

  // The packager alone, into a spool as distribctl uses (no manager).
  {
    ChunkSpool scratch(tmp / ("scratch-" + label));
    PackageSpec spec;
    spec.name = "local";
    spec.version = "1";
    spec.source_dir = tree;
    spec.install.command = "true";
    t0 = Clock::now();
    const auto m = create_package(spec, scratch);
    f.local_s = seconds_since(t0);
    std::printf("  packager alone: %zu chunks in %.2f s\n", m.chunks.size(), f.local_s);
  }

  ManagerProc m(tmp / ("manager-" + label), {"--log-level", "warn"});
  const std::vector<std::string> create = {"package",   "create", tree.string(),       "--name", label,
                                           "--version", "1",      "--install-command", "true"};
  t0 = Clock::now();
  const auto first = m.ctl(create, false, std::chrono::seconds(1200));
  f.package_s = seconds_since(t0);
  if (first.exit_code != 0) throw std::runtime_error("package create: " + first.err + first.out);
  auto again_args = create;
  again_args[6] = "2";
  t0 = Clock::now();
  const auto again = m.ctl(again_args, false, std::chrono::seconds(1200));
  f.again_s = seconds_since(t0);
  if (again.exit_code != 0) throw std::runtime_error("package create again: " + again.err + again.out);
  std::printf(
      "  %s: %.0f MiB; tar | zstd -T0 -3: %.2f s (%.0f MiB/s); distribctl package create: %.2f s (%.0f "
      "MiB/s); "
      "again, every chunk held: %.2f s\n",
      label.c_str(), f.mib, f.tar_s, f.mib / f.tar_s, f.package_s, f.mib / f.package_s, f.again_s);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const int random_mib = argc > 1 ? std::atoi(argv[1]) : 1024;
  const stdfs::path tree = argc > 2 ? argv[2] : "/usr/include/boost";
  std::printf("machine: %s\n", bench::machine().c_str());
  try {
    TempDir tmp;
    make_random_tree(tmp / "random", random_mib);
    for (const auto& [label, dir] :
         std::vector<std::pair<std::string, stdfs::path>>{{"random", tmp / "random"}, {"tree", tree}}) {
      std::printf("%s (%s):\n", label.c_str(), dir.c_str());
      const auto f = measure(label, dir, tmp);
      std::printf(
          "RESULT package %s mib=%.0f tar_zstd_s=%.2f package_create_s=%.2f again_s=%.2f "
          "packager_alone_s=%.2f "
          "ratio=%.2f\n",
          label.c_str(), f.mib, f.tar_s, f.package_s, f.again_s, f.local_s, f.tar_s / f.package_s);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_package: %s\n", e.what());
    return 1;
  }
  return 0;
}
