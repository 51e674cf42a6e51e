// Content delivery: admission and pacing of transfers, chunks (single and in segments), manifests.
#include "services/manager/content.h"

#include "content/frames.h"
#include "services/manager/content_health.h"
#include "services/manager/uplink.h"
#include "services/upstream.h"

namespace distrib::manager {

void Content::register_routes(Router& t) {
  t.add(Route{"POST", "/v1/content/chunks", Access::agent, bind(this, &Content::content_chunk_batch)});
  t.add(Route{"GET", "/v1/content/chunks/{digest}", Access::agent, bind(this, &Content::content_chunk)});
  t.add(Route{"GET", "/v1/content/manifests/{name}/{version}", Access::agent,
              bind(this, &Content::content_manifest)});
}

void Content::start() {
  timers_ = std::make_unique<TimerQueue>();
  if (const char* fault = std::getenv("DISTRIB_FAULT_CORRUPT_CHUNKS"); fault && *fault) {
    corrupt_left_ = std::atoll(fault);
    spdlog::warn("fault injection: the next {} chunk(s) served in batches are corrupted on purpose",
                 corrupt_left_.load());
  }
}

void Content::stop() {
  if (timers_) timers_->stop();
}

auto Content::counters() -> Counters {
  Counters c;
  {
    std::lock_guard lock(stats_mutex_);
    c.served_by = served_by_;
  }
  c.cache_hits = cache_hits_.load();
  c.cache_misses = cache_misses_.load();
  c.busy_answers = busy_answers_.load();
  std::lock_guard lock(transfer_mutex_);
  c.active_transfers = static_cast<std::int64_t>(active_transfers_.size());
  return c;
}

// Admission of a requester to fetch content. Empty: admitted. Otherwise seconds after which
// to come back (every slot is taken).
auto Content::admit(const std::string& requester) -> std::optional<int> {
  if (ctx_.settings.max_transfers <= 0 || requester.empty()) return std::nullopt;
  const auto now = Clock::now();
  const auto idle = std::chrono::seconds(ctx_.settings.transfer_idle_seconds);
  std::lock_guard lock(transfer_mutex_);
  std::erase_if(active_transfers_, [&](const auto& kv) { return now - kv.second > idle; });
  if (auto it = active_transfers_.find(requester); it != active_transfers_.end()) {
    it->second = now;
    return std::nullopt;
  }
  if (static_cast<int>(active_transfers_.size()) < ctx_.settings.max_transfers) {
    active_transfers_.emplace(requester, now);
    return std::nullopt;
  }
  // The slot idle the longest frees first; a little jitter spreads the returns.
  auto oldest = now;
  for (const auto& [h, t] : active_transfers_) oldest = std::min(oldest, t);
  const auto frees_in = std::chrono::duration_cast<std::chrono::seconds>(oldest + idle - now).count() + 1;
  const auto jitter = static_cast<int>(std::hash<std::string>{}(requester) % 3);
  return static_cast<int>(std::clamp<std::int64_t>(frees_in, 1, 5)) + jitter;
}

void Content::transfer_done(const std::string& requester) {
  std::lock_guard lock(transfer_mutex_);
  active_transfers_.erase(requester);
}

auto Content::busy_response(int seconds) -> HttpResponse {
  ++busy_answers_;
  auto res = json_response(
      429, bj::object{{"error", bj::object{{"kind", "busy"},
                                           {"message", "this server is serving its maximum of " +
                                                           std::to_string(ctx_.settings.max_transfers) +
                                                           " concurrent transfers; come back in " +
                                                           std::to_string(seconds) + " s"}}},
                      {"retry_after", seconds}});
  res.headers.emplace_back("Retry-After", std::to_string(seconds));
  return res;
}

// Answers once the requester's link has carried `bytes` at the configured rate (the bytes
// are paid for before they go, so a transfer's average rate is the limit, not above it).
void Content::send_paced(const std::string& requester, std::uint64_t bytes, std::shared_ptr<Responder> r,
                         HttpResponse res) {
  if (ctx_.settings.rate_limit_per_host == 0 || !timers_) {
    (*r)(std::move(res));
    return;
  }
  const auto now = Clock::now();
  Clock::time_point release;
  {
    std::lock_guard lock(transfer_mutex_);
    auto& free_at = link_free_[requester];
    // A link idle for a moment (the requester's round trip between two batches) may use up
    // to 100 ms of the time it did not use, so round trips do not lower the rate.
    const auto start = std::max(now - std::chrono::milliseconds(100), free_at);
    free_at = start +
              std::chrono::nanoseconds(static_cast<std::int64_t>(
                  static_cast<double>(bytes) * 1e9 / static_cast<double>(ctx_.settings.rate_limit_per_host)));
    release = free_at;
  }
  timers_->at(release, [r, res = std::move(res)]() mutable { (*r)(std::move(res)); });
}

void Content::count_served(const std::string& requester, std::uint64_t chunk_count, std::uint64_t bytes) {
  std::lock_guard lock(stats_mutex_);
  auto& s = served_by_[requester.empty() ? "unknown" : requester];
  s.chunks += chunk_count;
  s.bytes += bytes;
}

// One chunk, verified, paced for the requester. A relay without it (or whose copy was corrupt:
// quarantined now) fetches it from its parent once, however many ask meanwhile; elsewhere 404.
void Content::serve_chunk(const std::string& digest, const std::string& requester,
                          std::shared_ptr<Responder> r, bool after_upstream) {
  ctx_.pool->submit([this, digest, requester, r, after_upstream] {
    try {
      auto bytes = health_.read(digest);
      auto* upstream = uplink_.chunk_source();
      if (!bytes && upstream && !after_upstream) {
        ++cache_misses_;
        upstream->fetch(digest, [this, r, digest, requester](const std::string& error) {
          if (!error.empty()) {
            (*r)(error_response(Error(ErrorKind::unavailable, "chunk " + digest +
                                                                  " is not available from this relay's "
                                                                  "parent yet: " +
                                                                  error + "; retry later")));
            return;
          }
          serve_chunk(digest, requester, r, true);
          uplink_.content_arrived();
        });
        return;
      }
      if (!bytes)
        throw Error(ErrorKind::not_found, "chunk " + digest + " is not in this server's content store");
      if (!after_upstream) ++cache_hits_;
      HttpResponse res;
      res.content_type = "application/zstd";
      res.body = *bytes;
      count_served(requester, 1, bytes->size());
      send_paced(requester, bytes->size(), r, std::move(res));
    } catch (const Error& e) {
      (*r)(error_response(e));
    } catch (const std::exception& e) {
      (*r)(error_response(Error(ErrorKind::internal, e.what())));
    }
  });
}

// Answers a batch: frames "<digest> <length>\n<compressed bytes>" for a prefix of `digests`
// (all of them unless the link's rate limit or the batch size cuts it short). A relay fetches
// what it lacks from its parent first.
void Content::serve_batch(std::string requester, std::vector<std::string> digests,
                          std::shared_ptr<Responder> r, bool after_upstream) {
  ctx_.pool->submit([this, requester = std::move(requester), digests = std::move(digests), r,
                     after_upstream] {
    try {
      const std::uint64_t budget = ctx_.settings.rate_limit_per_host
                                       ? std::max<std::uint64_t>(1, ctx_.settings.rate_limit_per_host / 2)
                                       : kMaxBatchBytes;
      std::vector<std::string> missing;
      for (const auto& d : digests)
        if (!ctx_.chunks->contains(d)) missing.push_back(d);
      // Each chunk is verified as it is read, as far as the batch goes; one found corrupt
      // (quarantined then) is missing: the chunks before it go now, the requester asks again.
      std::vector<ByteCache::Bytes> held;
      std::uint64_t held_bytes = 0;
      for (const auto& d : digests) {
        if (!missing.empty()) break;
        auto bytes = health_.read(d);
        if (!bytes) {
          if (held.empty()) missing.push_back(d);
          break;
        }
        if (!held.empty() && held_bytes + bytes->size() > budget) break;
        held_bytes += bytes->size();
        held.push_back(std::move(bytes));
      }
      if (!missing.empty()) {
        const auto more = missing.size() > 1 ? " (and " + std::to_string(missing.size() - 1) + " more)" : "";
        auto* upstream = uplink_.chunk_source();
        if (!upstream)
          throw Error(
              ErrorKind::not_found,
              "chunk " + short_digest(missing.front()) + more +
                  " is not in this server's content store (missing, or corrupt and quarantined: see "
                  "its content.corrupt events); upload the package again with distribctl package create");
        if (after_upstream)
          throw Error(ErrorKind::unavailable,
                      "chunk " + short_digest(missing.front()) + more +
                          " left this relay's cache while it was being served; retry");
        cache_misses_ += missing.size();
        // Fetched from the parent in segments too, not a request per chunk.
        upstream->fetch_many(missing, [this, requester, digests, r](const std::string& error) {
          if (!error.empty()) {
            (*r)(error_response(
                Error(ErrorKind::unavailable, error + " (from this relay's parent); retry later")));
            return;
          }
          serve_batch(requester, digests, r, true);
          uplink_.content_arrived();
        });
        return;
      }
      if (!after_upstream) cache_hits_ += digests.size();
      // Frames as a gather list: each head, then the verified bytes as the cache holds them.
      HttpResponse res;
      res.parts.reserve(2 * held.size());
      std::size_t n = 0;
      std::uint64_t bytes_total = 0;
      for (std::size_t i = 0; i < held.size(); ++i) {
        auto bytes = held[i];
        if (corrupt_left_.load() > 0 && corrupt_left_.fetch_sub(1) > 0 && !bytes->empty()) {
          auto spoiled = std::make_shared<std::string>(*bytes);  // a test's bad byte, never the cache's
          (*spoiled)[spoiled->size() / 2] = static_cast<char>((*spoiled)[spoiled->size() / 2] ^ 0x5a);
          bytes = std::move(spoiled);
        }
        res.parts.push_back(std::make_shared<const std::string>(chunk_frame_head(digests[i], bytes->size())));
        bytes_total += bytes->size();
        res.parts.push_back(std::move(bytes));
        ++n;
      }
      count_served(requester, n, bytes_total);
      res.content_type = "application/x-distrib-chunks";
      res.headers.emplace_back("X-Distrib-Chunks", std::to_string(n));
      send_paced(requester, bytes_total, r, std::move(res));
    } catch (const Error& e) {
      (*r)(error_response(e));
    } catch (const std::exception& e) {
      (*r)(error_response(Error(ErrorKind::internal, e.what())));
    }
  });
}

void Content::content_chunk_batch(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  const auto requester = ctx_.callers.requester(req, json::get_string(body, "host_id", false));
  auto digests = json::get_string_array(body, "digests");
  if (digests.empty() || digests.size() > kMaxBatchChunks)
    throw Error(ErrorKind::invalid_argument,
                "digests must list between 1 and " + std::to_string(kMaxBatchChunks) + " chunk digests");
  for (const auto& d : digests)
    if (!is_sha256_hex(d)) throw Error(ErrorKind::invalid_argument, "\"" + d + "\" is not a chunk digest");
  if (auto wait = admit(requester)) {
    r(busy_response(*wait));
    return;
  }
  serve_batch(requester, std::move(digests), std::make_shared<Responder>(std::move(r)), false);
  return;
}

void Content::content_chunk(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto& digest = p[3];
  if (!is_sha256_hex(digest))
    throw Error(ErrorKind::invalid_argument, "\"" + digest + "\" is not a chunk digest");
  const auto requester = ctx_.callers.requester(req, req.query["host_id"]);
  if (auto wait = admit(requester)) {
    r(busy_response(*wait));
    return;
  }
  serve_chunk(digest, requester, std::make_shared<Responder>(std::move(r)), false);
}

// A package's manifest goes to an agent with an open entry for it, or to a relay (which caches
// for its subtree and pre-stages packages). Its chunks are named by their digests, which only the
// manifest tells.
void Content::content_manifest(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto caller = ctx_.callers.of(req);
  return ctx_.blocking(std::move(r), [this, caller, name = p[3], version = p[4]] {
    if (caller && caller->role == "agent" && !has_open_entry(caller->host_id, name, version))
      throw Error(ErrorKind::forbidden,
                  "host " + caller->host_id + " has no open entry for package \"" + name + "\" " + version);
    auto m = uplink_.manifest(name, version, true);
    if (!m) throw Error(ErrorKind::not_found, "package \"" + name + "\" " + version + " does not exist");
    return json_response(200, json::to_json(*m));
  });
}

bool Content::has_open_entry(const std::string& host_id, const std::string& name,
                             const std::string& version) {
  for (const auto& e : ctx_.store->open_entries_for_host(host_id)) {
    const auto job = ctx_.store->find_job(e.job_id);
    if (job && job->package_name == name && job->package_version == version) return true;
  }
  return false;
}

}  // namespace distrib::manager
