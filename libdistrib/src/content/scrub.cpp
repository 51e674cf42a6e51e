// Scrubbing a chunk store: read back, verify, quarantine; manifests against the chunks held.
#include <distrib/content/packager.h>
#include <distrib/content/scrub.h>
#include <distrib/error.h>

#include <chrono>
#include <set>
#include <thread>

namespace distrib {

ScrubStatus scrub_chunk_store(ChunkStore& store, const ScrubOptions& options) {
  using Clock = std::chrono::steady_clock;
  ScrubStatus st;
  const auto chunks = store.list();
  st.chunks_total = chunks.size();
  for (const auto& c : chunks) st.bytes_total += c.second;
  const auto start = Clock::now();
  auto reported = start;
  const auto report = [&](bool last) {
    st.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (!options.progress) return;
    if (!last && Clock::now() - reported < std::chrono::milliseconds(200)) return;
    reported = Clock::now();
    options.progress(st);
  };
  for (const auto& [digest, size] : chunks) {
    if (options.stopping && options.stopping()) {
      st.stopped = true;
      break;
    }
    std::string compressed;
    try {
      compressed = store.read_compressed(digest);
    } catch (const Error&) {
      continue;  // gone since it was listed (replaced, evicted): nothing to check
    }
    try {
      st.raw_bytes_checked += verify_chunk(digest, compressed, kMaxChunkSize);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::integrity) throw;
      if (options.quarantine) store.quarantine(digest);
      st.bad.push_back(digest);
      if (options.on_bad) options.on_bad(digest, e.what());
    }
    ++st.chunks_checked;
    st.bytes_checked += compressed.size();
    if (options.bytes_per_second > 0) {
      // Paced: never ahead of the rate since the start.
      const auto due = start + std::chrono::nanoseconds(
                                   static_cast<std::int64_t>(static_cast<double>(st.bytes_checked) * 1e9 /
                                                             static_cast<double>(options.bytes_per_second)));
      const auto now = Clock::now();
      if (due > now)
        std::this_thread::sleep_for(std::min<Clock::duration>(due - now, std::chrono::seconds(5)));
    }
    report(false);
  }
  report(true);
  return st;
}

ManifestCheck check_manifests(const ChunkStore& store, PackageStore& packages, bool partial_cache) {
  ManifestCheck out;
  for (const auto& summary : packages.list_packages()) {
    const auto m = packages.find_package(summary.name, summary.version);
    if (!m) continue;  // deleted since it was listed
    ++out.packages;
    ManifestProblem p{m->name, m->version, {}, {}};
    try {
      validate_manifest(*m);
    } catch (const Error& e) {
      p.invalid = e.what();
    }
    std::set<std::string> seen;
    if (!partial_cache)
      for (const auto& c : m->chunks)
        if (seen.insert(c.digest).second && !store.contains(c.digest)) p.missing.push_back(c.digest);
    if (!p.invalid.empty() || !p.missing.empty()) out.problems.push_back(std::move(p));
  }
  return out;
}

}  // namespace distrib
