// Remote collection: files sent back by agents for collect-files jobs, and a job's files as administrators
// fetch them.
#include "services/manager/collection.h"

#include "services/manager/jobs.h"
#include "services/manager/uplink.h"

namespace distrib::manager {

void Collection::register_routes(Router& t) {
  // Collected files carry up to the largest per-file limit; at the manager they are written to
  // disk as they arrive (a relay, which forwards them, holds them in memory within its budget).
  Route collect{"POST",          "/v1/agent/collect",
                Access::agent,   bind(this, &Collection::agent_collect),
                kMaxCollectFile, [this](const HttpRequest& head) { check_sender(head); }};
  collect.spool_body = !uplink_.has_parent();
  t.add(std::move(collect));
  t.add(Route{"GET", "/v1/jobs/{id}/files", Access::view, bind(this, &Collection::job_files)});
  t.add(Route{"GET", "/v1/jobs/{id}/files/{host}", Access::operate, bind(this, &Collection::job_file)});
}

auto Collection::collected_path(std::int64_t job, const std::string& host, const std::string& path) const
    -> std::filesystem::path {
  return ctx_.settings.state_dir / "collected" / std::to_string(job) / host /
         std::filesystem::path(path).relative_path();
}

namespace {
void validate_collected_path(const std::string& path) {
  const bool control =
      std::any_of(path.begin(), path.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
  if (path.empty() || path.front() != '/' || path.size() > 1024 || control ||
      path.find("/../") != std::string::npos || path.ends_with("/..") ||
      path.find("/./") != std::string::npos || path.ends_with("/"))
    throw Error(ErrorKind::invalid_argument,
                "collected file path \"" + path.substr(0, 200) + "\" is not a plain absolute path");
}
}  // namespace

// POST /v1/agent/collect?host_id=&job_id=&path=&sha256= with the file's bytes as the body.
// Before a file's bytes are read: a well-formed host id, and an agent sends only its own files
// (a relay, which forwards those of the hosts below it, is checked against the store later).
void Collection::check_sender(const HttpRequest& head) const {
  const auto it = head.query.find("host_id");
  if (it == head.query.end() || !is_valid_host_id(it->second))
    throw Error(ErrorKind::invalid_argument, "query parameter host_id must be a host UUID");
  if (const auto id = ctx_.callers.of(head); id && id->role != "relay" && id->host_id != it->second)
    throw Error(ErrorKind::forbidden,
                "host " + id->host_id + " cannot send files collected on host " + it->second);
}

void Collection::agent_collect(HttpRequest&& req, Responder& r, const PathSegments&) {
  const auto host_id = req.query["host_id"];
  if (!is_valid_host_id(host_id))
    throw Error(ErrorKind::invalid_argument, "query parameter host_id must be a host UUID");
  const std::int64_t job_id = query_number(req, "job_id", 0, 1, std::numeric_limits<long>::max());
  if (job_id == 0) throw Error(ErrorKind::invalid_argument, "query parameter job_id is missing");
  const auto path = req.query["path"];
  validate_collected_path(path);
  const auto sha = req.query["sha256"];
  ctx_.callers.require_for(req, host_id, *ctx_.store);
  if (uplink_.has_parent()) {
    auto shared = std::make_shared<HttpRequest>(std::move(req));
    return ctx_.blocking(std::move(r), [this, shared, host_id, job_id, path, sha] {
      auto job = ctx_.store->find_job(job_id);
      if (!job || job->upstream_id == 0)
        throw Error(ErrorKind::not_found,
                    "job " + std::to_string(job_id) + " did not come from this relay's parent");
      return uplink_.forward(*shared, "/v1/agent/collect?host_id=" + host_id +
                                          "&job_id=" + std::to_string(job->upstream_id) +
                                          "&path=" + url_encode(path) + "&sha256=" + url_encode(sha));
    });
  }
  auto shared = std::make_shared<HttpRequest>(std::move(req));
  return ctx_.blocking(std::move(r), [this, shared, host_id, job_id, path, sha] {
    // Received into a file (the manager spools these bodies to disk), or in memory.
    const auto& data = shared->body;
    const auto& spooled = shared->body_file;
    std::error_code ec;
    const std::uint64_t size = spooled.empty() ? data.size() : std::filesystem::file_size(spooled, ec);
    if (ec)
      throw Error(ErrorKind::internal, "the received file " + spooled + " cannot be read: " + ec.message());
    auto job = ctx_.store->find_job(job_id);
    if (!job || job->type != JobType::collect_files)
      throw Error(ErrorKind::not_found, "job " + std::to_string(job_id) + " is not a collect-files job");
    const auto open = ctx_.store->open_entries_for_host(host_id);
    if (std::none_of(open.begin(), open.end(), [&](const JobEntry& e) { return e.job_id == job_id; }))
      throw Error(ErrorKind::conflict,
                  "host " + host_id + " has no open entry in job " + std::to_string(job_id));
    if (!collect_requested(job->collect, path))
      throw Error(ErrorKind::forbidden, "job " + std::to_string(job_id) + " did not ask for " + path);
    if (size > job->collect.max_file_bytes)
      throw Error(ErrorKind::invalid_argument, "file " + path + " is " + format_byte_size(size) +
                                                   ", over the job's per-file limit of " +
                                                   format_byte_size(job->collect.max_file_bytes));
    std::uint64_t total = size;
    for (const auto& f : ctx_.store->collected_files(job_id))
      if (f.host_id == host_id && f.path != path) total += static_cast<std::uint64_t>(f.size);
    if (total > job->collect.max_total_bytes)
      throw Error(ErrorKind::invalid_argument,
                  "files from host " + host_id + " would reach " + format_byte_size(total) +
                      ", over the job's per-host limit of " + format_byte_size(job->collect.max_total_bytes));
    const auto digest = spooled.empty() ? sha256_hex(data) : sha256_file(spooled);
    if (!sha.empty() && sha != digest)
      throw Error(ErrorKind::integrity,
                  "file " + path + " arrived damaged (SHA-256 differs from the sender's); send it again");
    const auto target = collected_path(job_id, host_id, path);
    std::filesystem::create_directories(target.parent_path(), ec);
    if (ec) throw fs::write_error(target.parent_path(), ec.value());
    std::filesystem::permissions(target.parent_path(), std::filesystem::perms::owner_all);
    if (spooled.empty())
      fs::write_file_atomic(target, data);
    else
      fs::move_file_durable(spooled, target);
    std::filesystem::permissions(target, std::filesystem::perms::owner_read |
                                             std::filesystem::perms::owner_write);  // logs may hold secrets
    CollectedFile f;
    f.job_id = job_id;
    f.host_id = host_id;
    f.path = path;
    f.size = static_cast<std::int64_t>(size);
    f.sha256 = digest;
    try {
      ctx_.store->record_collected_file(f);
    } catch (...) {
      std::filesystem::remove(target, ec);  // not recorded (a full database, say): not kept either
      throw;
    }
    return json_response(200, bj::object{{"path", path}, {"size", f.size}, {"sha256", digest}});
  });
}

void Collection::job_files(HttpRequest&&, Responder& r, const PathSegments& p) {
  const auto id = job_id_of(p);
  return ctx_.blocking(std::move(r), [this, id] {
    if (!ctx_.store->find_job(id))
      throw Error(ErrorKind::not_found, "job " + std::to_string(id) + " does not exist");
    bj::array arr;
    for (const auto& f : ctx_.store->collected_files(id))
      arr.push_back(bj::object{{"host_id", f.host_id},
                               {"host_name", f.host_name},
                               {"path", f.path},
                               {"size", f.size},
                               {"sha256", f.sha256},
                               {"stored_at", f.stored_at}});
    return json_response(200, bj::object{{"job_id", id}, {"files", std::move(arr)}});
  });
}

void Collection::job_file(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto id = job_id_of(p);
  const auto host = p[4];
  const auto path = req.query["path"];
  return ctx_.blocking(std::move(r), [this, id, host, path] {
    for (const auto& f : ctx_.store->collected_files(id))
      if (f.host_id == host && f.path == path) {
        HttpResponse res;
        res.status = 200;
        res.content_type = "application/octet-stream";
        res.file_path = collected_path(id, host, path).string();
        res.headers.emplace_back("X-Distrib-Sha256", f.sha256);
        return res;
      }
    throw Error(ErrorKind::not_found,
                "job " + std::to_string(id) + " has no file " + path + " from host " + host);
  });
}

}  // namespace distrib::manager
