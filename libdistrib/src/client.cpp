#include <distrib/client.h>
#include <distrib/error.h>

#include "content/frames.h"
#include "model/json_codec.h"
#include "security/pki.h"
#include "security/publishers.h"

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>

namespace distrib {

namespace bj = boost::json;
namespace stdfs = std::filesystem;

namespace {
ErrorKind kind_of_status(int status) {
  switch (status) {
    case 400:
    case 413:
    case 415:
      return ErrorKind::invalid_argument;
    case 401:
      return ErrorKind::unauthorized;
    case 403:
      return ErrorKind::forbidden;
    case 404:
      return ErrorKind::not_found;
    case 409:
      return ErrorKind::conflict;
    case 422:
      return ErrorKind::integrity;
    case 503:
      return ErrorKind::unavailable;
    case 507:
      return ErrorKind::insufficient_storage;
    default:
      return ErrorKind::internal;
  }
}

Event event_from_json(const bj::object& o) {
  Event e;
  e.id = json::get_int(o, "id");
  e.type = json::get_string(o, "type");
  e.severity = parse_severity(json::get_string(o, "severity"));
  e.at_ms = json::get_int(o, "at_ms");
  e.job_id = json::get_int(o, "job_id", 0);
  e.host_id = json::get_string(o, "host_id", false);
  e.subject = json::get_string(o, "subject", false);
  e.message = json::get_string(o, "message", false);
  return e;
}

std::string event_query(const std::string& types, Severity min_severity) {
  std::string q;
  if (!types.empty()) q += "&type=" + url_encode(types);
  if (min_severity != Severity::info) q += "&severity=" + std::string(to_string(min_severity));
  return q;
}
}  // namespace

AdminClient::AdminClient(AdminClientSettings settings)
    : settings_(std::move(settings)), http_(settings_.http) {}

std::string AdminClient::call(std::string_view method, std::string_view target, std::string_view body,
                              std::string_view content_type) {
  auto res = settings_.actor.empty() ? http_.request(method, target, body, content_type, settings_.token)
                                     : http_.request(method, target, body, content_type,
                                                     {{"X-Distrib-Actor", settings_.actor}}, settings_.token);
  if (res.status / 100 == 2) return res.body;
  throw Error(kind_of_status(res.status), json::error_message(res.body, res.status));
}

std::vector<Host> AdminClient::list_hosts() {
  auto o = json::parse_object(call("GET", "/v1/hosts"));
  std::vector<Host> out;
  for (const auto& v : json::get_array(o, "hosts")) out.push_back(json::host_from_json(v.as_object()));
  return out;
}

std::vector<PackageSummary> AdminClient::list_packages() {
  auto o = json::parse_object(call("GET", "/v1/packages"));
  std::vector<PackageSummary> out;
  for (const auto& v : json::get_array(o, "packages"))
    out.push_back(json::package_summary_from_json(v.as_object()));
  return out;
}

Manifest AdminClient::show_package(const std::string& name, const std::string& version) {
  return manifest_from_json(call("GET", "/v1/packages/" + url_encode(name) + "/" + url_encode(version)));
}

namespace {
// Chunks asked about in one POST /v1/chunks/missing, and sent in one POST /v1/chunks/batch.
constexpr std::size_t kMissingPerRequest = 10000;
constexpr std::size_t kChunksPerBatch = 1024;
constexpr std::size_t kBytesPerBatch = 8u << 20;
// Batches in flight at once, each on its own connection.
constexpr unsigned kUploadStreams = 3;
}  // namespace

UploadResult AdminClient::upload_package(const PackageSpec& spec,
                                         const std::function<void(std::size_t, std::size_t)>& progress) {
  // Chunks are cut into a private spool (one file, gone when we are done), then only the
  // missing ones travel.
  char tmpl[] = "/tmp/distrib-package-XXXXXX";
  if (!::mkdtemp(tmpl)) throw Error("cannot create a temporary directory under /tmp");
  const stdfs::path tmp(tmpl);
  struct Cleanup {
    stdfs::path p;
    ~Cleanup() {
      std::error_code ec;
      stdfs::remove_all(p, ec);
    }
  } cleanup{tmp};
  ChunkSpool store(tmp);
  UploadResult result;
  result.manifest = create_package(spec, store);
  result.chunks_total = result.manifest.chunks.size();

  std::vector<std::string> missing;
  for (std::size_t i = 0; i < result.manifest.chunks.size(); i += kMissingPerRequest) {
    bj::array digests;
    for (std::size_t j = i; j < std::min(result.manifest.chunks.size(), i + kMissingPerRequest); ++j)
      digests.emplace_back(result.manifest.chunks[j].digest);
    auto answer = json::parse_object(
        call("POST", "/v1/chunks/missing", bj::serialize(bj::object{{"digests", digests}})));
    for (auto& d : json::get_string_array(answer, "missing")) missing.push_back(std::move(d));
  }
  // The manifest may name one chunk twice: it travels once.
  std::sort(missing.begin(), missing.end());
  missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
  upload_chunks(store, missing, progress, result);
  if (missing.empty() && progress) progress(0, 0);
  auto reg = json::parse_object(call("POST", "/v1/packages", manifest_to_json(result.manifest)));
  if (auto it = reg.find("created"); it != reg.end() && it->value().is_bool())
    result.already_registered = !it->value().as_bool();
  return result;
}

// Sends `digests` from `store` in batches (POST /v1/chunks/batch: the manager verifies a batch
// whole and flushes it to disk once), several in flight on connections of their own. A manager
// without the batch route gets one PUT per chunk.
void AdminClient::upload_chunks(const ChunkSpool& store, const std::vector<std::string>& digests,
                                const std::function<void(std::size_t, std::size_t)>& progress,
                                UploadResult& result) {
  std::vector<std::pair<std::size_t, std::size_t>> batches;  // [first, last)
  for (std::size_t i = 0; i < digests.size();) {
    std::size_t j = i, bytes = 0;
    while (j < digests.size() && j - i < kChunksPerBatch && (j == i || bytes < kBytesPerBatch)) {
      bytes += static_cast<std::size_t>(store.compressed_size(digests[j]));
      ++j;
    }
    batches.emplace_back(i, j);
    i = j;
  }
  std::mutex mutex;
  std::size_t next = 0, done = 0;
  std::exception_ptr error;
  bool per_chunk = false;
  auto worker = [&] {
    AdminClient client(settings_);
    for (;;) {
      std::pair<std::size_t, std::size_t> b;
      {
        std::lock_guard lock(mutex);
        if (error || next == batches.size()) return;
        b = batches[next++];
      }
      try {
        std::uint64_t sent = 0;
        if (!per_chunk) {
          std::string body;
          for (auto k = b.first; k < b.second; ++k) {
            const auto bytes = store.read_compressed(digests[k]);
            body += chunk_frame_head(digests[k], bytes.size());
            body += bytes;
            sent += bytes.size();
          }
          try {
            client.call("POST", "/v1/chunks/batch", body, "application/x-distrib-chunks");
          } catch (const Error& e) {
            if (e.kind() != ErrorKind::not_found) throw;
            std::lock_guard lock(mutex);
            per_chunk = true;  // an older manager: one request per chunk
          }
        }
        if (per_chunk) {
          sent = 0;
          for (auto k = b.first; k < b.second; ++k) {
            const auto bytes = store.read_compressed(digests[k]);
            client.call("PUT", "/v1/chunks/" + digests[k], bytes, "application/zstd");
            sent += bytes.size();
          }
        }
        std::lock_guard lock(mutex);
        result.bytes_uploaded += sent;
        result.chunks_uploaded += b.second - b.first;
        done += b.second - b.first;
        if (progress) progress(done, digests.size());
      } catch (...) {
        std::lock_guard lock(mutex);
        if (!error) error = std::current_exception();
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < std::min<std::size_t>(kUploadStreams, batches.size()); ++i)
    threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

Job AdminClient::create_install_job(const std::string& name, const std::string& version,
                                    const std::vector<std::string>& destinations) {
  return create_job(JobType::install, name, version, destinations);
}

Job AdminClient::create_job(JobType type, const std::string& name, const std::string& version,
                            const std::vector<std::string>& destinations) {
  Job spec;
  spec.type = type;
  spec.package_name = name;
  spec.package_version = version;
  spec.destinations = destinations;
  return create_job(spec);
}

Job AdminClient::create_job(const Job& spec) {
  auto body = json::to_json(spec);
  body.erase("id");
  body.erase("id_groups");
  auto o = json::parse_object(call("POST", "/v1/jobs", bj::serialize(body)));
  return json::job_from_json(o.at("job").as_object());
}

std::int64_t AdminClient::retry_job(std::int64_t job_id) {
  auto o = json::parse_object(call("POST", "/v1/jobs/" + std::to_string(job_id) + "/retry", "{}"));
  return json::get_int(o, "retried", 0);
}

std::int64_t AdminClient::complete_now(std::int64_t job_id) {
  auto o = json::parse_object(call("POST", "/v1/jobs/" + std::to_string(job_id) + "/complete-now", "{}"));
  return json::get_int(o, "entries", 0);
}

std::int64_t AdminClient::suspend_transfers(std::int64_t job_id, const std::string& relay, bool suspend) {
  bj::object body;
  if (job_id)
    body["job"] = job_id;
  else
    body["relay"] = relay;
  auto o = json::parse_object(
      call("POST", suspend ? "/v1/transfers/suspend" : "/v1/transfers/resume", bj::serialize(body)));
  return json::get_int(o, suspend ? "suspended" : "resumed", 0);
}

void AdminClient::create_host_group(const std::string& name, const std::vector<std::string>& hosts,
                                    const std::string& description) {
  bj::array a;
  for (const auto& h : hosts) a.emplace_back(h);
  call("POST", "/v1/groups",
       bj::serialize(bj::object{{"name", name}, {"description", description}, {"hosts", a}}));
}

IdGroup AdminClient::create_id_group(const std::string& name, const std::string& password,
                                     const JoinPolicy& policy, const std::string& description) {
  bj::object body{
      {"name", name},
      {"description", description},
      {"password", password},
      {"policy", bj::object{{"name_pattern", policy.name_pattern}, {"ip_range", policy.ip_range}}}};
  return json::id_group_from_json(json::parse_object(call("POST", "/v1/id-groups", bj::serialize(body))));
}

IdGroup AdminClient::show_id_group(const std::string& name) {
  return json::id_group_from_json(json::parse_object(call("GET", "/v1/id-groups/" + url_encode(name))));
}

void AdminClient::change_members(bool id_group, const std::string& name, const std::vector<std::string>& add,
                                 const std::vector<std::string>& remove) {
  bj::array a, r;
  for (const auto& h : add) a.emplace_back(h);
  for (const auto& h : remove) r.emplace_back(h);
  call("POST", std::string(id_group ? "/v1/id-groups/" : "/v1/groups/") + url_encode(name) + "/members",
       bj::serialize(bj::object{{"add", a}, {"remove", r}}));
}

int AdminClient::approve_hosts(const std::vector<std::string>& keys) {
  bj::array a;
  for (const auto& k : keys) a.emplace_back(k);
  auto o = json::parse_object(call("POST", "/v1/hosts/approve", bj::serialize(bj::object{{"hosts", a}})));
  return static_cast<int>(json::get_int(o, "approved"));
}

std::vector<JobListing> AdminClient::list_jobs(int limit) {
  auto o = json::parse_object(call("GET", "/v1/jobs?limit=" + std::to_string(limit)));
  std::vector<JobListing> out;
  for (const auto& v : json::get_array(o, "jobs")) {
    const auto& jo = v.as_object();
    out.push_back({json::job_from_json(jo), json::progress_from_json(jo.at("progress").as_object())});
  }
  return out;
}

JobDetails AdminClient::show_job(std::int64_t job_id) {
  auto o = json::parse_object(call("GET", "/v1/jobs/" + std::to_string(job_id)));
  JobDetails d;
  d.job = json::job_from_json(o.at("job").as_object());
  for (const auto& v : json::get_array(o, "entries"))
    d.entries.push_back(json::entry_from_json(v.as_object()));
  d.progress = summarize(d.entries);
  if (o.contains("waves"))
    for (const auto& v : json::get_array(o, "waves")) {
      const auto& w = v.as_object();
      d.waves.push_back({static_cast<int>(json::get_int(w, "wave")), json::get_int(w, "total", 0),
                         json::get_int(w, "succeeded", 0), json::get_int(w, "failed", 0),
                         json::get_int(w, "final", 0)});
    }
  return d;
}

std::int64_t AdminClient::cancel_job(std::int64_t job_id) {
  auto o = json::parse_object(call("POST", "/v1/jobs/" + std::to_string(job_id) + "/cancel", "{}"));
  return json::get_int(o, "cancelled", 0);
}

}  // namespace distrib

namespace distrib {

HostInventory AdminClient::inventory(const std::string& host) {
  auto o = json::parse_object(call("GET", "/v1/inventory/hosts/" + url_encode(host)));
  HostInventory out;
  out.host_id = json::get_string(o, "host_id");
  out.collected_at = json::get_int(o, "collected_at", 0);
  out.reported_at = json::get_int(o, "reported_at", 0);
  if (auto it = o.find("items"); it != o.end() && it->value().is_object())
    for (const auto& kv : it->value().as_object())
      if (kv.value().is_string())
        out.items.emplace(std::string(kv.key()), std::string(kv.value().as_string()));
  return out;
}

std::vector<std::string> AdminClient::query_inventory(const std::string& query) {
  auto o = json::parse_object(call("GET", "/v1/inventory?query=" + url_encode(query)));
  std::vector<std::string> out;
  for (const auto& v : json::get_array(o, "hosts"))
    if (v.is_object()) out.push_back(json::get_string(v.as_object(), "host_id"));
  return out;
}

}  // namespace distrib

namespace distrib {

std::vector<Event> AdminClient::events(std::int64_t after, int limit, const std::string& types,
                                       Severity min_severity) {
  std::string target = "/v1/events?limit=" + std::to_string(limit) + event_query(types, min_severity);
  if (after >= 0) target += "&after=" + std::to_string(after);
  auto o = json::parse_object(call("GET", target));
  std::vector<Event> out;
  for (const auto& v : json::get_array(o, "events")) out.push_back(event_from_json(v.as_object()));
  return out;
}

void AdminClient::follow_events(std::int64_t after, const std::string& types, Severity min_severity,
                                const std::function<bool(const Event&)>& on_event, int give_up_seconds) {
  std::int64_t last = after;
  auto unreachable_since = std::chrono::steady_clock::now();
  bool stop = false;
  std::string pending;  // an event's lines not complete yet
  for (int attempt = 0; !stop; ++attempt) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!settings_.actor.empty()) headers.emplace_back("X-Distrib-Actor", settings_.actor);
    if (last >= 0) headers.emplace_back("Last-Event-ID", std::to_string(last));
    const auto q = event_query(types, min_severity);
    const std::string target = "/v1/events/stream" + (q.empty() ? std::string() : "?" + q.substr(1));
    pending.clear();
    try {
      HttpClient streamer(settings_.http);
      auto res = streamer.stream("GET", target, headers, settings_.token, [&](std::string_view piece) {
        unreachable_since = std::chrono::steady_clock::now();
        pending.append(piece);
        // Frames end with a blank line; "data:" holds the event as JSON, "id:" alone (with no
        // data) is the position the server started from.
        for (auto end = pending.find("\n\n"); end != std::string::npos; end = pending.find("\n\n")) {
          const auto frame = pending.substr(0, end);
          pending.erase(0, end + 2);
          std::size_t pos = 0;
          while (pos < frame.size()) {
            auto nl = frame.find('\n', pos);
            if (nl == std::string::npos) nl = frame.size();
            const auto line = std::string_view(frame).substr(pos, nl - pos);
            pos = nl + 1;
            if (line.starts_with("id: ")) {
              last = std::stoll(std::string(line.substr(4)));
              continue;
            }
            if (!line.starts_with("data: ")) continue;
            const auto e = event_from_json(json::parse_object(std::string(line.substr(6))));
            last = e.id;
            if (!on_event(e)) {
              stop = true;
              return false;
            }
          }
        }
        return true;
      });
      if (res.status / 100 != 2)
        throw Error(kind_of_status(res.status), json::error_message(res.body, res.status));
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::unavailable) throw;
      if (std::chrono::steady_clock::now() - unreachable_since > std::chrono::seconds(give_up_seconds)) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(attempt == 0 ? 200 : 1000));
    }
  }
}

PublisherKeyPair make_publisher_key() {
  auto k = security::make_publisher_key();
  return {k.private_pem, k.public_pem, security::publisher_key_id(k.public_pem)};
}

std::string publisher_key_id(const std::string& public_pem) {
  return security::publisher_key_id(public_pem);
}

PublisherList AdminClient::publishers() {
  const auto o = json::parse_object(call("GET", "/v1/publishers"));
  PublisherList out;
  out.version = json::get_int(o, "version", 0);
  for (const auto& v : json::get_array(o, "keys")) {
    const auto& k = v.as_object();
    out.keys.push_back({json::get_string(k, "id"), json::get_string(k, "name"),
                        json::get_string(k, "public_key", false), json::get_int(k, "added", 0)});
  }
  out.revoked = json::get_string_array(o, "revoked");
  return out;
}

std::string AdminClient::trust_publisher(const std::string& name, const std::string& public_pem) {
  return json::get_string(
      json::parse_object(call("POST", "/v1/publishers",
                              bj::serialize(bj::object{{"name", name}, {"public_key", public_pem}}))),
      "id");
}

std::string AdminClient::revoke_publisher(const std::string& id_or_name) {
  return json::get_string(json::parse_object(call("DELETE", "/v1/publishers/" + url_encode(id_or_name))),
                          "revoked");
}

UserCertificate AdminClient::issue_user_certificate(const std::string& name, int days) {
  UserCertificate out;
  out.key_pem = pki::generate_key();
  const auto o = json::parse_object(
      call("POST", "/v1/users/" + url_encode(name) + "/certificate",
           bj::serialize(bj::object{{"csr", pki::make_user_request(out.key_pem, name)}, {"days", days}})));
  out.name = json::get_string(o, "name");
  out.role = json::get_string(o, "role");
  out.certificate_pem = json::get_string(o, "certificate");
  out.ca_pem = json::get_string(o, "ca");
  out.serial = std::stoull(json::get_string(o, "serial"));
  out.not_after = json::get_int(o, "not_after");
  return out;
}

std::vector<AuditRecord> AdminClient::audit(int limit, std::int64_t before_id) {
  std::string target = "/v1/audit?limit=" + std::to_string(limit);
  if (before_id > 0) target += "&before=" + std::to_string(before_id);
  auto o = json::parse_object(call("GET", target));
  std::vector<AuditRecord> out;
  for (const auto& v : json::get_array(o, "audit")) {
    const auto& a = v.as_object();
    out.push_back({json::get_int(a, "id"), json::get_int(a, "at_ms"), json::get_string(a, "actor"),
                   json::get_string(a, "remote", false), json::get_string(a, "action"),
                   json::get_string(a, "target", false), static_cast<int>(json::get_int(a, "status")),
                   json::get_string(a, "result", false)});
  }
  return out;
}

}  // namespace distrib
