// Content service: admission and pacing of transfers, chunks (single and in segments), manifests, chunk
// uploads and package registration.
#include "services/manager/impl.h"

namespace distrib {

// Admission of a requester to fetch content. Empty: admitted. Otherwise seconds after which
// to come back (every slot is taken).
auto Manager::Impl::admit(const std::string& requester) -> std::optional<int> {
  if (settings.max_transfers <= 0 || requester.empty()) return std::nullopt;
  const auto now = Clock::now();
  const auto idle = std::chrono::seconds(settings.transfer_idle_seconds);
  std::lock_guard lock(transfer_mutex);
  std::erase_if(active_transfers, [&](const auto& kv) { return now - kv.second > idle; });
  if (auto it = active_transfers.find(requester); it != active_transfers.end()) {
    it->second = now;
    return std::nullopt;
  }
  if (static_cast<int>(active_transfers.size()) < settings.max_transfers) {
    active_transfers.emplace(requester, now);
    return std::nullopt;
  }
  // The slot idle the longest frees first; a little jitter spreads the returns.
  auto oldest = now;
  for (const auto& [h, t] : active_transfers) oldest = std::min(oldest, t);
  const auto frees_in = std::chrono::duration_cast<std::chrono::seconds>(oldest + idle - now).count() + 1;
  const auto jitter = static_cast<int>(std::hash<std::string>{}(requester) % 3);
  return static_cast<int>(std::clamp<std::int64_t>(frees_in, 1, 5)) + jitter;
}

void Manager::Impl::transfer_done(const std::string& requester) {
  std::lock_guard lock(transfer_mutex);
  active_transfers.erase(requester);
}

auto Manager::Impl::busy_response(int seconds) -> HttpResponse {
  ++busy_answers;
  auto res = json_response(
      429, bj::object{{"error", bj::object{{"kind", "busy"},
                                           {"message", "this server is serving its maximum of " +
                                                           std::to_string(settings.max_transfers) +
                                                           " concurrent transfers; come back in " +
                                                           std::to_string(seconds) + " s"}}},
                      {"retry_after", seconds}});
  res.headers.emplace_back("Retry-After", std::to_string(seconds));
  return res;
}

// Answers once the requester's link has carried `bytes` at the configured rate (the bytes
// are paid for before they go, so a transfer's average rate is the limit, not above it).
void Manager::Impl::send_paced(const std::string& requester, std::uint64_t bytes,
                               std::shared_ptr<Responder> r, HttpResponse res) {
  if (settings.rate_limit_per_host == 0 || !timers) {
    (*r)(std::move(res));
    return;
  }
  const auto now = Clock::now();
  Clock::time_point release;
  {
    std::lock_guard lock(transfer_mutex);
    auto& free_at = link_free[requester];
    // A link idle for a moment (the requester's round trip between two batches) may use up
    // to 100 ms of the time it did not use, so round trips do not lower the rate.
    const auto start = std::max(now - std::chrono::milliseconds(100), free_at);
    free_at =
        start + std::chrono::nanoseconds(static_cast<std::int64_t>(
                    static_cast<double>(bytes) * 1e9 / static_cast<double>(settings.rate_limit_per_host)));
    release = free_at;
  }
  timers->at(release, [r, res = std::move(res)]() mutable { (*r)(std::move(res)); });
}

void Manager::Impl::count_served(const std::string& requester, std::uint64_t chunk_count,
                                 std::uint64_t bytes) {
  std::lock_guard lock(stats_mutex);
  auto& s = served_by[requester.empty() ? "unknown" : requester];
  s.chunks += chunk_count;
  s.bytes += bytes;
}

// One chunk streamed from its file, paced for the requester; 404 when this server lacks it.
void Manager::Impl::serve_chunk(const std::string& digest, const std::string& requester,
                                std::shared_ptr<Responder> r) {
  HttpResponse res;
  res.content_type = "application/zstd";
  res.file_path = chunks->path_of(digest).string();
  std::error_code ec;
  const auto size = std::filesystem::file_size(res.file_path, ec);
  if (ec) {
    (*r)(error_response(
        Error(ErrorKind::not_found, "chunk " + digest + " is not in this server's content store")));
    return;
  }
  count_served(requester, 1, size);
  send_paced(requester, size, std::move(r), std::move(res));
}

// Answers a batch: frames "<digest> <length>\n<compressed bytes>" for a prefix of `digests`
// (all of them unless the link's rate limit or the batch size cuts it short). A relay fetches
// what it lacks from its parent first.
void Manager::Impl::serve_batch(std::string requester, std::vector<std::string> digests,
                                std::shared_ptr<Responder> r, bool after_upstream) {
  pool->submit([this, requester = std::move(requester), digests = std::move(digests), r, after_upstream] {
    try {
      std::vector<std::string> missing;
      for (const auto& d : digests)
        if (!chunks->contains(d)) missing.push_back(d);
      if (!missing.empty()) {
        const auto more = missing.size() > 1 ? " (and " + std::to_string(missing.size() - 1) + " more)" : "";
        if (!upstream)
          throw Error(ErrorKind::not_found,
                      "chunk " + missing.front() + more + " is not in this server's content store");
        if (after_upstream)
          throw Error(ErrorKind::unavailable,
                      "chunk " + missing.front() + more +
                          " left this relay's cache while it was being served; retry");
        cache_misses += missing.size();
        struct Pending {
          std::atomic<std::size_t> left;
          std::mutex m;
          std::string error;
        };
        auto pending = std::make_shared<Pending>();
        pending->left = missing.size();
        for (const auto& d : missing)
          upstream->fetch(d, [this, pending, requester, digests, r, d](const std::string& error) {
            if (!error.empty()) {
              std::lock_guard lock(pending->m);
              if (pending->error.empty()) pending->error = "chunk " + d + ": " + error;
            }
            if (--pending->left != 0) return;
            if (!pending->error.empty()) {
              (*r)(error_response(Error(ErrorKind::unavailable,
                                        pending->error + " (from this relay's parent); retry later")));
              return;
            }
            serve_batch(requester, digests, r, true);
            maybe_maintain();
          });
        return;
      }
      if (!after_upstream) cache_hits += digests.size();
      const std::uint64_t budget = settings.rate_limit_per_host
                                       ? std::max<std::uint64_t>(1, settings.rate_limit_per_host / 2)
                                       : kMaxBatchBytes;
      std::string body;
      std::size_t n = 0;
      std::uint64_t bytes_total = 0;
      for (const auto& d : digests) {
        auto cached = hot_chunks->get(d);
        if (!cached) {
          cached = std::make_shared<const std::string>(chunks->read_compressed(d));
          hot_chunks->put(d, cached);
        }
        std::string_view bytes = *cached;
        if (n > 0 && body.size() + bytes.size() > budget) break;
        if (body.empty()) body.reserve(std::min<std::uint64_t>(budget, kMaxBatchBytes) + 4096);
        body += d;
        body += ' ';
        body += std::to_string(bytes.size());
        body += '\n';
        const auto at = body.size();
        body += bytes;
        if (corrupt_left.load() > 0 && corrupt_left.fetch_sub(1) > 0 && !bytes.empty())
          body[at + bytes.size() / 2] = static_cast<char>(body[at + bytes.size() / 2] ^ 0x5a);
        bytes_total += bytes.size();
        ++n;
      }
      count_served(requester, n, bytes_total);
      HttpResponse res;
      res.content_type = "application/x-distrib-chunks";
      res.body = std::move(body);
      res.headers.emplace_back("X-Distrib-Chunks", std::to_string(n));
      send_paced(requester, bytes_total, r, std::move(res));
    } catch (const Error& e) {
      (*r)(error_response(e));
    } catch (const std::exception& e) {
      (*r)(error_response(Error(ErrorKind::internal, e.what())));
    }
  });
}

void Manager::Impl::content_chunk_batch(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  const auto requester = json::get_string(body, "host_id", false);
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

void Manager::Impl::content_chunk(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto& digest = p[3];
  if (!is_sha256_hex(digest))
    throw Error(ErrorKind::invalid_argument, "\"" + digest + "\" is not a chunk digest");
  const auto requester = req.query["host_id"];
  if (auto wait = admit(requester)) {
    r(busy_response(*wait));
    return;
  }
  if (chunks->contains(digest) || !upstream) {
    ++cache_hits;
    serve_chunk(digest, requester, std::make_shared<Responder>(std::move(r)));
    return;
  }
  // A relay without the chunk: one fetch from the parent, however many ask meanwhile.
  ++cache_misses;
  auto shared = std::make_shared<Responder>(std::move(r));
  upstream->fetch(digest, [this, shared, digest, requester](const std::string& error) {
    if (!error.empty()) {
      (*shared)(error_response(Error(
          ErrorKind::unavailable,
          "chunk " + digest + " is not available from this relay's parent yet: " + error + "; retry later")));
      return;
    }
    serve_chunk(digest, requester, shared);
    maybe_maintain();
  });
  return;
}

void Manager::Impl::content_manifest(HttpRequest&&, Responder& r, const PathSegments& p) {
  return blocking(std::move(r), [this, name = p[3], version = p[4]] {
    auto m = is_relay() ? ensure_manifest(name, version) : store->find_package(name, version);
    if (!m) throw Error(ErrorKind::not_found, "package \"" + name + "\" " + version + " does not exist");
    if (is_relay()) store->touch_package(name, version, fs::now_unix());
    return json_response(200, json::to_json(*m));
  });
}

void Manager::Impl::chunks_missing(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto digests = json::get_string_array(json::parse_object(req.body), "digests");
  for (const auto& d : digests)
    if (!is_sha256_hex(d)) throw Error(ErrorKind::invalid_argument, "\"" + d + "\" is not a chunk digest");
  return blocking(std::move(r), [this, digests] {
    bj::array missing;
    std::set<std::string> seen;
    for (const auto& d : digests)
      if (seen.insert(d).second && !chunks->contains(d)) missing.emplace_back(d);
    return json_response(200, bj::object{{"missing", std::move(missing)}});
  });
}

void Manager::Impl::chunk_upload(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto digest = p[2];
  if (!is_sha256_hex(digest))
    throw Error(ErrorKind::invalid_argument, "\"" + digest + "\" is not a chunk digest");
  if (req.content_type != "application/zstd")
    throw Error(ErrorKind::invalid_argument,
                "chunk uploads must be application/zstd, not \"" + req.content_type + "\"");
  return blocking(std::move(r), [this, digest, body = std::move(req.body)] {
    chunks->put_compressed(digest, body, kMaxChunkSize);
    return json_response(201, bj::object{{"digest", digest}});
  });
}

void Manager::Impl::package_list(HttpRequest&&, Responder& r, const PathSegments&) {
  return blocking(std::move(r), [this] {
    bj::array arr;
    for (const auto& s : store->list_packages()) arr.push_back(json::to_json(s));
    return json_response(200, bj::object{{"packages", std::move(arr)}});
  });
}

void Manager::Impl::package_register(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  Manifest manifest = json::manifest_from_json_object(json::parse_object(req.body));
  validate_manifest(manifest);
  return blocking(std::move(r), [this, manifest]() mutable {
    std::size_t missing = 0;
    for (const auto& c : manifest.chunks)
      if (!chunks->contains(c.digest)) ++missing;
    if (missing)
      throw Error(ErrorKind::conflict, "package \"" + manifest.name + "\" " + manifest.version + ": " +
                                           std::to_string(missing) + " chunk(s) have not been uploaded");
    if (!manifest.created_at) manifest.created_at = fs::now_unix();
    const bool created = store->insert_package(manifest);
    if (created) spdlog::info("package {} {} registered", manifest.name, manifest.version);
    return json_response(created ? 201 : 200,
                         bj::object{{"created", created}, {"package", json::to_json(manifest)}});
  });
}

void Manager::Impl::package_show(HttpRequest&&, Responder& r, const PathSegments& p) {
  {
    return blocking(std::move(r), [this, name = p[2], version = p[3]] {
      auto m = store->find_package(name, version);
      if (!m) throw Error(ErrorKind::not_found, "package \"" + name + "\" " + version + " does not exist");
      return json_response(200, json::to_json(*m));
    });
  }
}

}  // namespace distrib
