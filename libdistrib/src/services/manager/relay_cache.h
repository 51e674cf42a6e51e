#pragma once
// A relay's content cache: chunks fetched from the parent on demand (the upstream fetcher), manifests
// fetched on demand, eviction by age and by size on its own thread.
#include "services/manager/common.h"

#include "services/parent_link.h"
#include "services/upstream.h"

#include <condition_variable>
#include <optional>
#include <thread>

namespace distrib::manager {

class RelayCache {
 public:
  RelayCache(Context& ctx, ParentLink& link) : ctx_(ctx), link_(link) {}
  ~RelayCache() { stop(); }
  void start();
  void stop();

  /// Fetches chunks this relay lacks from its parent (null before start).
  UpstreamFetcher* upstream() noexcept { return upstream_.get(); }
  /// The package's manifest, fetched from the parent and recorded here when missing.
  std::optional<Manifest> ensure_manifest(const std::string& name, const std::string& version);
  /// Content arrived: check the cache limit soon (on the maintenance thread).
  void maybe_maintain();
  struct Freed {
    std::size_t chunks = 0;
    std::uint64_t bytes = 0;
  };
  /// Removes the package's chunks that no other cached package uses.
  Freed remove_package_chunks(const Manifest& gone);

 private:
  std::optional<Freed> evict(const PackageSummary& p, const char* why);
  std::uint64_t cache_bytes() const;
  void maintain_cache();
  void loop();

  Context& ctx_;
  ParentLink& link_;
  std::unique_ptr<UpstreamFetcher> upstream_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool wanted_ = false;
  bool stopping_ = false;
};

}  // namespace distrib::manager
