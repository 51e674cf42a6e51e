// Remote collection: files sent back by agents for collect-files jobs.
#include "services/manager/impl.h"

namespace distrib {

auto Manager::Impl::collected_path(std::int64_t job, const std::string& host, const std::string& path) const
    -> std::filesystem::path {
  return settings.state_dir / "collected" / std::to_string(job) / host /
         std::filesystem::path(path).relative_path();
}

void Manager::Impl::validate_collected_path(const std::string& path) {
  const bool control =
      std::any_of(path.begin(), path.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
  if (path.empty() || path.front() != '/' || path.size() > 1024 || control ||
      path.find("/../") != std::string::npos || path.ends_with("/..") ||
      path.find("/./") != std::string::npos || path.ends_with("/"))
    throw Error(ErrorKind::invalid_argument,
                "collected file path \"" + path.substr(0, 200) + "\" is not a plain absolute path");
}

// POST /v1/agent/collect?host_id=&job_id=&path=&sha256= with the file's bytes as the body.
void Manager::Impl::agent_collect(HttpRequest&& req, Responder& r, const PathSegments&) {
  const auto host_id = req.query["host_id"];
  if (!is_valid_host_id(host_id))
    throw Error(ErrorKind::invalid_argument, "query parameter host_id must be a host UUID");
  std::int64_t job_id = 0;
  try {
    job_id = std::stoll(req.query["job_id"]);
  } catch (const std::exception&) {
    throw Error(ErrorKind::invalid_argument, "query parameter job_id must be a number");
  }
  const auto path = req.query["path"];
  validate_collected_path(path);
  const auto sha = req.query["sha256"];
  if (is_relay()) {
    auto shared = std::make_shared<HttpRequest>(std::move(req));
    return blocking(std::move(r), [this, shared, host_id, job_id, path, sha] {
      auto job = store->find_job(job_id);
      if (!job || job->upstream_id == 0)
        throw Error(ErrorKind::not_found,
                    "job " + std::to_string(job_id) + " did not come from this relay's parent");
      return forward_request(*shared, "/v1/agent/collect?host_id=" + host_id +
                                          "&job_id=" + std::to_string(job->upstream_id) +
                                          "&path=" + url_encode(path) + "&sha256=" + url_encode(sha));
    });
  }
  auto shared = std::make_shared<HttpRequest>(std::move(req));
  return blocking(std::move(r), [this, shared, host_id, job_id, path, sha] {
    const auto& data = shared->body;
    auto job = store->find_job(job_id);
    if (!job || job->type != JobType::collect_files)
      throw Error(ErrorKind::not_found, "job " + std::to_string(job_id) + " is not a collect-files job");
    const auto open = store->open_entries_for_host(host_id);
    if (std::none_of(open.begin(), open.end(), [&](const JobEntry& e) { return e.job_id == job_id; }))
      throw Error(ErrorKind::conflict,
                  "host " + host_id + " has no open entry in job " + std::to_string(job_id));
    if (data.size() > job->collect.max_file_bytes)
      throw Error(ErrorKind::invalid_argument, "file " + path + " is " + format_byte_size(data.size()) +
                                                   ", over the job's per-file limit of " +
                                                   format_byte_size(job->collect.max_file_bytes));
    std::uint64_t total = data.size();
    for (const auto& f : store->collected_files(job_id))
      if (f.host_id == host_id && f.path != path) total += static_cast<std::uint64_t>(f.size);
    if (total > job->collect.max_total_bytes)
      throw Error(ErrorKind::invalid_argument,
                  "files from host " + host_id + " would reach " + format_byte_size(total) +
                      ", over the job's per-host limit of " + format_byte_size(job->collect.max_total_bytes));
    const auto digest = sha256_hex(data);
    if (!sha.empty() && sha != digest)
      throw Error(ErrorKind::integrity,
                  "file " + path + " arrived damaged (SHA-256 differs from the sender's); send it again");
    const auto target = collected_path(job_id, host_id, path);
    std::filesystem::create_directories(target.parent_path());
    fs::write_file_atomic(target, data);
    CollectedFile f;
    f.job_id = job_id;
    f.host_id = host_id;
    f.path = path;
    f.size = static_cast<std::int64_t>(data.size());
    f.sha256 = digest;
    store->record_collected_file(f);
    return json_response(200, bj::object{{"path", path}, {"size", f.size}, {"sha256", digest}});
  });
}

}  // namespace distrib
