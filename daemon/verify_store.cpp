// distribd --verify-store: the offline scrub.
#include "verify_store.h"

#include <distrib/content/chunk_store.h>
#include <distrib/content/scrub.h>
#include <distrib/model/units.h>

#include <unistd.h>
#include <cstdio>
#include <iostream>

int verify_store(const std::filesystem::path& state_dir, distrib::Store* store, bool partial_cache) {
  distrib::ChunkStore chunks(state_dir / "chunks");
  distrib::ScrubOptions opts;
  const bool tty = ::isatty(STDERR_FILENO);
  opts.progress = [tty](const distrib::ScrubStatus& st) {
    const auto total = std::max<std::uint64_t>(1, st.bytes_total);
    std::fprintf(stderr,
                 tty ? "\rverifying: %llu of %llu chunk(s), %s of %s (%llu%%), %zu bad\033[K"
                     : "verifying: %llu of %llu chunk(s), %s of %s (%llu%%), %zu bad\n",
                 static_cast<unsigned long long>(st.chunks_checked),
                 static_cast<unsigned long long>(st.chunks_total),
                 distrib::format_byte_size(st.bytes_checked).c_str(),
                 distrib::format_byte_size(st.bytes_total).c_str(),
                 static_cast<unsigned long long>(100 * st.bytes_checked / total), st.bad.size());
  };
  opts.on_bad = [](const std::string& digest, const std::string& why) {
    std::fprintf(stderr, "\nbad: %s: %s (moved to the quarantine)\n", digest.c_str(), why.c_str());
  };
  const auto st = distrib::scrub_chunk_store(chunks, opts);
  if (tty) std::fprintf(stderr, "\n");
  const double mb = static_cast<double>(st.bytes_checked) / 1e6;
  std::cout << st.chunks_checked << " chunk(s) checked, " << distrib::format_byte_size(st.bytes_checked)
            << " stored (" << distrib::format_byte_size(st.raw_bytes_checked) << " uncompressed) in "
            << st.seconds << " s (" << (st.seconds > 0 ? mb / st.seconds : 0.0) << " MB/s); " << st.bad.size()
            << " bad\n";
  bool whole = st.bad.empty();
  if (store) {
    const auto check = distrib::check_manifests(chunks, *store, partial_cache);
    const auto shown = check.problems.size();
    if (shown) whole = false;
    for (const auto& p : check.problems) {
      std::cout << "package " << p.name << " " << p.version << ": "
                << (p.invalid.empty() ? std::to_string(p.missing.size()) + " chunk(s) missing or corrupt"
                                      : "manifest not valid: " + p.invalid)
                << "\n";
    }
    std::cout << check.packages << " package(s) checked, " << shown << " incomplete";
    if (shown && !partial_cache)
      std::cout << "; run distribctl package create again for each (only what is missing is uploaded)";
    std::cout << "\n";
    if (!st.bad.empty() && partial_cache)
      std::cout << "the relay fetches the bad chunks again from its parent when they are asked for\n";
  }
  return whole ? 0 : 1;
}
