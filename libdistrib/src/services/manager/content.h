#pragma once
// Delivery of content to hosts below: admission and pacing of transfers, single chunks and segments of
// many (every byte verified, through ContentHealth: its memory cache or the disk), manifests, and the
// counters of what was served. At a relay, chunks missing here (or found corrupt) come from the
// parent first.
#include "services/manager/common.h"

#include "util/timer_queue.h"

#include <optional>
#include <unordered_map>

namespace distrib::manager {

class Uplink;
class ContentHealth;

class Content {
 public:
  Content(Context& ctx, Uplink& uplink, ContentHealth& health)
      : ctx_(ctx), uplink_(uplink), health_(health) {}
  void register_routes(Router& t);
  void start();
  void stop();

  /// The requester's transfer is over: its admission slot frees.
  void transfer_done(const std::string& requester);

  struct Served {
    std::uint64_t chunks = 0, bytes = 0;
  };
  struct Counters {
    std::map<std::string, Served> served_by;
    std::uint64_t cache_hits = 0, cache_misses = 0, busy_answers = 0;
    std::int64_t active_transfers = 0;
  };
  /// What was served so far (GET /v1/stats, /metrics).
  Counters counters();

  /// A segment lists at most this many chunks and is cut at this many bytes.
  static constexpr std::size_t kMaxBatchChunks = 4096;
  static constexpr std::uint64_t kMaxBatchBytes = 32ull << 20;

 private:
  bool has_open_entry(const std::string& host_id, const std::string& name, const std::string& version);
  std::optional<int> admit(const std::string& requester);
  HttpResponse busy_response(int seconds);
  void send_paced(const std::string& requester, std::uint64_t bytes, std::shared_ptr<Responder> r,
                  HttpResponse res);
  void count_served(const std::string& requester, std::uint64_t chunk_count, std::uint64_t bytes);
  void serve_chunk(const std::string& digest, const std::string& requester, std::shared_ptr<Responder> r,
                   bool after_upstream);
  void serve_batch(std::string requester, std::vector<std::string> digests, std::shared_ptr<Responder> r,
                   bool after_upstream);
  void content_chunk_batch(HttpRequest&& req, Responder& r, const PathSegments&);
  void content_chunk(HttpRequest&& req, Responder& r, const PathSegments& p);
  void content_manifest(HttpRequest&&, Responder& r, const PathSegments& p);

  Context& ctx_;
  Uplink& uplink_;
  ContentHealth& health_;
  std::unique_ptr<TimerQueue> timers_;
  std::mutex stats_mutex_;
  std::map<std::string, Served> served_by_;
  std::atomic<std::uint64_t> cache_hits_{0}, cache_misses_{0}, busy_answers_{0};
  std::mutex transfer_mutex_;
  std::unordered_map<std::string, Clock::time_point> active_transfers_;  // requester → last request
  std::unordered_map<std::string, Clock::time_point> link_free_;  // requester → when its link is free
  // Fault injection for tests of the receivers' verification: the next N chunks served in
  // segments are corrupted on the wire (DISTRIB_FAULT_CORRUPT_CHUNKS).
  std::atomic<std::int64_t> corrupt_left_{0};
};

}  // namespace distrib::manager
