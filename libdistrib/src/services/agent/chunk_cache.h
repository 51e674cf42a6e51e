#pragma once
// The agent's chunk store kept within a limit (AgentSettings::chunk_cache_limit; by default twice
// the largest package held). Chunks no installed or in-flight package needs go first, oldest
// first; then, when that is not enough, the oldest chunks of installed packages (a repair fetches
// them again). The package being installed is never trimmed.
#include "services/agent/context.h"
#include "services/agent/installed.h"

namespace distrib::agent {

class ChunkCache {
 public:
  explicit ChunkCache(Context& ctx) : ctx_(ctx) {}

  struct Trimmed {
    std::size_t chunks = 0;
    std::uint64_t bytes = 0;  ///< removed
    std::uint64_t held = 0;   ///< left
    std::uint64_t limit = 0;
  };
  /// Trims the store to the limit, keeping first what `installed` needs. `in_flight`: the
  /// package being installed (kept whole, and counted in the default limit).
  Trimmed trim(const InstalledSet& installed, const Manifest* in_flight = nullptr);

 private:
  Context& ctx_;
};

}  // namespace distrib::agent
