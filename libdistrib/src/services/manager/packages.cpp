// Packages as the packager uploads them: missing chunks, chunk uploads, registration, list and details.
#include "services/manager/packages.h"

#include "content/frames.h"

#include "services/manager/content_health.h"
#include "services/manager/publishers.h"

namespace distrib::manager {

void Packages::register_routes(Router& t) {
  t.add(Route{"POST", "/v1/chunks/missing", Access::operate, bind(this, &Packages::chunks_missing)});
  // One compressed chunk (zstd never grows data by more than a little).
  t.add(Route{"PUT", "/v1/chunks/{digest}", Access::operate, bind(this, &Packages::chunk_upload),
              kMaxChunkSize + 64 * 1024});
  // Many compressed chunks in one body, each as a line "DIGEST SIZE" and its SIZE bytes.
  t.add(
      Route{"POST", "/v1/chunks/batch", Access::operate, bind(this, &Packages::chunk_batch), kMaxBatchBytes});
  t.add(Route{"GET", "/v1/packages", Access::view, bind(this, &Packages::package_list)});
  // A manifest lists every chunk: ~100 bytes each, some 600,000 (10 GiB at 16 KiB) in 64 MiB.
  t.add(Route{"POST", "/v1/packages", Access::operate, bind(this, &Packages::package_register), 64ull << 20});
  t.add(Route{"GET", "/v1/packages/{name}/{version}", Access::view, bind(this, &Packages::package_show)});
}

void Packages::chunks_missing(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto digests = json::get_string_array(json::parse_object(req.body), "digests");
  for (const auto& d : digests)
    if (!is_sha256_hex(d)) throw Error(ErrorKind::invalid_argument, "\"" + d + "\" is not a chunk digest");
  return ctx_.blocking(std::move(r), [this, digests] {
    bj::array missing;
    std::set<std::string> seen;
    std::error_code ec;
    const auto now = std::filesystem::file_time_type::clock::now();
    for (const auto& d : digests) {
      if (!seen.insert(d).second) continue;
      // A copy held is checked again: a corrupt one (quarantined then) is missing, and the
      // packager's upload repairs it.
      if (!ctx_.chunks->contains(d) || !health_.reverify(d))
        missing.emplace_back(d);
      else  // a packager counts on it now: it is not left over, whatever its age
        std::filesystem::last_write_time(ctx_.chunks->path_of(d), now, ec);
    }
    return json_response(200, bj::object{{"missing", std::move(missing)}});
  });
}

void Packages::chunk_upload(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto digest = p[2];
  if (!is_sha256_hex(digest))
    throw Error(ErrorKind::invalid_argument, "\"" + digest + "\" is not a chunk digest");
  if (req.content_type != "application/zstd")
    throw Error(ErrorKind::invalid_argument,
                "chunk uploads must be application/zstd, not \"" + req.content_type + "\"");
  return ctx_.blocking(std::move(r), [this, digest, body = std::move(req.body)] {
    if (ctx_.chunks->put_compressed(digest, body, kMaxChunkSize)) health_.replaced(digest);
    return json_response(201, bj::object{{"digest", digest}});
  });
}

void Packages::chunk_batch(HttpRequest&& req, Responder& r, const PathSegments&) {
  if (req.content_type != "application/x-distrib-chunks")
    throw Error(ErrorKind::invalid_argument,
                "chunk batches must be application/x-distrib-chunks, not \"" + req.content_type + "\"");
  // The frames are read before any work: a batch that is not one is refused whole. They point
  // into the body, which the task below keeps.
  auto body = std::make_shared<std::string>(std::move(req.body));
  auto frames = parse_chunk_frames(*body, kMaxBatchChunks, kMaxChunkSize + 64 * 1024);
  return ctx_.blocking(std::move(r), [this, frames = std::move(frames), body] {
    // Every chunk is verified before any is kept: a bad one refuses the batch, nothing stored.
    for (const auto& f : frames) {
      try {
        verify_chunk(f.digest, f.bytes, kMaxChunkSize);
      } catch (const Error& e) {
        throw Error(
            ErrorKind::integrity,
            std::string(e.what()) + "; nothing of this batch was stored: package it again from its source");
      }
    }
    std::size_t stored = 0;
    for (const auto& f : frames)
      if (ctx_.chunks->put_verified(f.digest, f.bytes, kMaxChunkSize, false)) {
        ++stored;
        health_.replaced(f.digest);
      }
    ctx_.chunks->sync();  // one flush to disk for the batch
    return json_response(200, bj::object{{"received", frames.size()}, {"stored", stored}});
  });
}

void Packages::package_list(HttpRequest&&, Responder& r, const PathSegments&) {
  return ctx_.blocking(std::move(r), [this] {
    bj::array arr;
    for (const auto& s : ctx_.store->list_packages()) arr.push_back(json::to_json(s));
    return json_response(200, bj::object{{"packages", std::move(arr)}});
  });
}

void Packages::package_register(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  Manifest manifest = json::manifest_from_json_object(json::parse_object(req.body));
  validate_manifest(manifest);
  Publishers::check_upload(ctx_, manifest);
  return ctx_.blocking(std::move(r), [this, manifest]() mutable {
    if (const auto held = ctx_.store->find_package(manifest.name, manifest.version);
        held && held->payload_digest == manifest.payload_digest && held->signature != manifest.signature)
      throw Error(ErrorKind::conflict,
                  "package \"" + manifest.name + "\" " + manifest.version + " is registered already " +
                      (held->signature.empty() ? "unsigned" : "signed by " + held->signed_by) +
                      "; packages are immutable: register the signed package as a new version");
    std::lock_guard lock(chunks_mutex_);
    std::size_t missing = 0;
    for (const auto& c : manifest.chunks)
      if (!ctx_.chunks->contains(c.digest)) ++missing;
    if (missing)
      throw Error(ErrorKind::conflict, "package \"" + manifest.name + "\" " + manifest.version + ": " +
                                           std::to_string(missing) + " chunk(s) have not been uploaded");
    if (!manifest.created_at) manifest.created_at = fs::now_unix();
    const bool created = ctx_.store->insert_package(manifest);
    if (created) spdlog::info("package {} {} registered", manifest.name, manifest.version);
    return json_response(created ? 201 : 200,
                         bj::object{{"created", created}, {"package", json::to_json(manifest)}});
  });
}

void Packages::package_show(HttpRequest&&, Responder& r, const PathSegments& p) {
  return ctx_.blocking(std::move(r), [this, name = p[2], version = p[3]] {
    auto m = ctx_.store->find_package(name, version);
    if (!m) throw Error(ErrorKind::not_found, "package \"" + name + "\" " + version + " does not exist");
    return json_response(200, json::to_json(*m));
  });
}

std::set<std::string> Packages::chunks_in_use(Store& store) {
  std::set<std::string> used;
  for (const auto& p : store.list_packages())
    if (auto m = store.find_package(p.name, p.version))
      for (const auto& c : m->chunks) used.insert(c.digest);
  return used;
}

auto Packages::sweep(std::int64_t older_than_seconds) -> Swept {
  namespace sfs = std::filesystem;
  const auto cutoff = sfs::file_time_type::clock::now() - std::chrono::seconds(older_than_seconds);
  struct Candidate {
    sfs::path path;
    std::string digest;  // empty: a temporary file
    std::uint64_t size;
  };
  std::vector<Candidate> old;
  std::error_code ec;
  for (auto it = sfs::recursive_directory_iterator(ctx_.chunks->root(), ec);
       !ec && it != sfs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const auto name = it->path().filename().string();
    const auto tmp = name.find(".tmp");
    const bool chunk = name.size() == 68 && name.ends_with(".zst") && is_sha256_hex(name.substr(0, 64));
    if ((!chunk && tmp == std::string::npos) || it->last_write_time(ec) >= cutoff || ec) continue;
    old.push_back({it->path(), chunk ? name.substr(0, 64) : "", it->file_size(ec)});
  }
  Swept swept;
  if (old.empty()) return swept;
  std::lock_guard lock(chunks_mutex_);
  const auto used = chunks_in_use(*ctx_.store);
  for (const auto& c : old) {
    if (!c.digest.empty() && used.count(c.digest)) continue;
    // Touched since it was listed (asked for by a packager): keep it.
    if (const auto t = sfs::last_write_time(c.path, ec); ec || t >= cutoff) continue;
    if (sfs::remove(c.path, ec)) {
      ++swept.files;
      swept.bytes += c.size;
    }
  }
  if (swept.files)
    spdlog::info(
        "content: removed {} left-over file(s), {} (chunks no registered package uses and unfinished "
        "writes, older than {} s)",
        swept.files, format_byte_size(swept.bytes), older_than_seconds);
  return swept;
}

void Packages::start() {
  const auto grace = ctx_.settings.orphan_chunk_seconds;
  if (grace <= 0) return;
  timers_ = std::make_unique<TimerQueue>();
  schedule(std::chrono::seconds(std::clamp<std::int64_t>(grace / 4, 1, 3600)));
}

void Packages::schedule(std::chrono::seconds after) {
  timers_->at(TimerQueue::Clock::now() + after, [this, after] {
    ctx_.pool->submit([this, after] {
      try {
        sweep(ctx_.settings.orphan_chunk_seconds);
      } catch (const std::exception& e) {
        spdlog::warn("content: left-over chunks not removed this time: {}", e.what());
      }
      schedule(after);  // a no-op once stopped
    });
  });
}

void Packages::stop() {
  if (timers_) timers_->stop();
}

}  // namespace distrib::manager
