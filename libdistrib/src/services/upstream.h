#pragma once
// A relay's way to its parent's content: each missing chunk is fetched once, however many
// requesters ask for it at the same time (single flight), verified and stored before anyone is
// answered.
#include "services/parent_link.h"
#include "util/blocking_pool.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace distrib {

class ChunkStore;

class UpstreamFetcher {
 public:
  /// `host_id` names this relay in the parent's counters.
  UpstreamFetcher(ChunkStore& chunks, ParentLink& link, std::string host_id, int threads);
  ~UpstreamFetcher();
  UpstreamFetcher(const UpstreamFetcher&) = delete;
  UpstreamFetcher& operator=(const UpstreamFetcher&) = delete;

  /// Called once with an empty string when the chunk is in the store, or with the reason it is not.
  using Done = std::function<void(const std::string& error)>;
  /// Fetches `digest` unless a fetch of it is already under way, in which case `done` joins it.
  void fetch(const std::string& digest, Done done);
  /// Fetches `digests` in segments (POST /v1/content/chunks, as agents do: one request brings
  /// many chunks) and calls `done` once with the first failure, or "" when all are stored. A
  /// digest already being fetched is joined; a chunk a segment does not bring, or brings bad, is
  /// fetched alone.
  void fetch_many(const std::vector<std::string>& digests, Done done);
  /// Chunks asked for in one request to the parent.
  static constexpr std::size_t kSegmentChunks = 32;
  /// Fetches every digest not already stored, several at a time; throws Error naming the first
  /// failure. Must not be called from a fetch thread.
  void fetch_all(const std::vector<std::string>& digests);
  /// GETs `target` from the current parent; throws Error (not_found for 404) on any failure.
  std::string get(const std::string& target);
  /// Aborts fetches under way and joins the threads. Idempotent.
  void stop();

  std::uint64_t fetches() const noexcept { return fetches_; }
  std::uint64_t bytes() const noexcept { return bytes_; }
  std::uint64_t joined() const noexcept { return joined_; }
  /// Chunks that arrived from the parent and failed verification.
  std::uint64_t bad() const noexcept { return bad_; }

 private:
  std::unique_ptr<ClientSet> checkout();
  void checkin(std::unique_ptr<ClientSet> c);
  void run_fetch(const std::string& digest);
  void run_segments(const std::vector<std::string>& digests);
  std::string call(const std::string& method, const std::string& target, const std::string& body);
  void report_bad(const std::string& digest);

  ChunkStore& chunks_;
  ParentLink& link_;
  std::string host_id_;
  std::mutex mutex_;
  std::map<std::string, std::vector<Done>> inflight_;
  std::vector<std::unique_ptr<ClientSet>> idle_;
  std::vector<ClientSet*> busy_;
  bool stopping_ = false;
  std::atomic<std::uint64_t> fetches_{0}, bytes_{0}, joined_{0}, bad_{0};
  BlockingPool pool_;
};

}  // namespace distrib
