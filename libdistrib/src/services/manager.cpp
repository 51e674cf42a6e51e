// The manager service: admin API, agent API, content service and the job engine's work cache.
#include <distrib/content/chunk_store.h>
#include <distrib/content/packager.h>
#include <distrib/error.h>
#include <distrib/net/http.h>
#include <distrib/services/manager.h>
#include <distrib/version.h>

#include "model/json_codec.h"
#include "util/blocking_pool.h"
#include "util/fs.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <sys/stat.h>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace distrib {

namespace bj = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

int status_of(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_argument: return 400;
    case ErrorKind::unauthorized: return 401;
    case ErrorKind::forbidden: return 403;
    case ErrorKind::not_found: return 404;
    case ErrorKind::conflict: return 409;
    case ErrorKind::integrity: return 422;
    case ErrorKind::unavailable: return 503;
    case ErrorKind::internal: return 500;
  }
  return 500;
}

HttpResponse json_response(int status, const bj::value& v) {
  return HttpResponse{status, "application/json", bj::serialize(v), {}, {}};
}

HttpResponse error_response(const Error& e) {
  return HttpResponse{status_of(e.kind()), "application/json",
                      json::error_body(to_string(e.kind()), e.what()), {}, {}};
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  std::size_t start = 1;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) parts.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

std::string random_token() {
  unsigned char b[32];
  if (RAND_bytes(b, sizeof b) != 1) throw Error("cannot generate a random admin token");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (auto c : b) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

struct Manager::Impl {
  ManagerSettings settings;
  std::unique_ptr<Store> store;
  std::unique_ptr<ChunkStore> chunks;
  std::string admin_token;
  std::unique_ptr<BlockingPool> pool;
  std::unique_ptr<HttpServer> server;

  // Work cache: hosts with open entries, and agents waiting in a long poll. Rebuilt from the
  // store at start; never the source of truth.
  struct Waiter {
    std::shared_ptr<Responder> responder;
    Clock::time_point deadline;
  };
  std::mutex mutex;
  std::unordered_set<std::string> hosts_with_work;
  std::unordered_map<std::string, std::vector<Waiter>> waiters;
  std::unordered_map<std::string, std::int64_t> last_contact;
  // Bumped whenever a host gets new work, so that a reader who saw no open entries only clears
  // the host's flag if no job arrived meanwhile (no lost wake-ups).
  std::unordered_map<std::string, std::uint64_t> work_generation;
  std::condition_variable sweeper_cv;
  std::thread sweeper;
  bool stopping = false;
  bool started = false;

  // --- helpers --------------------------------------------------------------------------

  // Runs `fn` on the store pool and answers with its result or its error.
  void blocking(Responder r, std::function<HttpResponse()> fn) {
    auto shared = std::make_shared<Responder>(std::move(r));
    pool->submit([shared, fn = std::move(fn)] {
      HttpResponse res;
      try {
        res = fn();
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::internal || e.kind() == ErrorKind::unavailable)
          spdlog::error("{}", e.what());
        res = error_response(e);
      } catch (const std::exception& e) {
        spdlog::error("unexpected failure: {}", e.what());
        res = error_response(Error(ErrorKind::internal, e.what()));
      }
      (*shared)(std::move(res));
    });
  }

  void require_admin(const HttpRequest& req) const {
    static constexpr std::string_view kPrefix = "Bearer ";
    const std::string_view auth = req.authorization;
    if (!auth.starts_with(kPrefix))
      throw Error(ErrorKind::unauthorized,
                  "this route needs the admin bearer token (see the manager's admin.token file)");
    const auto token = auth.substr(kPrefix.size());
    if (token.size() != admin_token.size() ||
        CRYPTO_memcmp(token.data(), admin_token.data(), token.size()) != 0)
      throw Error(ErrorKind::unauthorized, "the admin bearer token is not valid");
  }

  static void require_json(const HttpRequest& req) {
    if (req.content_type != "application/json")
      throw Error(ErrorKind::invalid_argument,
                  "content type must be application/json, not \"" + req.content_type + "\"");
  }

  void note_contact(const std::string& host_id) {
    std::lock_guard lock(mutex);
    last_contact[host_id] = fs::now_unix();
  }

  // --- work cache -------------------------------------------------------------------------

  std::uint64_t generation_of(const std::string& host_id) {
    std::lock_guard lock(mutex);
    return work_generation[host_id];
  }

  // Clears the host's work flag when it has no open entries and nothing arrived since `seen`.
  void settle(const std::string& host_id, std::uint64_t seen, bool has_open_entries) {
    if (has_open_entries) return;
    std::lock_guard lock(mutex);
    if (work_generation[host_id] == seen) hosts_with_work.erase(host_id);
  }

  HttpResponse work_for(const std::string& host_id) {
    const auto seen = generation_of(host_id);
    auto entries = store->open_entries_for_host(host_id);
    bj::array work;
    // One lookup per job and per package, however many of the host's entries share them.
    std::map<std::int64_t, std::optional<Job>> jobs;
    std::map<std::pair<std::string, std::string>, std::string> digests;
    for (const auto& e : entries) {
      auto [it, fresh] = jobs.try_emplace(e.job_id);
      if (fresh) it->second = store->find_job(e.job_id);
      const auto& job = it->second;
      if (!job) continue;
      auto key = std::make_pair(job->package_name, job->package_version);
      if (!digests.count(key)) {
        auto m = store->find_package(job->package_name, job->package_version);
        digests[key] = m ? m->payload_digest : "";
      }
      work.push_back(bj::object{
          {"entry_id", e.id},
          {"job_id", e.job_id},
          {"attempt", e.attempt},
          {"state", std::string(to_string(e.state))},
          {"type", std::string(to_string(job->type))},
          {"package", bj::object{{"name", job->package_name},
                                 {"version", job->package_version},
                                 {"payload_digest", digests[key]}}}});
    }
    settle(host_id, seen, !entries.empty());
    return json_response(200, bj::object{{"work", std::move(work)}});
  }

  void wake(const std::vector<std::string>& host_ids, bool has_work) {
    std::vector<std::pair<std::string, std::shared_ptr<Responder>>> woken;
    {
      std::lock_guard lock(mutex);
      for (const auto& h : host_ids) {
        if (has_work) {
          hosts_with_work.insert(h);
          ++work_generation[h];
        }
        auto it = waiters.find(h);
        if (it == waiters.end()) continue;
        for (auto& w : it->second) woken.emplace_back(h, std::move(w.responder));
        waiters.erase(it);
      }
    }
    for (auto& [h, r] : woken) {
      pool->submit([this, h = h, r = r] {
        try {
          (*r)(work_for(h));
        } catch (const Error& e) {
          (*r)(error_response(e));
        }
      });
    }
  }

  void sweep_loop() {
    std::unique_lock lock(mutex);
    while (!stopping) {
      sweeper_cv.wait_for(lock, std::chrono::milliseconds(200));
      const auto now = Clock::now();
      std::vector<std::shared_ptr<Responder>> expired;
      for (auto it = waiters.begin(); it != waiters.end();) {
        auto& list = it->second;
        for (auto w = list.begin(); w != list.end();) {
          if (w->deadline <= now || stopping) {
            expired.push_back(std::move(w->responder));
            w = list.erase(w);
          } else {
            ++w;
          }
        }
        it = list.empty() ? waiters.erase(it) : std::next(it);
      }
      if (expired.empty()) continue;
      lock.unlock();
      const auto empty = json_response(200, bj::object{{"work", bj::array{}}});
      for (auto& r : expired) (*r)(empty);
      lock.lock();
    }
  }

  // --- routes ---------------------------------------------------------------------------

  void handle(HttpRequest&& req, Responder r) {
    try {
      route(std::move(req), r);
    } catch (const Error& e) {
      // `r` was not moved when route() threw before dispatching.
      if (e.kind() == ErrorKind::internal) spdlog::error("{}", e.what());
      r(error_response(e));
    } catch (const std::exception& e) {
      spdlog::error("request failed: {}", e.what());
      r(error_response(Error(ErrorKind::internal, e.what())));
    }
  }

  [[noreturn]] static void no_route(const HttpRequest& req) {
    throw Error(ErrorKind::not_found, "no route " + req.method + " " + req.path);
  }

  void route(HttpRequest&& req, Responder& r) {
    const auto p = split_path(req.path);
    const auto& m = req.method;
    if (p.size() < 2 || p[0] != "v1") no_route(req);
    const auto& area = p[1];

    if (area == "status" && p.size() == 2 && m == "GET") {
      r(json_response(200, bj::object{{"status", "active"},
                                      {"version", distrib::version()},
                                      {"protocol", kProtocolVersion},
                                      {"key_mode", std::string(to_string(settings.key_mode))}}));
      return;
    }
    if (area == "agent") return agent_route(std::move(req), r, p);
    if (area == "content") return content_route(std::move(req), r, p);

    require_admin(req);
    if (area == "hosts" && p.size() == 2 && m == "GET") return list_hosts(r);
    if (area == "chunks") return chunk_route(std::move(req), r, p);
    if (area == "packages") return package_route(std::move(req), r, p);
    if (area == "jobs") return job_route(std::move(req), r, p);
    no_route(req);
  }

  void agent_route(HttpRequest&& req, Responder& r, const std::vector<std::string>& p) {
    if (p.size() != 3) no_route(req);
    if (p[2] == "register" && req.method == "POST") {
      require_json(req);
      auto body = json::parse_object(req.body);
      Host host = json::host_from_json(body);
      if (!is_valid_host_id(host.host_id))
        throw Error(ErrorKind::invalid_argument, "host_id \"" + host.host_id + "\" is not a UUID");
      if (host.name.empty()) throw Error(ErrorKind::invalid_argument, "host name is empty");
      // The address the manager sees comes first; it is what operators mostly know.
      if (!req.remote_address.empty()) {
        std::erase(host.addresses, req.remote_address);
        host.addresses.insert(host.addresses.begin(), req.remote_address);
      }
      host.last_seen = fs::now_unix();
      return blocking(std::move(r), [this, host] {
        store->upsert_host(host);
        note_contact(host.host_id);
        spdlog::info("host {} ({}) registered from {}", host.name, host.host_id,
                     host.addresses.empty() ? "?" : host.addresses.front());
        return json_response(200, bj::object{{"host_id", host.host_id},
                                             {"poll_timeout_seconds", settings.poll_timeout_seconds},
                                             {"key_mode", std::string(to_string(settings.key_mode))}});
      });
    }
    if (p[2] == "work" && req.method == "GET") {
      const auto host_id = req.query["host_id"];
      if (!is_valid_host_id(host_id))
        throw Error(ErrorKind::invalid_argument, "query parameter host_id must be a host UUID");
      long wait = settings.poll_timeout_seconds;
      if (auto w = req.query.find("wait"); w != req.query.end()) {
        try {
          wait = std::clamp(std::stol(w->second), 0L, static_cast<long>(settings.poll_timeout_seconds));
        } catch (const std::exception&) {
          throw Error(ErrorKind::invalid_argument, "query parameter wait must be a number of seconds");
        }
      }
      std::unique_lock lock(mutex);
      last_contact[host_id] = fs::now_unix();
      if (hosts_with_work.count(host_id)) {
        lock.unlock();
        return blocking(std::move(r), [this, host_id] { return work_for(host_id); });
      }
      if (wait == 0) {
        lock.unlock();
        r(json_response(200, bj::object{{"work", bj::array{}}}));
        return;
      }
      waiters[host_id].push_back({std::make_shared<Responder>(std::move(r)),
                                  Clock::now() + std::chrono::seconds(wait)});
      return;
    }
    if (p[2] == "report" && req.method == "POST") {
      require_json(req);
      auto body = json::parse_object(req.body);
      const auto host_id = json::get_string(body, "host_id");
      std::vector<EntryReport> reports;
      for (const auto& v : json::get_array(body, "reports")) {
        if (!v.is_object()) throw Error(ErrorKind::invalid_argument, "reports must contain objects");
        reports.push_back(json::report_from_json(v.as_object()));
      }
      return blocking(std::move(r), [this, host_id, reports] {
        bj::array results;
        for (const auto& rep : reports) {
          const auto outcome = store->apply_report(host_id, rep);
          if (outcome.kind == ReportOutcome::Kind::applied && is_final(rep.state))
            spdlog::info("entry {} on host {}: {}{}", rep.entry_id, host_id, to_string(rep.state),
                         rep.message.empty() ? "" : " (" + rep.message + ")");
          results.push_back(bj::object{{"entry_id", rep.entry_id},
                                       {"seq", rep.seq},
                                       {"outcome", std::string(to_string(outcome.kind))},
                                       {"state", std::string(to_string(outcome.current))}});
        }
        note_contact(host_id);
        const auto seen = generation_of(host_id);
        settle(host_id, seen, !store->open_entries_for_host(host_id).empty());
        return json_response(200, bj::object{{"results", std::move(results)}});
      });
    }
    no_route(req);
  }

  void content_route(HttpRequest&& req, Responder& r, const std::vector<std::string>& p) {
    if (req.method != "GET") no_route(req);
    if (p.size() == 4 && p[2] == "chunks") {
      if (!is_sha256_hex(p[3]))
        throw Error(ErrorKind::invalid_argument, "\"" + p[3] + "\" is not a chunk digest");
      HttpResponse res;
      res.content_type = "application/zstd";
      res.file_path = chunks->path_of(p[3]).string();
      r(std::move(res));
      return;
    }
    if (p.size() == 5 && p[2] == "manifests") {
      return blocking(std::move(r), [this, name = p[3], version = p[4]] {
        auto m = store->find_package(name, version);
        if (!m) throw Error(ErrorKind::not_found, "package \"" + name + "\" " + version + " does not exist");
        return json_response(200, json::to_json(*m));
      });
    }
    no_route(req);
  }

  void list_hosts(Responder& r) {
    blocking(std::move(r), [this] {
      auto hosts = store->list_hosts();
      {
        std::lock_guard lock(mutex);
        for (auto& h : hosts)
          if (auto it = last_contact.find(h.host_id); it != last_contact.end())
            h.last_seen = std::max(h.last_seen, it->second);
      }
      bj::array arr;
      for (const auto& h : hosts) arr.push_back(json::to_json(h));
      bj::array dups;
      for (auto& d : duplicate_keys(hosts, settings.key_mode)) dups.emplace_back(d);
      return json_response(200, bj::object{{"hosts", std::move(arr)},
                                           {"key_mode", std::string(to_string(settings.key_mode))},
                                           {"duplicate_keys", std::move(dups)}});
    });
  }

  void chunk_route(HttpRequest&& req, Responder& r, const std::vector<std::string>& p) {
    if (p.size() == 3 && p[2] == "missing" && req.method == "POST") {
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
    if (p.size() == 3 && req.method == "PUT") {
      const auto digest = p[2];
      if (!is_sha256_hex(digest))
        throw Error(ErrorKind::invalid_argument, "\"" + digest + "\" is not a chunk digest");
      if (req.content_type != "application/zstd")
        throw Error(ErrorKind::invalid_argument, "chunk uploads must be application/zstd, not \"" +
                                                     req.content_type + "\"");
      return blocking(std::move(r), [this, digest, body = std::move(req.body)] {
        chunks->put_compressed(digest, body, kMaxChunkSize);
        return json_response(201, bj::object{{"digest", digest}});
      });
    }
    no_route(req);
  }

  void package_route(HttpRequest&& req, Responder& r, const std::vector<std::string>& p) {
    if (p.size() == 2 && req.method == "GET") {
      return blocking(std::move(r), [this] {
        bj::array arr;
        for (const auto& s : store->list_packages()) arr.push_back(json::to_json(s));
        return json_response(200, bj::object{{"packages", std::move(arr)}});
      });
    }
    if (p.size() == 2 && req.method == "POST") {
      require_json(req);
      Manifest manifest = json::manifest_from_json_object(json::parse_object(req.body));
      validate_manifest(manifest);
      return blocking(std::move(r), [this, manifest]() mutable {
        std::size_t missing = 0;
        for (const auto& c : manifest.chunks)
          if (!chunks->contains(c.digest)) ++missing;
        if (missing)
          throw Error(ErrorKind::conflict, "package \"" + manifest.name + "\" " + manifest.version +
                                               ": " + std::to_string(missing) +
                                               " chunk(s) have not been uploaded");
        if (!manifest.created_at) manifest.created_at = fs::now_unix();
        const bool created = store->insert_package(manifest);
        if (created) spdlog::info("package {} {} registered", manifest.name, manifest.version);
        return json_response(created ? 201 : 200,
                             bj::object{{"created", created}, {"package", json::to_json(manifest)}});
      });
    }
    if (p.size() == 4 && req.method == "GET") {
      return blocking(std::move(r), [this, name = p[2], version = p[3]] {
        auto m = store->find_package(name, version);
        if (!m) throw Error(ErrorKind::not_found, "package \"" + name + "\" " + version + " does not exist");
        return json_response(200, json::to_json(*m));
      });
    }
    no_route(req);
  }

  void job_route(HttpRequest&& req, Responder& r, const std::vector<std::string>& p) {
    if (p.size() == 2 && req.method == "POST") {
      require_json(req);
      auto body = json::parse_object(req.body);
      Job job = json::job_from_json(body);
      if (job.destinations.empty())
        throw Error(ErrorKind::invalid_argument, "a job needs at least one destination");
      job.key_mode = std::string(to_string(settings.key_mode));
      job.created_by = req.remote_address;
      return blocking(std::move(r), [this, job] {
        if (!store->find_package(job.package_name, job.package_version))
          throw Error(ErrorKind::not_found, "package \"" + job.package_name + "\" " +
                                                job.package_version + " does not exist");
        auto res = resolve_destinations(store->list_hosts(), settings.key_mode, job.destinations);
        if (!res.ok()) {
          std::string msg;
          auto list = [](const std::vector<std::string>& v) {
            std::string s;
            for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
            return s;
          };
          if (!res.unknown.empty())
            msg = "unknown destination(s) by " + std::string(to_string(settings.key_mode)) + ": " +
                  list(res.unknown);
          if (!res.ambiguous.empty())
            msg += (msg.empty() ? "" : "; ") + std::string("ambiguous destination(s), claimed by several hosts: ") +
                   list(res.ambiguous);
          throw Error(ErrorKind::invalid_argument, msg + "; no job was created");
        }
        auto created = store->create_job(job, res.host_ids);
        spdlog::info("job {} created: install {} {} on {} host(s)", created.id, job.package_name,
                     job.package_version, res.host_ids.size());
        wake(res.host_ids, true);
        return json_response(201, bj::object{{"job", json::to_json(created)},
                                             {"entries", res.host_ids.size()}});
      });
    }
    if (p.size() == 2 && req.method == "GET") {
      int limit = 100;
      if (auto it = req.query.find("limit"); it != req.query.end()) {
        try {
          limit = std::clamp(std::stoi(it->second), 1, 10000);
        } catch (const std::exception&) {
          throw Error(ErrorKind::invalid_argument, "query parameter limit must be a number");
        }
      }
      return blocking(std::move(r), [this, limit] {
        bj::array arr;
        for (const auto& l : store->list_jobs(limit)) {
          auto o = json::to_json(l.job);
          o["progress"] = json::to_json(l.progress);
          arr.push_back(std::move(o));
        }
        return json_response(200, bj::object{{"jobs", std::move(arr)}});
      });
    }
    if (p.size() >= 3) {
      std::int64_t id = 0;
      try {
        std::size_t used = 0;
        id = std::stoll(p[2], &used);
        if (used != p[2].size() || id <= 0) throw std::invalid_argument("id");
      } catch (const std::exception&) {
        throw Error(ErrorKind::invalid_argument, "\"" + p[2] + "\" is not a job id");
      }
      if (p.size() == 3 && req.method == "GET") {
        return blocking(std::move(r), [this, id] {
          auto job = store->find_job(id);
          if (!job) throw Error(ErrorKind::not_found, "job " + std::to_string(id) + " does not exist");
          auto entries = store->job_entries(id);
          bj::array arr;
          for (const auto& e : entries) arr.push_back(json::to_json(e));
          return json_response(200, bj::object{{"job", json::to_json(*job)},
                                               {"progress", json::to_json(summarize(entries))},
                                               {"entries", std::move(arr)}});
        });
      }
      if (p.size() == 4 && p[3] == "cancel" && req.method == "POST") {
        return blocking(std::move(r), [this, id] {
          auto hosts = store->cancel_job(id);
          spdlog::info("job {} cancelled ({} entries)", id, hosts.size());
          return json_response(200, bj::object{{"job_id", id}, {"cancelled", hosts.size()}});
        });
      }
    }
    no_route(req);
  }
};

Manager::Manager(ManagerSettings settings, const StoreRegistry& stores)
    : impl_(std::make_unique<Impl>()) {
  auto& s = impl_->settings;
  s = std::move(settings);
  fs::ensure_writable_dir(s.state_dir, "state directory");
  if (s.store.backend == "sqlite" && s.store.path.empty()) s.store.path = (s.state_dir / "distrib.db").string();
  if (s.store.pool_size < s.store_threads + 1) s.store.pool_size = s.store_threads + 1;
  if (s.poll_timeout_seconds < 1) throw Error(ErrorKind::invalid_argument, "poll timeout must be at least 1 second");

  const auto token_file = s.state_dir / "admin.token";
  std::error_code ec;
  if (std::filesystem::exists(token_file, ec)) {
    impl_->admin_token = trim(fs::read_file(token_file));
    if (impl_->admin_token.size() < 32)
      throw Error(ErrorKind::invalid_argument, "admin token in " + token_file.string() +
                                                   " is too short (32+ characters); delete it to have a new one made");
  } else {
    impl_->admin_token = random_token();
    fs::write_file_atomic(token_file, impl_->admin_token + "\n");
    ::chmod(token_file.c_str(), 0600);
  }
  impl_->chunks = std::make_unique<ChunkStore>(s.state_dir / "chunks");
  impl_->store = stores.open(s.store);
}

Manager::~Manager() { stop(); }

void Manager::start() {
  auto& i = *impl_;
  if (i.started) return;
  for (auto& h : i.store->hosts_with_open_entries()) i.hosts_with_work.insert(h);
  i.pool = std::make_unique<BlockingPool>(i.settings.store_threads);
  HttpServerSettings hs;
  hs.address = i.settings.listen_address;
  hs.port = i.settings.port;
  hs.threads = i.settings.network_threads;
  hs.tls_cert_file = i.settings.tls_cert_file;
  hs.tls_key_file = i.settings.tls_key_file;
  hs.body_limit = 4 * 1024 * 1024;
  hs.body_limit_for = [](std::string_view method, std::string_view target) -> std::uint64_t {
    // Chunk uploads carry up to one compressed chunk (zstd never grows data by more than a little).
    if (method == "PUT" && target.starts_with("/v1/chunks/")) return kMaxChunkSize + 64 * 1024;
    return 0;
  };
  i.server = std::make_unique<HttpServer>(hs, [this](HttpRequest&& req, Responder r) {
    impl_->handle(std::move(req), std::move(r));
  });
  i.server->start();
  i.sweeper = std::thread([this] { impl_->sweep_loop(); });
  i.started = true;
  fs::write_file_atomic(i.settings.state_dir / "endpoint", url() + "\n");
  spdlog::info("manager listening on {} (database: {}, key mode: {}, {} host(s) with open work)",
               url(), i.settings.store.backend, to_string(i.settings.key_mode), i.hosts_with_work.size());
}

void Manager::stop() {
  auto& i = *impl_;
  if (!i.started) return;
  i.started = false;
  {
    std::lock_guard lock(i.mutex);
    i.stopping = true;
  }
  i.sweeper_cv.notify_all();
  if (i.sweeper.joinable()) i.sweeper.join();
  // Agents in a long poll get an empty answer and come back to whoever serves next.
  decltype(i.waiters) waiting;
  {
    std::lock_guard lock(i.mutex);
    waiting.swap(i.waiters);
  }
  for (auto& [host, list] : waiting)
    for (auto& w : list) (*w.responder)(json_response(200, bj::object{{"work", bj::array{}}}));
  i.pool->stop();
  i.server->stop();
}

std::uint16_t Manager::port() const noexcept { return impl_->server ? impl_->server->port() : impl_->settings.port; }

std::string Manager::url() const {
  const auto& s = impl_->settings;
  const bool tls = !s.tls_cert_file.empty();
  const bool v6 = s.listen_address.find(':') != std::string::npos;
  return std::string(tls ? "https://" : "http://") + (v6 ? "[" + s.listen_address + "]" : s.listen_address) +
         ":" + std::to_string(port());
}

std::filesystem::path Manager::admin_token_file() const { return impl_->settings.state_dir / "admin.token"; }
Store& Manager::store() noexcept { return *impl_->store; }

}  // namespace distrib
