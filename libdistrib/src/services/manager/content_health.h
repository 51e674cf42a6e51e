#pragma once
// The health of the content this server holds. Every chunk is verified when it is read from disk
// for serving; the memory cache holds only bytes that passed, and forgets a chunk the moment it is
// replaced or found bad. A corrupt chunk is quarantined (ChunkStore::quarantine), counted, and
// told as a `content.corrupt` event; it then counts as missing: a relay fetches it again from its
// parent, the top manager names it missing to the packager (`package create` uploads it again).
// Hosts below report chunks that reached them bad (POST /v1/content/bad-chunks): the copy here is
// verified again before anyone else gets it. And the scrub: every stored chunk and manifest
// checked, online and paced (POST/GET /v1/content/verify), with repair at a relay.
#include "services/manager/common.h"

#include <distrib/content/scrub.h>

#include "util/byte_cache.h"

#include <condition_variable>
#include <thread>

namespace distrib::manager {

class Uplink;

class ContentHealth {
 public:
  ContentHealth(Context& ctx, Uplink& uplink)
      : ctx_(ctx), uplink_(uplink), hot_(std::make_unique<ByteCache>(ctx.settings.memory_cache_bytes)) {}
  ~ContentHealth() { stop(); }
  void register_routes(Router& t);
  /// Ends a scrub under way (joins its thread).
  void stop();

  /// The compressed bytes of a chunk, verified: from the memory cache, or read from disk and
  /// checked. Null when this server does not hold it, or held it corrupt (quarantined now).
  /// Blocking (disk and CPU): call off the network threads.
  ByteCache::Bytes read(const std::string& digest);
  /// Verifies the stored copy again now (the memory cache's copy is dropped first). False when it
  /// is missing or was corrupt (and is quarantined now).
  bool reverify(const std::string& digest);
  /// A chunk's file was written anew: the memory cache drops its copy.
  void replaced(const std::string& digest);

  /// Verification failures by where they were found ("manager", "relay", "agent") and whose
  /// copy it was (this server's store: "store"; a host below: its name).
  std::map<std::pair<std::string, std::string>, std::uint64_t> failures();
  std::uint64_t quarantined() const noexcept { return quarantined_; }

 private:
  void corrupt(const std::string& digest, const std::string& why);
  void count_failure(const std::string& tier, const std::string& peer, std::uint64_t n = 1);
  void bad_chunks(HttpRequest&& req, Responder& r, const PathSegments&);
  void verify_start(HttpRequest&& req, Responder& r, const PathSegments&);
  void verify_status(HttpRequest&&, Responder& r, const PathSegments&);
  bj::object scrub_json();
  void run_scrub(bool repair, std::uint64_t rate);

  Context& ctx_;
  Uplink& uplink_;
  std::unique_ptr<ByteCache> hot_;  // verified compressed chunks recently served
  std::atomic<std::uint64_t> quarantined_{0};
  std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> failures_;
  std::map<std::string, Clock::time_point> reverified_;  // digest → last re-verification on a report

  // The online scrub (one at a time, on its own thread).
  std::thread scrub_thread_;
  std::atomic<bool> scrub_stop_{false};
  struct ScrubState {
    bool running = false, repair = false;
    std::int64_t started_at = 0, finished_at = 0;
    ScrubStatus status;
    std::vector<ManifestProblem> packages;  // manifests naming chunks not held (after repair)
    std::uint64_t repaired = 0;
    std::string error;
  } scrub_;
};

}  // namespace distrib::manager
