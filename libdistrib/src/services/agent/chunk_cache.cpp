// The agent's chunk store kept within its limit.
#include "services/agent/chunk_cache.h"

#include <algorithm>

namespace distrib::agent {

auto ChunkCache::trim(const InstalledSet& installed, const Manifest* in_flight) -> Trimmed {
  Trimmed out;
  if (ctx_.settings.chunk_cache_limit == UINT64_MAX) return out;
  std::set<std::string> keep, needed;
  std::uint64_t largest = 0;
  for (const auto& p : installed.all()) {
    needed.insert(p.chunks.begin(), p.chunks.end());
    largest = std::max(largest, p.payload_size);
  }
  if (in_flight) {
    for (const auto& c : in_flight->chunks) keep.insert(c.digest);
    largest = std::max(largest, in_flight->payload_size);
  }
  out.limit = ctx_.settings.chunk_cache_limit ? ctx_.settings.chunk_cache_limit : 2 * largest;
  struct Held {
    std::string digest;
    std::uint64_t size;
    stdfs::file_time_type at;
    bool needed;
  };
  std::vector<Held> held;
  for (const auto& [digest, size] : ctx_.chunks->list()) {
    out.held += size;
    if (keep.count(digest)) continue;
    std::error_code ec;
    const auto at = stdfs::last_write_time(ctx_.chunks->path_of(digest), ec);
    held.push_back({digest, size, at, needed.count(digest) > 0});
  }
  if (out.held <= out.limit) return out;
  // Unneeded first, then installed packages' chunks; oldest first within each.
  std::sort(held.begin(), held.end(),
            [](const Held& a, const Held& b) { return a.needed != b.needed ? !a.needed : a.at < b.at; });
  for (const auto& h : held) {
    if (out.held <= out.limit) break;
    ctx_.chunks->remove(h.digest);
    out.held -= std::min(out.held, h.size);
    out.bytes += h.size;
    ++out.chunks;
  }
  if (out.chunks)
    spdlog::info("chunk cache: {} chunk(s), {} removed; {} held (limit {})", out.chunks,
                 format_byte_size(out.bytes), format_byte_size(out.held), format_byte_size(out.limit));
  if (out.held > out.limit)
    spdlog::warn("chunk cache holds {}, over its limit of {}: the package being installed needs it",
                 format_byte_size(out.held), format_byte_size(out.limit));
  return out;
}

}  // namespace distrib::agent
