#pragma once
// Packages as the packager uploads them: which chunks are missing, chunk uploads, registering a
// package, and the package list and details; and what uploads leave behind: chunks no registered
// package uses, and temporary files of writes that never finished, are removed once older than
// ManagerSettings::orphan_chunk_seconds (an upload that failed half-way, a package never registered).
#include "services/manager/common.h"

#include "util/timer_queue.h"

#include <set>

namespace distrib::manager {

class ContentHealth;

class Packages {
 public:
  /// A chunk batch (POST /v1/chunks/batch): at most this many chunks and bytes.
  static constexpr std::size_t kMaxBatchChunks = 4096;
  static constexpr std::uint64_t kMaxBatchBytes = 48ull << 20;

  Packages(Context& ctx, ContentHealth& health) : ctx_(ctx), health_(health) {}
  void register_routes(Router& t);
  void start();
  void stop();

  /// The chunks the registered packages use.
  static std::set<std::string> chunks_in_use(Store& store);
  struct Swept {
    std::uint64_t files = 0, bytes = 0;
  };
  /// Removes chunks no registered package uses and unfinished temporary files, both when older
  /// than `older_than_seconds` (by modification time).
  Swept sweep(std::int64_t older_than_seconds);

 private:
  void schedule(std::chrono::seconds after);
  void chunks_missing(HttpRequest&& req, Responder& r, const PathSegments&);
  void chunk_upload(HttpRequest&& req, Responder& r, const PathSegments& p);
  void chunk_batch(HttpRequest&& req, Responder& r, const PathSegments&);
  void package_list(HttpRequest&&, Responder& r, const PathSegments&);
  void package_register(HttpRequest&& req, Responder& r, const PathSegments&);
  void package_show(HttpRequest&&, Responder& r, const PathSegments& p);

  Context& ctx_;
  ContentHealth& health_;
  std::unique_ptr<TimerQueue> timers_;
  // Held while deciding that chunks are present and registering the package, and while deciding
  // that chunks are unused and removing them: the sweep never removes a chunk a package being
  // registered counted on.
  std::mutex chunks_mutex_;
};

}  // namespace distrib::manager
