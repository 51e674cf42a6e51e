// The manager service: admin API, agent API, content service and the job engine's work cache.
#include <distrib/content/chunk_store.h>
#include <distrib/content/packager.h>
#include <distrib/error.h>
#include <distrib/net/http.h>
#include <distrib/services/manager.h>
#include <distrib/version.h>

#include "model/json_codec.h"
#include "services/manager/http_util.h"
#include "services/manager/router.h"
#include "services/observe.h"
#include "services/parent_link.h"
#include "services/system_info.h"
#include "services/upstream.h"
#include "util/blocking_pool.h"
#include "util/fs.h"
#include "util/byte_cache.h"
#include "util/timer_queue.h"
#include "util/random.h"

#include <distrib/content/digest.h>
#include <distrib/model/inventory.h>
#include <distrib/model/units.h>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <atomic>
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
using manager::Access;
using manager::error_response;
using manager::json_response;
using manager::PathSegments;
using manager::query_number;
using manager::require_json;

namespace {

std::string random_token() { return util::random_hex(32, "admin token"); }

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// What kind of contact a poll is: the first after the agent started (at-start installs are
// due), or its last before an orderly stop (at-stop installs are due).
struct PollFlags {
  bool start = false;
  bool stopping = false;
};

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
  std::int64_t started_unix = 0;

  std::string my_id;               // this manager's host identifier
  std::vector<std::string> tree_path;  // host ids from this manager up to the top
  // Hosts that moved away from a relay below: told to that relay in its next work answer.
  std::unordered_map<std::string, std::set<std::string>> released;

  // Content counters (GET /v1/stats).
  struct Served {
    std::uint64_t chunks = 0, bytes = 0;
  };
  std::mutex stats_mutex;
  std::map<std::string, Served> served_by;
  std::atomic<std::uint64_t> cache_hits{0}, cache_misses{0};

  // Transfers: admission slots, per-link pacing, paced answers.
  std::unique_ptr<TimerQueue> timers;
  std::unique_ptr<ByteCache> hot_chunks;  // compressed chunks recently sent in batches
  std::mutex transfer_mutex;
  std::unordered_map<std::string, Clock::time_point> active_transfers;  // requester → last request
  std::unordered_map<std::string, Clock::time_point> link_free;  // requester → when its link is free
  std::atomic<std::uint64_t> busy_answers{0};
  // Fault injection for tests of the receivers' verification: the next N chunks served in
  // batches are corrupted on the wire (DISTRIB_FAULT_CORRUPT_CHUNKS).
  std::atomic<std::int64_t> corrupt_left{0};

  // --- relay manager: the link to the parent and the threads that use it
  std::unique_ptr<ParentLink> link;
  std::unique_ptr<UpstreamFetcher> upstream;
  std::unique_ptr<ClientSet> poll_clients, sync_clients;
  std::thread poller, syncer, maintainer;
  std::mutex relay_mutex;
  std::condition_variable relay_cv;
  bool sync_wanted = false;
  bool maintain_wanted = false;
  std::string registered_url;                 // the parent we are registered with; empty: none
  std::unordered_map<std::string, std::int64_t> seen_since_sync;  // last contacts not yet reported up
  std::int64_t own_seq = 1;                   // sequence of this relay's reports on its own entries
  std::vector<EntryReport> own_unsent;        // those not yet acknowledged by the parent

  // Scheduler: expiry, start times and retry backoff, daily windows, rollout waves.
  std::thread scheduler;
  std::mutex sched_mutex;
  std::condition_variable sched_cv;
  bool sched_poked = false;
  bool sched_stopping = false;
  std::unique_ptr<ClientPool> join_clients;  // relay: joins, inventory and uploads forwarded to the parent
  // Inventory reports waiting for the ingest thread (group commit).
  struct QueuedReport {
    InventoryReport report;
    std::shared_ptr<Responder> responder;
  };
  std::mutex ingest_mutex;
  std::condition_variable ingest_cv;
  std::vector<QueuedReport> ingest_queue;
  bool ingest_stopping = false;
  std::thread ingester;
  // Inventory field definitions (user inventory), read from the store on first use.
  std::mutex fields_mutex;
  std::optional<std::vector<InventoryField>> fields_cache;

  // Events, audit, metrics.
  std::unique_ptr<EventDispatcher> events;
  std::mutex audit_mutex;
  std::unordered_map<std::string, std::pair<std::int64_t, int>> refused_by;  // address → (last record, since)
  std::atomic<std::uint64_t> polls{0}, request_bytes{0};

  bool is_relay() const noexcept { return !settings.parents.empty(); }

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

  void note_contact(const std::string& id) {
    {
      std::lock_guard lock(mutex);
      last_contact[id] = fs::now_unix();
    }
    note_for_sync(id);
  }

  // At a relay: the contact goes upward with the next sync.
  void note_for_sync(const std::string& id) {
    if (!is_relay()) return;
    std::lock_guard lock(relay_mutex);
    seen_since_sync[id] = fs::now_unix();
  }

  // Wakes the relay's syncer: something is to be reported upward.
  void notify_sync() {
    if (!is_relay()) return;
    {
      std::lock_guard lock(relay_mutex);
      sync_wanted = true;
    }
    relay_cv.notify_all();
  }

  // `host` now lives elsewhere: the relay `via` it was reached through forgets it.
  void release(const std::string& via, const std::string& host) {
    {
      std::lock_guard lock(mutex);
      released[via].insert(host);
    }
    wake({via}, true);
  }

  // Registers or updates a host reached through the direct child `via`; releases it from the
  // relay it was reached through before.
  HostChange record_host(Host host, const std::string& via) {
    host.via = via;
    host.approved = settings.auto_register;
    // A host registering directly may have been below another parent meanwhile: tell upward.
    const auto change = store->upsert_host(host, via == host.host_id);
    if (via != host.host_id) {
      // Back below a relay that was told to forget it: that news is stale now.
      std::lock_guard lock(mutex);
      if (auto it = released.find(via); it != released.end()) it->second.erase(host.host_id);
    }
    if (!change.previous_via.empty() && change.previous_via != via &&
        change.previous_via != host.host_id) {
      spdlog::info("host {} ({}) moved from below {} to below {}", host.name, host.host_id,
                   change.previous_via, via);
      release(change.previous_via, host.host_id);
    }
    if (change.created && !settings.auto_register)
      spdlog::warn("host {} ({}) registered and waits for approval (distribctl hosts approve {})",
                   host.name, host.host_id, host.name);
    if (change.changed || via == host.host_id) notify_sync();
    if (change.changed) {
      apply_join_policies(host.host_id);
      report_conflicts(host);
    }
    return change;
  }

  // A host that now answers to a key another host answers to (name or address, by the key
  // mode) makes that key ambiguous: operations by it are refused until one of them changes.
  void report_conflicts(const Host& host) {
    const auto mode = settings.key_mode;
    if (mode == HostKeyMode::host_id) return;
    std::vector<Event> found;
    const auto keys = mode == HostKeyMode::name ? std::vector<std::string>{host.name} : host.addresses;
    for (const auto& key : keys) {
      for (const auto& other : store->hosts_with_key(mode, key)) {
        if (other.host_id == host.host_id || !host_matches(other, mode, key)) continue;
        Event e;
        e.type = "host.conflict";
        e.severity = Severity::warning;
        e.host_id = host.host_id;
        e.subject = host.name;
        e.message = "hosts " + host.name + " (" + host.host_id + ") and " + other.name + " (" + other.host_id +
                    ") both answer to " + std::string(mode == HostKeyMode::name ? "name " : "address ") + key +
                    "; jobs refuse it as a destination until one changes";
        found.push_back(std::move(e));
        spdlog::warn("{}", found.back().message);
      }
    }
    if (!found.empty()) store->record_events(found);
  }

  // ID groups whose join policy the host matches take it in (evaluated at registration, when a
  // host's name or addresses change, at approval and when a group is created).
  void apply_join_policies(const std::string& host_id) {
    auto host = store->find_host(host_id);
    if (!host || !host->approved) return;
    std::vector<std::string> member_of;
    bool loaded = false;
    for (const auto& g : store->list_id_groups()) {
      if (g.policy.empty() || !policy_matches(g.policy, *host)) continue;
      if (!loaded) {
        member_of = store->id_groups_of(host_id);
        loaded = true;
      }
      if (std::find(member_of.begin(), member_of.end(), g.name) != member_of.end()) continue;
      auto change = store->join_id_group(g.name, {host_id}, JoinMethod::policy);
      spdlog::info("host {} joined ID group {} by its join policy ({} standing job(s))", host->name, g.name,
                   change.entries);
      wake(change.vias, true);
    }
  }

  // --- work cache -------------------------------------------------------------------------

  std::uint64_t generation_of(const std::string& host_id) {
    std::lock_guard lock(mutex);
    return work_generation[host_id];
  }

  static int minute_of_day_now() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    return tm.tm_hour * 60 + tm.tm_min;
  }

  // Is the entry due on this contact: ready (start time, retry backoff, released wave) and its
  // install timing met?
  static bool due(const JobEntry& e, const Job& job, PollFlags flags, std::int64_t now, int minute) {
    if (e.ready_at > now || e.state == EntryState::suspended) return false;
    switch (job.schedule.timing) {
      case InstallTiming::immediate: return !flags.stopping;
      case InstallTiming::at_start: return flags.start;
      case InstallTiming::at_stop: return flags.stopping;
      case InstallTiming::window: return !flags.stopping && job.schedule.window.contains(minute);
    }
    return false;
  }

  // The host's open entries due on this contact, with their jobs.
  std::vector<std::pair<JobEntry, Job>> due_entries(const std::string& host_id, PollFlags flags) {
    std::vector<std::pair<JobEntry, Job>> out;
    std::map<std::int64_t, std::optional<Job>> jobs;  // one lookup per job
    const auto now = fs::now_unix();
    const int minute = minute_of_day_now();
    for (auto& e : store->open_entries_for_host(host_id)) {
      auto [it, fresh] = jobs.try_emplace(e.job_id);
      if (fresh) it->second = store->find_job(e.job_id);
      if (!it->second || !due(e, *it->second, flags, now, minute)) continue;
      out.emplace_back(std::move(e), *it->second);
    }
    return out;
  }

  // Does the direct child have work due: its own entries, or entries to push below it?
  bool has_work(const std::string& child) {
    return !due_entries(child, {}).empty() || !store->entries_to_push(child, 1).empty();
  }

  // Clears the host's work flag when it has no open entries and nothing arrived since `seen`.
  void settle(const std::string& host_id, std::uint64_t seen, bool has_open_entries) {
    if (has_open_entries) return;
    std::lock_guard lock(mutex);
    if (work_generation[host_id] == seen) hosts_with_work.erase(host_id);
  }

  HttpResponse work_for(const std::string& host_id, PollFlags flags = {}) {
    const auto seen = generation_of(host_id);
    const auto entries = due_entries(host_id, flags);
    bj::array work;
    std::map<std::pair<std::string, std::string>, std::string> digests;  // one lookup per package
    for (const auto& [e, job] : entries) {
      bj::object item{{"entry_id", e.id},
                      {"job_id", e.job_id},
                      {"attempt", e.attempt},
                      {"state", std::string(to_string(e.state))},
                      {"type", std::string(to_string(job.type))},
                      {"timing", std::string(to_string(job.schedule.timing))}};
      if (needs_package(job.type)) {
        auto key = std::make_pair(job.package_name, job.package_version);
        if (!digests.count(key)) {
          auto m = store->find_package(job.package_name, job.package_version);
          digests[key] = m ? m->payload_digest : "";
        }
        item["split"] = json::to_json(hop_split(job.split, settings.split_max));
        item["package"] = bj::object{{"name", job.package_name},
                                     {"version", job.package_version},
                                     {"payload_digest", digests[key]}};
      }
      if (job.type == JobType::collect_files) item["collect"] = json::to_json(job.collect);
      work.push_back(std::move(item));
    }
    // Entries of the subtree below a relay that it has not stored yet (none for an agent).
    bj::array routed;
    for (const auto& x : store->entries_to_push(host_id, 500)) routed.push_back(json::to_json(x));
    bj::array gone;
    {
      std::lock_guard lock(mutex);
      if (auto it = released.find(host_id); it != released.end()) {
        for (const auto& h : it->second) gone.emplace_back(h);
        released.erase(it);
      }
    }
    if (!flags.start && !flags.stopping) settle(host_id, seen, !entries.empty() || !routed.empty());
    bj::object out{{"work", std::move(work)}};
    if (!routed.empty()) out["routed"] = std::move(routed);
    if (!gone.empty()) out["released"] = std::move(gone);
    return json_response(200, out);
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
        } catch (const std::exception& e) {
          spdlog::error("work for {}: {}", h, e.what());
          (*r)(error_response(Error(ErrorKind::internal, e.what())));
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

  // --- scheduler ------------------------------------------------------------------------

  void poke_scheduler() {
    {
      std::lock_guard lock(sched_mutex);
      sched_poked = true;
    }
    sched_cv.notify_all();
  }

  struct SchedulerState {
    std::int64_t contacts_flushed = 0;  // when last contacts last went to the store
    std::int64_t events_pruned = 0;     // when old events were last deleted
    std::int64_t expired_upto = 0;  // expiries up to here are done (0: every past one at start)
    std::int64_t ready_upto = 0;
    std::map<std::int64_t, bool> window_open;
  };

  // Last contacts go to the store every 10 s (they are kept in memory between), then hosts
  // silent for longer than silent_after_seconds are reported (host.silent / host.returned).
  void flush_contacts(SchedulerState& st, std::int64_t now) {
    if (now - st.contacts_flushed < 10) return;
    std::vector<std::pair<std::string, std::int64_t>> seen;
    {
      std::lock_guard lock(mutex);
      for (const auto& [h, t] : last_contact)
        if (t > st.contacts_flushed) seen.emplace_back(h, t);
      // A host waiting in a long poll is in contact now.
      for (const auto& [h, list] : waiters)
        if (!list.empty()) seen.emplace_back(h, now);
    }
    store->touch_hosts(seen);
    st.contacts_flushed = now;
    // Silence is judged once this process has been up for the whole period: a restarted (or
    // newly active) manager does not call everyone silent before they had a chance to poll.
    if (settings.silent_after_seconds > 0 && now - started_unix >= settings.silent_after_seconds) {
      if (const int n = store->mark_silent_hosts(now - settings.silent_after_seconds); n > 0)
        spdlog::info("{} host(s) went silent or came back", n);
    }
  }

  // Hourly: events past their retention that every sink has taken go.
  void prune_events(SchedulerState& st, std::int64_t now) {
    if (settings.event_retention_days <= 0 || now - st.events_pruned < 3600) return;
    st.events_pruned = now;
    std::int64_t upto = store->last_event_id();
    for (const auto& s : events->status()) upto = std::min(upto, s.cursor);
    const auto before = (now - std::int64_t{settings.event_retention_days} * 86400) * 1000;
    if (const auto n = store->prune_events(before, upto); n > 0)
      spdlog::info("{} event(s) older than {} day(s) deleted", n, settings.event_retention_days);
  }

  void schedule_tick(SchedulerState& st) {
    const auto now = fs::now_unix();
    try {
      flush_contacts(st, now);
      prune_events(st, now);
    } catch (const std::exception& e) {
      spdlog::warn("housekeeping: {}", e.what());
    }
    if (auto vias = store->expire_entries(st.expired_upto, now); !vias.empty()) {
      spdlog::info("entries expired below {} host(s)", vias.size());
      wake(vias, true);
    }
    st.expired_upto = now;
    if (auto vias = store->vias_ready_between(st.ready_upto, now); !vias.empty()) wake(vias, true);
    st.ready_upto = now;
    const int minute = minute_of_day_now();
    std::map<std::int64_t, bool> open_now;
    for (const auto& job : store->open_window_jobs()) {
      const bool open = job.schedule.window.contains(minute);
      if (open && !st.window_open[job.id]) {
        spdlog::info("job {}: install window {} opened", job.id, to_string(job.schedule.window));
        wake(store->vias_with_open_entries(job.id), true);
      }
      open_now[job.id] = open;
    }
    st.window_open.swap(open_now);
    for (const auto& job : store->running_rollouts()) {
      const auto verdict = evaluate_rollout(job.rollout, job.current_wave, store->wave_counts(job.id));
      if (verdict.action == RolloutVerdict::Action::advance) {
        const int next = job.current_wave + 1;
        auto vias = store->release_wave(job.id, next);
        spdlog::info("job {}: wave {} of {} released ({} %)", job.id, next, job.rollout.waves.size(),
                     job.rollout.waves[static_cast<std::size_t>(next - 1)]);
        wake(vias, true);
      } else if (verdict.action == RolloutVerdict::Action::stop) {
        store->stop_rollout(job.id, verdict.reason);
        spdlog::warn("job {}: rollout stopped at wave {}: {}", job.id, job.current_wave, verdict.reason);
      }
    }
  }

  void schedule_loop() {
    SchedulerState st;
    st.ready_upto = fs::now_unix();  // entries ready before the start are in the work cache already
    std::unique_lock lock(sched_mutex);
    while (!sched_stopping) {
      sched_cv.wait_for(lock, std::chrono::seconds(1), [&] { return sched_stopping || sched_poked; });
      if (sched_stopping) break;
      sched_poked = false;
      lock.unlock();
      try {
        schedule_tick(st);
      } catch (const std::exception& e) {
        spdlog::error("scheduler: {}", e.what());
      }
      lock.lock();
    }
  }

  // --- routes ---------------------------------------------------------------------------

  // The audit trail of an admin request: the request (without its body) and its answer,
  // written off the network thread once the answer is given (a refused token included).
  void audit_answer(const HttpRequest& req, Responder& r) {
    auto head = std::make_shared<HttpRequest>();
    head->method = req.method;
    head->path = req.path;
    head->remote_address = req.remote_address;
    if (auto it = req.headers.find("x-distrib-actor"); it != req.headers.end()) head->headers.insert(*it);
    r.on_answer([this, head](const HttpResponse& res) {
      if (!audited(*head, res.status) || !pool) return;
      auto rec = audit_record(*head, res, fs::now_unix_ms());
      if (res.status == 401 || res.status == 403) {
        // Refused credentials: at most one record per address every 10 s, counting the rest,
        // so that anyone who can reach the port cannot flood the trail and the store.
        std::lock_guard lock(audit_mutex);
        if (refused_by.size() > 10000) refused_by.clear();
        auto& seen = refused_by[rec.remote];
        if (rec.at_ms - seen.first < 10000) {
          ++seen.second;
          return;
        }
        if (seen.second > 0) rec.result += " (and " + std::to_string(seen.second) + " more refused from here before)";
        seen = {rec.at_ms, 0};
      }
      pool->submit([this, rec = std::move(rec)] {
        try {
          store->append_audit({rec});
        } catch (const std::exception& e) {
          spdlog::error("audit trail: cannot record {} by {} ({}): {}", rec.action, rec.actor, rec.result, e.what());
        }
      });
    });
  }

  manager::Router router;

  void handle(HttpRequest&& req, Responder r) {
    request_bytes += req.body.size();
    try {
      router.dispatch(std::move(req), r);
    } catch (const Error& e) {
      // `r` was not moved when the route threw before handing it on.
      if (e.kind() == ErrorKind::internal) spdlog::error("{}", e.what());
      r(error_response(e));
    } catch (const std::exception& e) {
      spdlog::error("request failed: {}", e.what());
      r(error_response(Error(ErrorKind::internal, e.what())));
    }
  }

  // The route table: every route with its access level. The router checks access; a test pins
  // this list (GET /v1/routes shows it).
  void register_routes() {
    using R = manager::Route;
    auto& t = router;
    const auto on = [this](void (Impl::*fn)(HttpRequest&&, Responder&, const PathSegments&)) {
      return [this, fn](HttpRequest&& req, Responder& r, const PathSegments& p) { (this->*fn)(std::move(req), r, p); };
    };
    t.check(Access::admin, [this](const HttpRequest& req) { require_admin(req); });
    t.on_admin([this](const HttpRequest& req, Responder& r) { audit_answer(req, r); });
    // Requests that match no route: under /v1/agent, /v1/relay and /v1/content anyone hears
    // "no route"; anywhere else under /v1 only an administrator does.
    t.realm("/v1/agent", Access::agent);
    t.realm("/v1/content", Access::agent);
    t.realm("/v1/relay", Access::relay);
    t.realm("/v1/{area}", Access::admin);

    // observability (open)
    if (settings.metrics) {
      t.add(R{"GET", "/metrics", Access::open, on(&Impl::get_metrics)});
      t.add(R{"HEAD", "/metrics", Access::open, on(&Impl::get_metrics)});
    }
    t.add(R{"GET", "/v1/status", Access::open, on(&Impl::get_status)});
    // agents and relays below: registration, work, reports, joins, inventory, collection, content
    t.add(R{"POST", "/v1/agent/register", Access::agent, on(&Impl::agent_register)});
    t.add(R{"GET", "/v1/agent/work", Access::agent, on(&Impl::agent_work)});
    t.add(R{"POST", "/v1/agent/join", Access::agent, on(&Impl::agent_join)});
    t.add(R{"GET", "/v1/agent/transfer", Access::agent, on(&Impl::agent_transfer)});
    t.add(R{"POST", "/v1/agent/inventory", Access::agent, on(&Impl::agent_inventory)});
    t.add(R{"GET", "/v1/agent/inventory-fields", Access::agent, on(&Impl::agent_inventory_fields)});
    t.add(R{"POST", "/v1/agent/collect", Access::agent, on(&Impl::agent_collect)});
    t.add(R{"POST", "/v1/agent/report", Access::agent, on(&Impl::agent_report)});
    t.add(R{"POST", "/v1/content/chunks", Access::agent, on(&Impl::content_chunk_batch)});
    t.add(R{"GET", "/v1/content/chunks/{digest}", Access::agent, on(&Impl::content_chunk)});
    t.add(R{"GET", "/v1/content/manifests/{name}/{version}", Access::agent, on(&Impl::content_manifest)});
    t.add(R{"POST", "/v1/relay/sync", Access::relay, on(&Impl::relay_sync)});
    // administration
    t.add(R{"GET", "/v1/routes", Access::admin, on(&Impl::get_routes)});
    t.add(R{"GET", "/v1/cluster/status", Access::admin, on(&Impl::get_cluster_status)});
    t.add(R{"GET", "/v1/hosts", Access::admin, on(&Impl::list_hosts)});
    t.add(R{"POST", "/v1/hosts/approve", Access::admin, on(&Impl::approve_hosts)});
    t.add(R{"GET", "/v1/stats", Access::admin, on(&Impl::stats)});
    t.add(R{"POST", "/v1/chunks/missing", Access::admin, on(&Impl::chunks_missing)});
    t.add(R{"PUT", "/v1/chunks/{digest}", Access::admin, on(&Impl::chunk_upload)});
    t.add(R{"GET", "/v1/packages", Access::admin, on(&Impl::package_list)});
    t.add(R{"POST", "/v1/packages", Access::admin, on(&Impl::package_register)});
    t.add(R{"GET", "/v1/packages/{name}/{version}", Access::admin, on(&Impl::package_show)});
    t.add(R{"POST", "/v1/jobs", Access::admin, on(&Impl::job_create)});
    t.add(R{"GET", "/v1/jobs", Access::admin, on(&Impl::job_list)});
    t.add(R{"GET", "/v1/jobs/{id}", Access::admin, on(&Impl::job_show)});
    t.add(R{"GET", "/v1/jobs/{id}/files", Access::admin, on(&Impl::job_files)});
    t.add(R{"GET", "/v1/jobs/{id}/files/{host}", Access::admin, on(&Impl::job_file)});
    t.add(R{"POST", "/v1/jobs/{id}/retry", Access::admin, on(&Impl::job_retry)});
    t.add(R{"POST", "/v1/jobs/{id}/complete-now", Access::admin, on(&Impl::job_complete_now)});
    t.add(R{"POST", "/v1/jobs/{id}/cancel", Access::admin, on(&Impl::job_cancel)});
    t.add(R{"POST", "/v1/transfers/suspend", Access::admin, on(&Impl::transfers_suspend_resume)});
    t.add(R{"POST", "/v1/transfers/resume", Access::admin, on(&Impl::transfers_suspend_resume)});
    t.add(R{"GET", "/v1/groups", Access::admin, on(&Impl::group_list)});
    t.add(R{"POST", "/v1/groups", Access::admin, on(&Impl::group_create)});
    t.add(R{"GET", "/v1/groups/{name}", Access::admin, on(&Impl::group_show)});
    t.add(R{"DELETE", "/v1/groups/{name}", Access::admin, on(&Impl::group_delete)});
    t.add(R{"POST", "/v1/groups/{name}/members", Access::admin, on(&Impl::group_members)});
    t.add(R{"GET", "/v1/id-groups", Access::admin, on(&Impl::id_group_list)});
    t.add(R{"POST", "/v1/id-groups", Access::admin, on(&Impl::id_group_create)});
    t.add(R{"GET", "/v1/id-groups/{name}", Access::admin, on(&Impl::id_group_show)});
    t.add(R{"DELETE", "/v1/id-groups/{name}", Access::admin, on(&Impl::id_group_delete)});
    t.add(R{"POST", "/v1/id-groups/{name}/members", Access::admin, on(&Impl::id_group_members)});
    t.add(R{"GET", "/v1/inventory", Access::admin, on(&Impl::inventory_query)});
    t.add(R{"GET", "/v1/inventory/fields", Access::admin, on(&Impl::inventory_fields_list)});
    t.add(R{"POST", "/v1/inventory/fields", Access::admin, on(&Impl::inventory_field_define)});
    t.add(R{"DELETE", "/v1/inventory/fields/{name}", Access::admin, on(&Impl::inventory_field_delete)});
    t.add(R{"GET", "/v1/inventory/hosts/{key}", Access::admin, on(&Impl::inventory_host)});
    t.add(R{"GET", "/v1/inventory/hosts/{key}/history", Access::admin, on(&Impl::inventory_host)});
    t.add(R{"GET", "/v1/events", Access::admin, on(&Impl::events_page)});
    t.add(R{"GET", "/v1/events/stream", Access::admin, on(&Impl::events_stream)});
    t.add(R{"GET", "/v1/events/sinks", Access::admin, on(&Impl::events_sinks)});
    t.add(R{"GET", "/v1/audit", Access::admin, on(&Impl::audit_route)});
  }

  void get_status(HttpRequest&&, Responder& r, const PathSegments&) {
    bj::array up;
    {
      std::lock_guard lock(relay_mutex);
      for (const auto& h : tree_path) up.emplace_back(h);
    }
    r(json_response(200, bj::object{{"status", "active"},
                                    {"version", distrib::version()},
                                    {"protocol", kProtocolVersion},
                                    {"role", is_relay() ? "relay" : "manager"},
                                    {"host_id", my_id},
                                    {"path", std::move(up)},
                                    {"key_mode", std::string(to_string(settings.key_mode))}}));
  }

  void get_routes(HttpRequest&&, Responder& r, const PathSegments&) {
    bj::array out;
    for (const auto& route : router.routes())
      out.push_back(bj::object{{"method", route.method}, {"path", route.pattern}, {"access", std::string(to_string(route.access))}});
    r(json_response(200, bj::object{{"routes", std::move(out)}}));
  }

  void get_cluster_status(HttpRequest&&, Responder& r, const PathSegments&) {
    if (!settings.cluster_status)
      throw Error(ErrorKind::not_found, "this manager is not clustered (distribd --failover is not set)");
    return blocking(std::move(r), [this] {
      HttpResponse res;
      res.body = settings.cluster_status();
      return res;
    });
  }

  // --- events, audit, metrics ----------------------------------------------------------

  static EventFilter filter_of(const HttpRequest& req) {
    EventFilter f;
    if (auto it = req.query.find("type"); it != req.query.end() && !it->second.empty())
      f.types = parse_event_type_patterns(it->second);
    if (auto it = req.query.find("severity"); it != req.query.end() && !it->second.empty())
      f.min_severity = parse_severity(it->second);
    return f;
  }

  void events_page(HttpRequest&& req, Responder& r, const PathSegments&) {
    const auto filter = filter_of(req);
    {
      // A page of the outbox: after an id, or the newest `limit` events.
      const long limit = query_number(req, "limit", 100, 1, 10000);
      const bool tail = req.query.find("after") == req.query.end();
      const long after = query_number(req, "after", 0, 0, std::numeric_limits<long>::max());
      return blocking(std::move(r), [this, filter, limit, tail, after] {
        const auto last = store->last_event_id();
        std::vector<Event> page;
        // Newest `limit` that match: read backwards; else forwards from `after`. Either way
        // at most 100,000 events are looked at for one page.
        std::int64_t bound = tail ? 0 : after;
        for (int read = 0; static_cast<long>(page.size()) < limit && read < 100000;) {
          const auto batch = tail ? store->events_before(bound, 500) : store->events_after(bound, 500);
          for (const auto& e : batch) {
            bound = e.id;
            if (filter.matches(e) && static_cast<long>(page.size()) < limit) page.push_back(e);
          }
          read += static_cast<int>(batch.size());
          if (batch.size() < 500) break;
        }
        if (tail) std::reverse(page.begin(), page.end());
        std::string body = "{\"events\":[";
        for (std::size_t k = 0; k < page.size(); ++k) body += (k ? "," : "") + event_to_json(page[k]);
        body += "],\"last_id\":" + std::to_string(last) + "}";
        HttpResponse res;
        res.body = std::move(body);
        return res;
      });
    }
  }

  void events_stream(HttpRequest&& req, Responder& r, const PathSegments&) {
    const auto filter = filter_of(req);
    {
      // Server-sent events: from Last-Event-ID or ?after=, else from now on.
      std::int64_t after = -1;
      if (auto it = req.headers.find("last-event-id"); it != req.headers.end() && !it->second.empty()) {
        try {
          after = std::stoll(it->second);
        } catch (const std::exception&) {
          throw Error(ErrorKind::invalid_argument, "Last-Event-ID must be an event id, not \"" + it->second + "\"");
        }
      } else if (req.query.count("after")) {
        after = query_number(req, "after", 0, 0, std::numeric_limits<long>::max());
      }
      return blocking(std::move(r), [this, filter, after] {
        HttpResponse res;
        res.content_type = "text/event-stream";
        res.stream = std::make_shared<HttpStream>();
        const auto from = after >= 0 ? after : store->last_event_id();
        // The position first (an "id:" without data), so a client that reconnects before any
        // event arrives resumes from here.
        res.stream->write("retry: 2000\nid: " + std::to_string(from) + "\n\n");
        events->subscribe(res.stream, from, filter);
        return res;
      });
    }
  }

  void events_sinks(HttpRequest&& req, Responder& r, const PathSegments&) {
    filter_of(req);  // a malformed filter is refused here too
    {
      return blocking(std::move(r), [this] {
        bj::array sinks;
        for (const auto& s : events->status())
          sinks.push_back(bj::object{{"name", s.name},
                                     {"type", s.type},
                                     {"target", s.target},
                                     {"cursor", s.cursor},
                                     {"pending", s.pending},
                                     {"delivered", s.delivered},
                                     {"failures", s.failures},
                                     {"dropped", s.dropped},
                                     {"last_error", s.last_error},
                                     {"last_error_ms", s.last_error_ms}});
        return json_response(200, bj::object{{"sinks", std::move(sinks)}});
      });
    }
  }

  void audit_route(HttpRequest&& req, Responder& r, const PathSegments&) {
    const long limit = query_number(req, "limit", 50, 1, 10000);
    const long before = query_number(req, "before", 0, 0, std::numeric_limits<long>::max());
    return blocking(std::move(r), [this, limit, before] {
      bj::array out;
      for (const auto& a : store->audit_records(static_cast<int>(limit), before))
        out.push_back(bj::object{{"id", a.id},
                                 {"at_ms", a.at_ms},
                                 {"time", format_rfc3339_ms(a.at_ms)},
                                 {"actor", a.actor},
                                 {"remote", a.remote},
                                 {"action", a.action},
                                 {"target", a.target},
                                 {"status", a.status},
                                 {"result", a.result}});
      return json_response(200, bj::object{{"audit", std::move(out)}});
    });
  }

  void get_metrics(HttpRequest&&, Responder& r, const PathSegments&) {
    MetricsSnapshot m;
    m.version = distrib::version();
    m.role = is_relay() ? "relay" : "manager";
    m.host_id = my_id;
    {
      std::lock_guard lock(mutex);
      const auto cutoff = fs::now_unix() - 2 * std::max(settings.poll_timeout_seconds, settings.poll_interval_seconds);
      for (const auto& [h, t] : last_contact)
        if (t >= cutoff) ++m.agents_connected;
      for (const auto& [h, list] : waiters) m.polls_waiting += static_cast<std::int64_t>(list.size());
    }
    m.polls = polls.load();
    {
      std::lock_guard lock(stats_mutex);
      for (const auto& [h, sv] : served_by) m.sent_to[h] = {sv.chunks, sv.bytes};
    }
    if (upstream) m.received_from_parent = upstream->bytes();
    m.request_bytes_received = request_bytes.load();
    m.cache_hits = cache_hits.load();
    m.cache_misses = cache_misses.load();
    m.busy_answers = busy_answers.load();
    {
      std::lock_guard lock(transfer_mutex);
      m.active_transfers = static_cast<std::int64_t>(active_transfers.size());
    }
    m.event_streams = events->subscribers();
    blocking(std::move(r), [this, m]() mutable {
      m.counts = store->counts();
      m.store = store->stats();
      m.sinks = events->status();
      m.last_event_id = store->last_event_id();
      HttpResponse res;
      res.content_type = "text/plain; version=0.0.4";
      res.body = render_metrics(m);
      return res;
    });
  }

  void agent_register(HttpRequest&& req, Responder& r, const PathSegments&) {
      require_json(req);
      auto body = json::parse_object(req.body);
      Host host = json::host_from_json(body);
      if (!is_valid_host_id(host.host_id))
        throw Error(ErrorKind::invalid_argument, "host_id \"" + host.host_id + "\" is not a UUID");
      if (host.name.empty()) throw Error(ErrorKind::invalid_argument, "host name is empty");
      if (host.host_id == my_id)
        throw Error(ErrorKind::conflict, "host " + host.host_id +
                                             " is this manager itself: a relay cannot be its own parent");
      {
        std::lock_guard lock(relay_mutex);
        if (std::find(tree_path.begin(), tree_path.end(), host.host_id) != tree_path.end())
          throw Error(ErrorKind::conflict, "host " + host.host_id +
                                               " is above this manager in the tree: registering here would make a loop");
      }
      host.parent.clear();  // directly under this manager
      // The address the manager sees comes first; it is what operators mostly know.
      if (!req.remote_address.empty()) {
        std::erase(host.addresses, req.remote_address);
        host.addresses.insert(host.addresses.begin(), req.remote_address);
      }
      host.last_seen = fs::now_unix();
      return blocking(std::move(r), [this, host] {
        const auto change = record_host(host, host.host_id);
        note_contact(host.host_id);
        spdlog::info("{} {} ({}) registered from {}", to_string(host.role), host.name, host.host_id,
                     host.addresses.empty() ? "?" : host.addresses.front());
        bj::array up;
        {
          std::lock_guard lock(relay_mutex);
          for (const auto& h : tree_path) up.emplace_back(h);
        }
        return json_response(200, bj::object{{"host_id", host.host_id},
                                             {"server_id", my_id},
                                             {"path", std::move(up)},
                                             {"approved", change.created ? settings.auto_register : true},
                                             {"poll_timeout_seconds", settings.poll_timeout_seconds},
                                             {"key_mode", std::string(to_string(settings.key_mode))}});
      });
  }

  void agent_work(HttpRequest&& req, Responder& r, const PathSegments&) {
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
      PollFlags flags;
      flags.start = req.query["start"] == "1";
      flags.stopping = req.query["stopping"] == "1";
      note_for_sync(host_id);
      ++polls;
      std::unique_lock lock(mutex);
      last_contact[host_id] = fs::now_unix();
      if (flags.start || flags.stopping) {
        // The first contact after a start and the last before a stop are answered at once.
        lock.unlock();
        return blocking(std::move(r), [this, host_id, flags] { return work_for(host_id, flags); });
      }
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

  void agent_join(HttpRequest&& req, Responder& r, const PathSegments&) {
      require_json(req);
      auto body = json::parse_object(req.body);
      JoinRequest j;
      j.host_id = json::get_string(body, "host_id");
      if (!is_valid_host_id(j.host_id)) throw Error(ErrorKind::invalid_argument, "host_id must be a host UUID");
      j.group = json::get_string(body, "group");
      validate_group_name(j.group, "ID group");
      j.password = json::get_string(body, "password", false);
      j.leave = json::get_bool(body, "leave");
      const auto how = json::get_string(body, "how", false);
      j.how = parse_join_method(how.empty() ? "command" : how);
      if (j.how == JoinMethod::admin || j.how == JoinMethod::policy)
        throw Error(ErrorKind::invalid_argument, "an agent joins by \"config\" or \"command\"");
      j.relay = json::get_string(body, "relay", false);
      if (!j.relay.empty()) {
        if (!is_valid_host_id(j.relay)) throw Error(ErrorKind::invalid_argument, "relay must be a host UUID");
        if (auto it = body.find("host"); it != body.end() && it->value().is_object())
          j.record = json::host_from_json(it->value().as_object());
      }
      return blocking(std::move(r), [this, j] { return json_response(200, join(j)); });
  }

  void agent_transfer(HttpRequest&& req, Responder& r, const PathSegments&) {
      // Between two segments: is the entry still to be transferred, and with which split?
      const auto host_id = req.query["host_id"];
      if (!is_valid_host_id(host_id))
        throw Error(ErrorKind::invalid_argument, "query parameter host_id must be a host UUID");
      std::int64_t entry_id = 0;
      try {
        entry_id = std::stoll(req.query["entry_id"]);
      } catch (const std::exception&) {
        throw Error(ErrorKind::invalid_argument, "query parameter entry_id must be a number");
      }
      return blocking(std::move(r), [this, host_id, entry_id] {
        auto t = store->transfer_status(host_id, entry_id);
        if (!t)
          throw Error(ErrorKind::not_found, "entry " + std::to_string(entry_id) + " of host " + host_id + " does not exist");
        return json_response(200, bj::object{{"entry_id", entry_id},
                                             {"state", std::string(to_string(t->state))},
                                             {"attempt", t->attempt},
                                             {"split", json::to_json(hop_split(t->split, settings.split_max))}});
      });
  }

  void agent_inventory_fields(HttpRequest&& req, Responder& r, const PathSegments&) {
      if (is_relay()) return forward_up(std::move(req), r, req.target);
      return blocking(std::move(r), [this] { return json_response(200, fields_json(store->list_inventory_fields())); });
  }

  void agent_report(HttpRequest&& req, Responder& r, const PathSegments&) {
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
          if (outcome.retried)
            spdlog::info("entry {} on host {}: failed ({}); retried at {}", rep.entry_id, host_id,
                         rep.message, outcome.retry_at);
          else if (outcome.kind == ReportOutcome::Kind::applied && is_final(rep.state))
            spdlog::info("entry {} on host {}: {}{}", rep.entry_id, host_id, to_string(rep.state),
                         rep.message.empty() ? "" : " (" + rep.message + ")");
          if (outcome.kind == ReportOutcome::Kind::applied && is_final(rep.state)) poke_scheduler();
          if (rep.state != EntryState::transferring) transfer_done(host_id);
          results.push_back(bj::object{{"entry_id", rep.entry_id},
                                       {"seq", rep.seq},
                                       {"outcome", std::string(to_string(outcome.kind))},
                                       {"state", std::string(to_string(outcome.current))}});
        }
        note_contact(host_id);
        notify_sync();
        const auto seen = generation_of(host_id);
        settle(host_id, seen, has_work(host_id));
        return json_response(200, bj::object{{"results", std::move(results)}});
      });
  }

  // --- transfers: admission, pacing, batches ----------------------------------------------

  // Admission of a requester to fetch content. Empty: admitted. Otherwise seconds after which
  // to come back (every slot is taken).
  std::optional<int> admit(const std::string& requester) {
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

  void transfer_done(const std::string& requester) {
    std::lock_guard lock(transfer_mutex);
    active_transfers.erase(requester);
  }

  HttpResponse busy_response(int seconds) {
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
  void send_paced(const std::string& requester, std::uint64_t bytes, std::shared_ptr<Responder> r, HttpResponse res) {
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
      free_at = start + std::chrono::nanoseconds(static_cast<std::int64_t>(
                            static_cast<double>(bytes) * 1e9 / static_cast<double>(settings.rate_limit_per_host)));
      release = free_at;
    }
    timers->at(release, [r, res = std::move(res)]() mutable { (*r)(std::move(res)); });
  }

  void count_served(const std::string& requester, std::uint64_t chunk_count, std::uint64_t bytes) {
    std::lock_guard lock(stats_mutex);
    auto& s = served_by[requester.empty() ? "unknown" : requester];
    s.chunks += chunk_count;
    s.bytes += bytes;
  }

  // One chunk streamed from its file, paced for the requester; 404 when this server lacks it.
  void serve_chunk(const std::string& digest, const std::string& requester, std::shared_ptr<Responder> r) {
    HttpResponse res;
    res.content_type = "application/zstd";
    res.file_path = chunks->path_of(digest).string();
    std::error_code ec;
    const auto size = std::filesystem::file_size(res.file_path, ec);
    if (ec) {
      (*r)(error_response(Error(ErrorKind::not_found, "chunk " + digest + " is not in this server's content store")));
      return;
    }
    count_served(requester, 1, size);
    send_paced(requester, size, std::move(r), std::move(res));
  }

  static constexpr std::size_t kMaxBatchChunks = 4096;
  static constexpr std::uint64_t kMaxBatchBytes = 32ull << 20;

  // Answers a batch: frames "<digest> <length>\n<compressed bytes>" for a prefix of `digests`
  // (all of them unless the link's rate limit or the batch size cuts it short). A relay fetches
  // what it lacks from its parent first.
  void serve_batch(std::string requester, std::vector<std::string> digests, std::shared_ptr<Responder> r,
                   bool after_upstream) {
    pool->submit([this, requester = std::move(requester), digests = std::move(digests), r, after_upstream] {
      try {
        std::vector<std::string> missing;
        for (const auto& d : digests)
          if (!chunks->contains(d)) missing.push_back(d);
        if (!missing.empty()) {
          const auto more = missing.size() > 1 ? " (and " + std::to_string(missing.size() - 1) + " more)" : "";
          if (!upstream)
            throw Error(ErrorKind::not_found, "chunk " + missing.front() + more + " is not in this server's content store");
          if (after_upstream)
            throw Error(ErrorKind::unavailable, "chunk " + missing.front() + more +
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
                (*r)(error_response(Error(ErrorKind::unavailable, pending->error +
                                                                      " (from this relay's parent); retry later")));
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

  void content_chunk_batch(HttpRequest&& req, Responder& r, const PathSegments&) {
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

  void content_chunk(HttpRequest&& req, Responder& r, const PathSegments& p) {
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
          (*shared)(error_response(Error(ErrorKind::unavailable, "chunk " + digest +
                                                                     " is not available from this relay's parent yet: " +
                                                                     error + "; retry later")));
          return;
        }
        serve_chunk(digest, requester, shared);
        maybe_maintain();
      });
      return;
  }

  void content_manifest(HttpRequest&&, Responder& r, const PathSegments& p) {
      return blocking(std::move(r), [this, name = p[3], version = p[4]] {
        auto m = is_relay() ? ensure_manifest(name, version) : store->find_package(name, version);
        if (!m) throw Error(ErrorKind::not_found, "package \"" + name + "\" " + version + " does not exist");
        if (is_relay()) store->touch_package(name, version, fs::now_unix());
        return json_response(200, json::to_json(*m));
      });
  }

  // --- relay route: what a relay below reports (hosts, last contacts, entry states, acks)

  void relay_sync(HttpRequest&& req, Responder& r, const PathSegments&) {
    require_json(req);
    auto body = json::parse_object(req.body);
    const auto relay = json::get_string(body, "host_id");
    if (!is_valid_host_id(relay)) throw Error(ErrorKind::invalid_argument, "host_id must be a host UUID");
    std::vector<Host> hosts;
    if (body.contains("hosts"))
      for (const auto& v : json::get_array(body, "hosts")) {
        if (!v.is_object()) throw Error(ErrorKind::invalid_argument, "hosts must contain objects");
        auto h = json::host_from_json(v.as_object());
        if (!is_valid_host_id(h.host_id) || h.name.empty() || !is_valid_host_id(h.parent))
          throw Error(ErrorKind::invalid_argument,
                      "host \"" + h.name + "\": host_id and parent must be host UUIDs and the name must not be empty");
        hosts.push_back(std::move(h));
      }
    std::vector<std::pair<std::string, std::int64_t>> seen;
    if (body.contains("seen"))
      for (const auto& v : json::get_array(body, "seen")) {
        if (!v.is_object()) throw Error(ErrorKind::invalid_argument, "seen must contain objects");
        seen.emplace_back(json::get_string(v.as_object(), "host_id"), json::get_int(v.as_object(), "last_seen"));
      }
    std::vector<EntryReport> reports;
    if (body.contains("reports"))
      for (const auto& v : json::get_array(body, "reports")) {
        if (!v.is_object()) throw Error(ErrorKind::invalid_argument, "reports must contain objects");
        reports.push_back(json::report_from_json(v.as_object()));
      }
    std::vector<std::pair<std::int64_t, EntryState>> acks;
    if (body.contains("acks"))
      for (const auto& v : json::get_array(body, "acks")) {
        if (!v.is_object()) throw Error(ErrorKind::invalid_argument, "acks must contain objects");
        acks.emplace_back(json::get_int(v.as_object(), "entry_id"),
                          parse_entry_state(json::get_string(v.as_object(), "state")));
      }
    return blocking(std::move(r), [this, relay, hosts, seen, reports, acks] {
      auto me = store->find_host(relay);
      if (!me || me->role != HostRole::relay || me->via != relay)
        throw Error(ErrorKind::forbidden, "host " + relay +
                                              " is not a relay registered directly with this manager; it must register first");
      note_contact(relay);
      const auto gen = generation_of(relay);
      store->mark_pushed(relay, acks);
      for (const auto& h : hosts) {
        if (h.host_id == my_id || h.host_id == relay) continue;
        const auto change = record_host(h, relay);
        if (change.changed)
          spdlog::info("{} {} ({}) registered below relay {}", to_string(h.role), h.name, h.host_id, me->name);
      }
      store->touch_hosts(seen);
      if (is_relay()) {
        std::lock_guard lock(relay_mutex);
        for (const auto& [h, t] : seen) seen_since_sync[h] = std::max(seen_since_sync[h], t);
      }
      bj::array results;
      for (const auto& rep : reports) {
        const auto outcome = store->apply_report(relay, rep, true);
        if (outcome.kind == ReportOutcome::Kind::applied && is_final(rep.state)) {
          spdlog::info("entry {} below relay {}: {}", rep.entry_id, me->name, to_string(rep.state));
          poke_scheduler();
        }
        results.push_back(bj::object{{"entry_id", rep.entry_id},
                                     {"outcome", std::string(to_string(outcome.kind))},
                                     {"state", std::string(to_string(outcome.current))}});
      }
      if (!reports.empty()) notify_sync();
      settle(relay, gen, has_work(relay));
      return json_response(200, bj::object{{"results", std::move(results)}, {"hosts", hosts.size()}});
    });
  }

  void stats(HttpRequest&&, Responder& r, const PathSegments&) {
    bj::array by;
    std::uint64_t chunks_total = 0, bytes_total = 0;
    {
      std::lock_guard lock(stats_mutex);
      for (const auto& [h, s] : served_by) {
        by.push_back(bj::object{{"host_id", h}, {"chunks", s.chunks}, {"bytes", s.bytes}});
        chunks_total += s.chunks;
        bytes_total += s.bytes;
      }
    }
    bj::object content{{"chunks_served", chunks_total},
                       {"bytes_served", bytes_total},
                       {"by_requester", std::move(by)},
                       {"cache_hits", cache_hits.load()},
                       {"cache_misses", cache_misses.load()},
                       {"busy_answers", busy_answers.load()}};
    {
      std::lock_guard lock(transfer_mutex);
      content["active_transfers"] = active_transfers.size();
    }
    content["max_transfers"] = settings.max_transfers;
    content["rate_limit_per_host"] = settings.rate_limit_per_host;
    if (upstream) {
      content["upstream_fetches"] = upstream->fetches();
      content["upstream_bytes"] = upstream->bytes();
      content["upstream_joined"] = upstream->joined();
    }
    r(json_response(200, bj::object{{"host_id", my_id},
                                    {"role", is_relay() ? "relay" : "manager"},
                                    {"content", std::move(content)}}));
  }

  void approve_hosts(HttpRequest&& req, Responder& r, const PathSegments&) {
    require_json(req);
    auto keys = json::get_string_array(json::parse_object(req.body), "hosts");
    if (keys.empty()) throw Error(ErrorKind::invalid_argument, "name at least one host to approve");
    return blocking(std::move(r), [this, keys] {
      auto all = store->list_hosts();
      std::vector<std::string> ids, unknown;
      for (const auto& k : keys) {
        bool found = false;
        for (const auto& h : all)
          if (h.host_id == k || host_matches(h, settings.key_mode, k)) {
            ids.push_back(h.host_id);
            found = true;
          }
        if (!found) unknown.push_back(k);
      }
      if (!unknown.empty()) {
        std::string list;
        for (const auto& u : unknown) list += (list.empty() ? "" : ", ") + u;
        throw Error(ErrorKind::not_found, "no host answers to " + list + "; nothing was approved");
      }
      const int n = store->approve_hosts(ids);
      spdlog::info("{} host(s) approved", n);
      for (const auto& id : ids) apply_join_policies(id);
      return json_response(200, bj::object{{"approved", n}});
    });
  }

  void list_hosts(HttpRequest&&, Responder& r, const PathSegments&) {
    blocking(std::move(r), [this] {
      auto hosts = store->list_hosts();
      {
        std::lock_guard lock(mutex);
        for (auto& h : hosts)
          if (auto it = last_contact.find(h.host_id); it != last_contact.end())
            h.last_seen = std::max(h.last_seen, it->second);
      }
      bj::array arr;
      const auto now = fs::now_unix();
      const auto window = 2 * settings.poll_timeout_seconds + 15;
      for (const auto& h : hosts) {
        auto o = json::to_json(h);
        o["online"] = now - h.last_seen <= window;
        arr.push_back(std::move(o));
      }
      bj::array dups;
      for (auto& d : duplicate_keys(hosts, settings.key_mode)) dups.emplace_back(d);
      return json_response(200, bj::object{{"hosts", std::move(arr)},
                                           {"manager", bj::object{{"host_id", my_id},
                                                                  {"role", is_relay() ? "relay" : "manager"}}},
                                           {"key_mode", std::string(to_string(settings.key_mode))},
                                           {"duplicate_keys", std::move(dups)}});
    });
  }

  void chunks_missing(HttpRequest&& req, Responder& r, const PathSegments&) {
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

  void chunk_upload(HttpRequest&& req, Responder& r, const PathSegments& p) {
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

  void package_list(HttpRequest&&, Responder& r, const PathSegments&) {
      return blocking(std::move(r), [this] {
        bj::array arr;
        for (const auto& s : store->list_packages()) arr.push_back(json::to_json(s));
        return json_response(200, bj::object{{"packages", std::move(arr)}});
      });
  }

  void package_register(HttpRequest&& req, Responder& r, const PathSegments&) {
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

  void package_show(HttpRequest&&, Responder& r, const PathSegments& p) {
    {
      return blocking(std::move(r), [this, name = p[2], version = p[3]] {
        auto m = store->find_package(name, version);
        if (!m) throw Error(ErrorKind::not_found, "package \"" + name + "\" " + version + " does not exist");
        return json_response(200, json::to_json(*m));
      });
    }
  }

  static std::string joined(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  }

  // Host ids for keys by the manager's key mode (or host ids); throws naming every unknown key.
  std::vector<std::string> resolve_host_keys(const std::vector<std::string>& keys, const std::string& what) {
    return resolve_host_keys(keys, what, store->list_hosts());
  }
  std::vector<std::string> resolve_host_keys(const std::vector<std::string>& keys, const std::string& what,
                                             const std::vector<Host>& all) {
    std::vector<std::string> ids, unknown;
    for (const auto& k : keys) {
      std::vector<std::string> found;
      for (const auto& h : all)
        if (h.host_id == k || host_matches(h, settings.key_mode, k)) found.push_back(h.host_id);
      if (found.empty()) unknown.push_back(k);
      else if (found.size() > 1)
        throw Error(ErrorKind::invalid_argument, "\"" + k + "\" is claimed by several hosts; name it by host id; " + what);
      else ids.push_back(found.front());
    }
    if (!unknown.empty())
      throw Error(ErrorKind::not_found, "no host answers to " + joined(unknown) + "; " + what);
    return ids;
  }

  // Is `host` somewhere below `ancestor` (following parents, guarding against cycles)?
  static bool is_below(const std::map<std::string, const Host*>& by_id, const Host& host,
                       const std::string& ancestor) {
    std::set<std::string> seen{host.host_id};
    for (std::string at = host.parent; !at.empty() && seen.insert(at).second;) {
      if (at == ancestor) return true;
      auto it = by_id.find(at);
      if (it == by_id.end()) return false;
      at = it->second->parent;
    }
    return false;
  }

  // Destinations of a job: host keys, "group:NAME" (host group), "id:NAME" (ID group, standing)
  // and "relay:KEY" (every host below that relay). Everything is checked before anything is
  // created; the answer names every destination that is wrong.
  struct Expansion {
    std::vector<std::string> host_ids;
    std::vector<std::string> id_groups;
    std::size_t skipped = 0;  // group members of the wrong role or awaiting approval
  };
  Expansion expand_destinations(const Job& job) {
    const auto all = store->list_hosts();
    std::map<std::string, const Host*> by_id;
    for (const auto& h : all) by_id[h.host_id] = &h;
    const bool install = targets_agents(job.type);
    auto fits = [&](const Host& h) { return h.approved && (h.role == HostRole::relay) != install; };
    Expansion out;
    std::set<std::string> seen;
    std::vector<std::string> unknown, plain;
    auto add = [&](const std::string& id) {
      if (seen.insert(id).second) out.host_ids.push_back(id);
    };
    for (const auto& d : job.destinations) {
      if (d.starts_with("group:")) {
        const auto name = d.substr(6);
        auto g = store->find_host_group(name);
        if (!g) {
          unknown.push_back(d + " (no such host group)");
          continue;
        }
        if (!g->query.empty()) g->members = hosts_matching(parse_inventory_query(g->query));
        for (const auto& id : g->members) {
          auto it = by_id.find(id);
          if (it != by_id.end() && fits(*it->second)) add(id);
          else ++out.skipped;
        }
      } else if (d.starts_with("id:")) {
        const auto name = d.substr(3);
        if (!store->find_id_group(name)) {
          unknown.push_back(d + " (no such ID group here)");
          continue;
        }
        if (std::find(out.id_groups.begin(), out.id_groups.end(), name) == out.id_groups.end())
          out.id_groups.push_back(name);
      } else if (d.starts_with("relay:")) {
        const auto key = d.substr(6);
        const Host* relay = nullptr;
        for (const auto& h : all)
          if (h.role == HostRole::relay && (h.host_id == key || host_matches(h, settings.key_mode, key))) relay = &h;
        if (!relay) {
          unknown.push_back(d + " (no such relay)");
          continue;
        }
        for (const auto& h : all) {
          if (!is_below(by_id, h, relay->host_id)) continue;
          if (fits(h)) add(h.host_id);
          else ++out.skipped;
        }
      } else {
        plain.push_back(d);
      }
    }
    if (!plain.empty()) {
      std::vector<Host> approved;
      for (const auto& h : all)
        if (h.approved) approved.push_back(h);
      auto res = resolve_destinations(approved, settings.key_mode, plain);
      // A key only a host waiting for approval answers to gets its own message.
      std::vector<std::string> pending;
      std::erase_if(res.unknown, [&](const std::string& k) {
        for (const auto& h : all)
          if (!h.approved && host_matches(h, settings.key_mode, k)) {
            pending.push_back(k);
            return true;
          }
        return false;
      });
      if (!pending.empty())
        throw Error(ErrorKind::invalid_argument, "host(s) waiting for approval: " + joined(pending) +
                                                     " (distribctl hosts approve ...); no job was created");
      for (const auto& k : res.unknown)
        unknown.push_back(k + " (no host answers to it by " + std::string(to_string(settings.key_mode)) + ")");
      if (!res.ambiguous.empty())
        throw Error(ErrorKind::invalid_argument, "ambiguous destination(s), claimed by several hosts: " +
                                                     joined(res.ambiguous) + "; no job was created");
      // Installs go to agents; cache jobs to relays.
      for (const auto& id : res.host_ids) {
        const auto& h = *by_id.at(id);
        const bool relay = h.role == HostRole::relay;
        if (install && relay)
          throw Error(ErrorKind::invalid_argument, "\"" + h.name + "\" is a relay; " + std::string(to_string(job.type)) +
                                                       " jobs go to agents (use transfer-to-relay to pre-stage a package on a relay); no job was created");
        if (!install && !relay)
          throw Error(ErrorKind::invalid_argument, "\"" + h.name + "\" is not a relay; " +
                                                       std::string(to_string(job.type)) + " jobs go to relays; no job was created");
        add(id);
      }
    }
    if (!unknown.empty())
      throw Error(ErrorKind::invalid_argument, "unknown destination(s): " + joined(unknown) + "; no job was created");
    if (out.host_ids.empty() && out.id_groups.empty())
      throw Error(ErrorKind::invalid_argument,
                  "the destinations name no " + std::string(install ? "agent" : "relay") +
                      " (groups empty, or members of another role or awaiting approval); no job was created");
    return out;
  }

  // POST /v1/transfers/suspend|resume {"job": ID} or {"relay": KEY}
  void transfers_suspend_resume(HttpRequest&& req, Responder& r, const PathSegments& p) {
    require_json(req);
    auto body = json::parse_object(req.body);
    const bool suspend = p[2] == "suspend";
    const auto job_id = json::get_int(body, "job", 0);
    const auto relay = json::get_string(body, "relay", false);
    if ((job_id != 0) == !relay.empty())
      throw Error(ErrorKind::invalid_argument, "name either a job (\"job\": ID) or a relay (\"relay\": KEY)");
    return blocking(std::move(r), [this, suspend, job_id, relay] {
      std::vector<std::string> hosts;
      std::string relay_id;
      if (!relay.empty()) {
        const auto all = store->list_hosts();
        relay_id = resolve_host_keys({relay}, "nothing was " + std::string(suspend ? "suspended" : "resumed"), all).front();
        std::map<std::string, const Host*> by_id;
        for (const auto& h : all) by_id[h.host_id] = &h;
        if (by_id.at(relay_id)->role != HostRole::relay)
          throw Error(ErrorKind::invalid_argument, "\"" + relay + "\" is not a relay; name a relay or a job");
        hosts.push_back(relay_id);
        for (const auto& h : all)
          if (is_below(by_id, h, relay_id)) hosts.push_back(h.host_id);
      }
      auto change = store->suspend_transfers(job_id, hosts, suspend);
      wake(change.vias, true);
      const auto scope = job_id ? "job " + std::to_string(job_id) : "relay " + relay;
      spdlog::info("transfers of {} {}: {} entr(ies)", scope, suspend ? "suspended" : "resumed", change.entries);
      bj::object out{{suspend ? "suspended" : "resumed", change.entries}};
      if (job_id) out["job_id"] = job_id;
      else out["relay"] = relay_id;
      return json_response(200, out);
    });
  }

  void job_create(HttpRequest&& req, Responder& r, const PathSegments&) {
      require_json(req);
      auto body = json::parse_object(req.body);
      Job job = json::job_from_json(body);
      if (job.destinations.empty())
        throw Error(ErrorKind::invalid_argument, "a job needs at least one destination; no job was created");
      validate_schedule(job.schedule, fs::now_unix());
      validate_rollout(job.rollout);
      if (!targets_agents(job.type) && (job.schedule.timing == InstallTiming::at_start ||
                                        job.schedule.timing == InstallTiming::at_stop))
        throw Error(ErrorKind::invalid_argument, "timing " + std::string(to_string(job.schedule.timing)) +
                                                     " applies to jobs for agents only; no job was created");
      if (!needs_package(job.type)) {
        job.package_name.clear();
        job.package_version.clear();
        job.split = {};
      }
      if (job.type == JobType::collect_files) validate_collect(job.collect);
      job.key_mode = std::string(to_string(settings.key_mode));
      // Who, as the audit trail has it: the client's word for its user, and its address.
      job.created_by = req.remote_address;
      if (auto it = req.headers.find("x-distrib-actor"); it != req.headers.end() && !it->second.empty())
        job.created_by = audit_actor(req) + " from " + req.remote_address;
      job.id = 0;
      job.upstream_id = 0;
      job.id_groups.clear();
      return blocking(std::move(r), [this, job]() mutable {
        // A relay's own jobs use packages of its parent: the manifest is fetched on demand.
        const bool wants_package = needs_package(job.type);
        const auto package = !wants_package ? std::optional<Manifest>(Manifest{})
                             : is_relay()   ? ensure_manifest(job.package_name, job.package_version)
                                            : store->find_package(job.package_name, job.package_version);
        if (!package)
          throw Error(ErrorKind::not_found, "package \"" + job.package_name + "\" " +
                                                job.package_version + " does not exist; no job was created");
        auto ex = expand_destinations(job);
        job.id_groups = ex.id_groups;
        auto created = store->create_job(job, ex.host_ids);
        spdlog::info("job {} created: {} {} {} on {} host(s){}{}", created.job.id, to_string(job.type),
                     job.package_name, job.package_version, created.entries,
                     job.id_groups.empty() ? "" : ", standing for ID group(s) " + joined(job.id_groups),
                     job.rollout.waves.empty() ? "" : " in " + std::to_string(job.rollout.waves.size()) + " waves");
        wake(created.vias, true);
        poke_scheduler();
        return json_response(201, bj::object{{"job", json::to_json(created.job)},
                                             {"entries", created.entries},
                                             {"skipped", ex.skipped}});
      });
  }

  void job_list(HttpRequest&& req, Responder& r, const PathSegments&) {
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

  // The job id in /v1/jobs/{id}/...: a positive whole number.
  static std::int64_t job_id_of(const PathSegments& p) {
    std::int64_t id = 0;
    try {
      std::size_t used = 0;
      id = std::stoll(p[2], &used);
      if (used != p[2].size() || id <= 0) throw std::invalid_argument("id");
    } catch (const std::exception&) {
      throw Error(ErrorKind::invalid_argument, "\"" + p[2] + "\" is not a job id");
    }
    return id;
  }

  void job_show(HttpRequest&&, Responder& r, const PathSegments& p) {
      const auto id = job_id_of(p);
        return blocking(std::move(r), [this, id] {
          auto job = store->find_job(id);
          if (!job) throw Error(ErrorKind::not_found, "job " + std::to_string(id) + " does not exist");
          auto entries = store->job_entries(id);
          bj::array arr;
          for (const auto& e : entries) arr.push_back(json::to_json(e));
          bj::object out{{"job", json::to_json(*job)},
                         {"progress", json::to_json(summarize(entries))},
                         {"entries", std::move(arr)}};
          if (!job->rollout.waves.empty()) {
            bj::array waves;
            const auto counts = store->wave_counts(id);
            for (std::size_t w = 1; w <= job->rollout.waves.size(); ++w) {
              WaveCounts c;
              for (const auto& x : counts)
                if (x.wave == static_cast<int>(w)) c = x;
              c.wave = static_cast<int>(w);
              waves.push_back(bj::object{{"wave", c.wave},
                                         {"percent", job->rollout.waves[w - 1]},
                                         {"state", wave_state(*job, c)},
                                         {"total", c.total},
                                         {"succeeded", c.succeeded},
                                         {"failed", c.failed},
                                         {"final", c.final_count}});
            }
            out["waves"] = std::move(waves);
          }
          return json_response(200, out);
        });
  }

  void job_files(HttpRequest&&, Responder& r, const PathSegments& p) {
      const auto id = job_id_of(p);
        return blocking(std::move(r), [this, id] {
          if (!store->find_job(id)) throw Error(ErrorKind::not_found, "job " + std::to_string(id) + " does not exist");
          bj::array arr;
          for (const auto& f : store->collected_files(id))
            arr.push_back(bj::object{{"host_id", f.host_id}, {"host_name", f.host_name}, {"path", f.path},
                                     {"size", f.size}, {"sha256", f.sha256}, {"stored_at", f.stored_at}});
          return json_response(200, bj::object{{"job_id", id}, {"files", std::move(arr)}});
        });
  }

  void job_file(HttpRequest&& req, Responder& r, const PathSegments& p) {
      const auto id = job_id_of(p);
        const auto host = p[4];
        const auto path = req.query["path"];
        return blocking(std::move(r), [this, id, host, path] {
          for (const auto& f : store->collected_files(id))
            if (f.host_id == host && f.path == path) {
              HttpResponse res;
              res.status = 200;
              res.content_type = "application/octet-stream";
              res.file_path = collected_path(id, host, path).string();
              res.headers.emplace_back("X-Distrib-Sha256", f.sha256);
              return res;
            }
          throw Error(ErrorKind::not_found, "job " + std::to_string(id) + " has no file " + path + " from host " + host);
        });
  }

  void job_retry(HttpRequest&&, Responder& r, const PathSegments& p) {
      const auto id = job_id_of(p);
        return blocking(std::move(r), [this, id] {
          auto job = store->find_job(id);
          if (!job) throw Error(ErrorKind::not_found, "job " + std::to_string(id) + " does not exist");
          if (job->schedule.expires_at && job->schedule.expires_at <= fs::now_unix())
            throw Error(ErrorKind::conflict, "job " + std::to_string(id) + " has expired; create a new job instead");
          auto [n, vias] = store->retry_failed(id);
          wake(vias, true);
          spdlog::info("job {}: {} failed entr(ies) retried", id, n);
          return json_response(200, bj::object{{"job_id", id}, {"retried", n}});
        });
  }

  void job_complete_now(HttpRequest&&, Responder& r, const PathSegments& p) {
      const auto id = job_id_of(p);
        return blocking(std::move(r), [this, id] {
          auto change = store->clear_split(id);
          wake(change.vias, true);
          spdlog::info("job {}: split distribution ended; the rest travels unsplit ({} open entries)", id, change.entries);
          return json_response(200, bj::object{{"job_id", id}, {"entries", change.entries}});
        });
  }

  void job_cancel(HttpRequest&&, Responder& r, const PathSegments& p) {
      const auto id = job_id_of(p);
        return blocking(std::move(r), [this, id] {
          // Relays below hear of it in their next work answer and cancel down their subtree.
          const auto cancel = store->cancel_job_entries(id);
          wake(cancel.vias, true);
          spdlog::info("job {} cancelled ({} entries)", id, cancel.cancelled);
          return json_response(200, bj::object{{"job_id", id}, {"cancelled", cancel.cancelled}});
        });
  }

  // --- ID group membership asked by hosts (agent configuration or a command on the host) ---

  struct JoinRequest {
    std::string host_id, group, password, relay;
    bool leave = false;
    JoinMethod how = JoinMethod::command;
    std::optional<Host> record;  // forwarded by a relay: the host as it knows it
  };

  bj::object join(const JoinRequest& j) {
    if (!j.relay.empty()) {
      auto relay = store->find_host(j.relay);
      if (!relay || relay->role != HostRole::relay || relay->via != j.relay)
        throw Error(ErrorKind::forbidden, "host " + j.relay + " is not a relay registered directly with this manager");
      auto known = store->find_host(j.host_id);
      if (!known && j.record && j.record->host_id == j.host_id && is_valid_host_id(j.record->parent))
        record_host(*j.record, j.relay);  // its registration has not arrived yet
      else if (known && known->via != j.relay)
        throw Error(ErrorKind::forbidden, "host " + j.host_id + " is not below relay " + relay->name);
    }
    auto host = store->find_host(j.host_id);
    if (!host) throw Error(ErrorKind::not_found, "host " + j.host_id + " is not registered here; it must register first");
    auto group = store->find_id_group(j.group);
    if (!group) {
      if (!is_relay())
        throw Error(ErrorKind::not_found, "no ID group \"" + j.group +
                                              "\" at this manager or the relays on the way to it (create it with distribctl idgroup create)");
      // Owned above: the parent decides (and keeps the membership).
      Host up = *host;
      if (up.parent.empty()) up.parent = my_id;
      bj::object body{{"host_id", j.host_id}, {"group", j.group},       {"password", j.password},
                      {"leave", j.leave},     {"how", std::string(to_string(j.how))},
                      {"relay", my_id},       {"host", json::to_json(up)}};
      auto c = join_clients->lease(link->current());
      c->set_timeout(30);
      return call_parent(*c, "POST", "/v1/agent/join", body);
    }
    if (j.leave) {
      auto change = store->leave_id_group(j.group, {j.host_id});
      wake(change.vias, true);
      if (change.changed) spdlog::info("host {} left ID group {}", host->name, j.group);
      return bj::object{{"group", j.group}, {"owner", my_id}, {"left", change.changed > 0}, {"cancelled", change.entries}};
    }
    if (group->has_password() && !check_join_password(j.password, group->password_hash))
      throw Error(ErrorKind::forbidden, j.password.empty()
                                            ? "ID group \"" + j.group + "\" needs a password to join; the host did not join"
                                            : "wrong password for ID group \"" + j.group + "\"; the host did not join");
    auto change = store->join_id_group(j.group, {j.host_id}, j.how);
    wake(change.vias, true);
    if (change.changed)
      spdlog::info("host {} joined ID group {} ({}; {} standing job(s) to receive)", host->name, j.group,
                   to_string(j.how), change.entries);
    return bj::object{{"group", j.group}, {"owner", my_id}, {"joined", change.changed > 0}, {"entries", change.entries}};
  }

  // --- host groups and ID groups (admin) -----------------------------------------------------

  bj::array host_refs(const std::vector<std::string>& ids) {
    std::map<std::string, std::string> names;
    for (const auto& h : store->list_hosts()) names[h.host_id] = h.name;
    bj::array out;
    for (const auto& id : ids) out.push_back(bj::object{{"host_id", id}, {"name", names.count(id) ? names[id] : ""}});
    return out;
  }

  static std::vector<std::string> optional_strings(const bj::object& o, std::string_view key) {
    return o.contains(key) ? json::get_string_array(o, key) : std::vector<std::string>{};
  }

  // {"add": [keys], "remove": [keys]} of a members request; at least one host.
  static std::pair<std::vector<std::string>, std::vector<std::string>> member_change(const HttpRequest& req) {
    require_json(req);
    auto body = json::parse_object(req.body);
    auto add = optional_strings(body, "add");
    auto remove = optional_strings(body, "remove");
    if (add.empty() && remove.empty()) throw Error(ErrorKind::invalid_argument, "name hosts to \"add\" or \"remove\"");
    return {std::move(add), std::move(remove)};
  }

  void delete_group(Responder& r, const char* what, const std::string& name, std::function<bool()> erase) {
    blocking(std::move(r), [what, name, erase = std::move(erase)] {
      if (!erase()) throw Error(ErrorKind::not_found, std::string(what) + " \"" + name + "\" does not exist");
      spdlog::info("{} {} deleted", what, name);
      return json_response(200, bj::object{{"deleted", name}});
    });
  }

  // --- inventory --------------------------------------------------------------------------

  // Stored values of a query or display field; '*' and '?' stand for any part of a key.
  std::vector<InventoryValue> values_of(const std::string& field) {
    const auto wild = field.find_first_of("*?");
    if (wild == std::string::npos) return store->inventory_values(field, false);
    auto values = store->inventory_values(field.substr(0, wild), true);
    std::erase_if(values, [&](const InventoryValue& v) { return !glob_matches(field, v.key); });
    return values;
  }

  // Hosts whose latest inventory satisfies every condition (all inventoried hosts for none).
  std::vector<std::string> hosts_matching(const InventoryQuery& q) {
    const auto all = store->inventoried_hosts();
    std::set<std::string> result(all.begin(), all.end());
    for (const auto& c : q.conditions) {
      std::set<std::string> have, ok;
      for (const auto& v : values_of(c.field)) {
        have.insert(v.host_id);
        if (condition_holds(c, v.value)) ok.insert(v.host_id);
      }
      std::set<std::string> next;
      for (const auto& h : result)
        if (c.op == InventoryCondition::Op::missing ? !have.count(h) : ok.count(h) > 0) next.insert(h);
      result = std::move(next);
    }
    return {result.begin(), result.end()};
  }

  static bj::object fields_json(const std::vector<InventoryField>& fields) {
    bj::array arr;
    for (const auto& f : fields) {
      bj::array values;
      for (const auto& v : f.allowed) values.emplace_back(v);
      arr.push_back(bj::object{{"name", f.name}, {"type", std::string(to_string(f.type))},
                               {"values", std::move(values)}, {"description", f.description}});
    }
    return bj::object{{"fields", std::move(arr)}};
  }

  std::vector<InventoryField> inventory_fields() {
    std::lock_guard lock(fields_mutex);
    if (!fields_cache) fields_cache = store->list_inventory_fields();
    return *fields_cache;
  }

  // At a relay: passes an agent's request to the parent (at `target`) and its answer back down.
  HttpResponse forward_request(const HttpRequest& req, const std::string& target) {
    const auto url = link->current();
    auto c = join_clients->lease(url);
    c->set_timeout(120);
    try {
      return c->request(req.method, target, req.body, req.content_type.empty() ? "application/json" : req.content_type);
    } catch (const Error& e) {
      throw Error(ErrorKind::unavailable, "the parent " + url + " cannot be reached (" + e.what() + "); try again later");
    }
  }

  void forward_up(HttpRequest&& req, Responder& r, std::string target) {
    auto shared = std::make_shared<HttpRequest>(std::move(req));
    return blocking(std::move(r), [this, shared, target] { return forward_request(*shared, target); });
  }

  // POST /v1/agent/inventory {host_id, scope, collected_at, items: {key: value}}
  void agent_inventory(HttpRequest&& req, Responder& r, const PathSegments&) {
    require_json(req);
    if (is_relay()) return forward_up(std::move(req), r, req.target);
    auto body = json::parse_object(req.body);
    InventoryReport rep;
    rep.host_id = json::get_string(body, "host_id");
    if (!is_valid_host_id(rep.host_id)) throw Error(ErrorKind::invalid_argument, "host_id must be a host UUID");
    const auto scope = json::get_string(body, "scope", false);
    rep.scope = parse_inventory_scope(scope.empty() ? "full" : scope);
    rep.collected_at = json::get_int(body, "collected_at", 0);
    auto it = body.find("items");
    if (it == body.end() || !it->value().is_object())
      throw Error(ErrorKind::invalid_argument, "items must be an object of \"key\": \"value\" pairs");
    const auto& items = it->value().as_object();
    if (items.size() > 200000) throw Error(ErrorKind::invalid_argument, "an inventory report holds at most 200000 items");
    for (const auto& kv : items) {
      const std::string key(kv.key());
      validate_inventory_key(key);
      if (!in_scope(rep.scope, key))
        throw Error(ErrorKind::invalid_argument, "item \"" + key + "\" is outside the report's scope " + scope);
      if (!kv.value().is_string()) throw Error(ErrorKind::invalid_argument, "item \"" + key + "\" must be a string");
      const auto& v = kv.value().as_string();
      if (v.size() > 65536) throw Error(ErrorKind::invalid_argument, "item \"" + key + "\" is longer than 64 KiB");
      rep.items.emplace(key, std::string(v));
    }
    {
      std::lock_guard lock(ingest_mutex);
      ingest_queue.push_back({std::move(rep), std::make_shared<Responder>(std::move(r))});
    }
    ingest_cv.notify_one();
  }

  // User inventory: only fields the administrator defined, with values that fit them. Returns
  // why each value left out was refused.
  bj::array drop_undefined_fields(InventoryReport& rep) {
    bj::array rejected;
    auto u = rep.items.lower_bound("user.");
    if (u == rep.items.end() || !u->first.starts_with("user.")) return rejected;
    const auto fields = inventory_fields();
    for (auto i = u; i != rep.items.end() && i->first.starts_with("user.");) {
      try {
        check_user_value(fields, std::string_view(i->first).substr(5), i->second);
        ++i;
      } catch (const Error& e) {
        rejected.emplace_back(e.what());
        i = rep.items.erase(i);
      }
    }
    return rejected;
  }

  // Group commit of inventory reports: whatever arrived while the last batch was written goes
  // into the next transaction together (one commit for many agents).
  void ingest_loop() {
    for (;;) {
      std::vector<QueuedReport> batch;
      {
        std::unique_lock lock(ingest_mutex);
        ingest_cv.wait(lock, [&] { return ingest_stopping || !ingest_queue.empty(); });
        if (ingest_queue.empty()) return;
        const auto n = std::min<std::size_t>(ingest_queue.size(), 256);
        batch.assign(std::make_move_iterator(ingest_queue.begin()), std::make_move_iterator(ingest_queue.begin() + static_cast<long>(n)));
        ingest_queue.erase(ingest_queue.begin(), ingest_queue.begin() + static_cast<long>(n));
      }
      std::vector<InventoryReport> reports;
      std::vector<bj::array> rejected;
      try {
        for (auto& p : batch) {
          rejected.push_back(drop_undefined_fields(p.report));
          reports.push_back(std::move(p.report));
        }
        const auto results = store->ingest_inventory_batch(reports, fs::now_unix());
        for (std::size_t i = 0; i < batch.size(); ++i) {
          const auto& res = results[i];
          if (!res.error.empty()) {
            (*batch[i].responder)(error_response(Error(ErrorKind::not_found, res.error)));
            continue;
          }
          if (res.first || !res.changes.empty())
            spdlog::info("inventory of host {}: {}", reports[i].host_id,
                         res.first ? std::to_string(res.items) + " items (first report)"
                                   : std::to_string(res.changes.size()) + " change(s)");
          (*batch[i].responder)(json_response(200, bj::object{{"items", res.items},
                                                              {"changes", res.changes.size()},
                                                              {"first", res.first},
                                                              {"unchanged", res.unchanged},
                                                              {"rejected", std::move(rejected[i])}}));
        }
      } catch (const Error& e) {
        spdlog::warn("inventory batch of {} report(s) not stored: {}", batch.size(), e.what());
        for (auto& p : batch) (*p.responder)(error_response(e));
      } catch (const std::exception& e) {
        for (auto& p : batch) (*p.responder)(error_response(Error(ErrorKind::internal, e.what())));
      }
    }
  }

  std::filesystem::path collected_path(std::int64_t job, const std::string& host, const std::string& path) const {
    return settings.state_dir / "collected" / std::to_string(job) / host / std::filesystem::path(path).relative_path();
  }

  static void validate_collected_path(const std::string& path) {
    const bool control = std::any_of(path.begin(), path.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
    if (path.empty() || path.front() != '/' || path.size() > 1024 || control || path.find("/../") != std::string::npos ||
        path.ends_with("/..") || path.find("/./") != std::string::npos || path.ends_with("/"))
      throw Error(ErrorKind::invalid_argument, "collected file path \"" + path.substr(0, 200) +
                                                   "\" is not a plain absolute path");
  }

  // POST /v1/agent/collect?host_id=&job_id=&path=&sha256= with the file's bytes as the body.
  void agent_collect(HttpRequest&& req, Responder& r, const PathSegments&) {
    const auto host_id = req.query["host_id"];
    if (!is_valid_host_id(host_id)) throw Error(ErrorKind::invalid_argument, "query parameter host_id must be a host UUID");
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
          throw Error(ErrorKind::not_found, "job " + std::to_string(job_id) + " did not come from this relay's parent");
        return forward_request(*shared, "/v1/agent/collect?host_id=" + host_id + "&job_id=" +
                                            std::to_string(job->upstream_id) + "&path=" + url_encode(path) +
                                            "&sha256=" + url_encode(sha));
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
        throw Error(ErrorKind::conflict, "host " + host_id + " has no open entry in job " + std::to_string(job_id));
      if (data.size() > job->collect.max_file_bytes)
        throw Error(ErrorKind::invalid_argument, "file " + path + " is " + format_byte_size(data.size()) +
                                                     ", over the job's per-file limit of " +
                                                     format_byte_size(job->collect.max_file_bytes));
      std::uint64_t total = data.size();
      for (const auto& f : store->collected_files(job_id))
        if (f.host_id == host_id && f.path != path) total += static_cast<std::uint64_t>(f.size);
      if (total > job->collect.max_total_bytes)
        throw Error(ErrorKind::invalid_argument, "files from host " + host_id + " would reach " + format_byte_size(total) +
                                                     ", over the job's per-host limit of " +
                                                     format_byte_size(job->collect.max_total_bytes));
      const auto digest = sha256_hex(data);
      if (!sha.empty() && sha != digest)
        throw Error(ErrorKind::integrity, "file " + path + " arrived damaged (SHA-256 differs from the sender's); send it again");
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

  static std::vector<std::string> split_list(const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= text.size()) {
      auto comma = text.find(',', start);
      if (comma == std::string::npos) comma = text.size();
      auto part = trim(text.substr(start, comma - start));
      if (!part.empty()) out.push_back(part);
      start = comma + 1;
    }
    return out;
  }

  // Admin: /v1/inventory?query=&fields=, /v1/inventory/hosts/KEY[/history], /v1/inventory/fields[/NAME]
  void inventory_query(HttpRequest&& req, Responder& r, const PathSegments&) {
      InventoryQuery q;
      if (const auto text = req.query["query"]; !text.empty()) q = parse_inventory_query(text);
      const auto fields = split_list(req.query["fields"]);
      for (const auto& f : fields)
        if (!(f.starts_with("system.") || f.starts_with("software.") || f.starts_with("user.")))
          throw Error(ErrorKind::invalid_argument, "field \"" + f + "\" is not under system., software. or user.");
      return blocking(std::move(r), [this, q, fields] {
        const auto ids = hosts_matching(q);
        std::map<std::string, std::map<std::string, std::string>> shown;  // host → key → value
        const std::set<std::string> wanted(ids.begin(), ids.end());
        std::vector<std::string> columns = fields;
        if (columns.empty())
          for (const auto& c : q.conditions) columns.push_back(c.field);
        for (const auto& f : columns)
          for (auto& v : values_of(f))
            if (wanted.count(v.host_id)) shown[v.host_id][v.key] = std::move(v.value);
        std::map<std::string, std::string> names;
        for (const auto& h : store->list_hosts()) names[h.host_id] = h.name;
        std::vector<std::string> order = ids;
        std::sort(order.begin(), order.end(), [&](const auto& a, const auto& b) { return names[a] < names[b]; });
        bj::array hosts;
        for (const auto& id : order) {
          bj::object items;
          for (const auto& [k, v] : shown[id]) items[k] = v;
          hosts.push_back(bj::object{{"host_id", id}, {"name", names[id]}, {"items", std::move(items)}});
        }
        bj::array cols;
        for (const auto& c : columns) cols.emplace_back(c);
        return json_response(200, bj::object{{"query", to_string(q)}, {"count", order.size()}, {"fields", std::move(cols)},
                                             {"hosts", std::move(hosts)}});
      });
  }

  void inventory_fields_list(HttpRequest&&, Responder& r, const PathSegments&) {
    return blocking(std::move(r), [this] { return json_response(200, fields_json(store->list_inventory_fields())); });
  }

  void inventory_field_define(HttpRequest&& req, Responder& r, const PathSegments&) {
      require_json(req);
      auto body = json::parse_object(req.body);
      InventoryField f;
      f.name = json::get_string(body, "name");
      const auto type = json::get_string(body, "type", false);
      f.type = parse_inventory_field_type(type.empty() ? "text" : type);
      f.allowed = optional_strings(body, "values");
      f.description = json::get_string(body, "description", false);
      validate_inventory_field(f);
      return blocking(std::move(r), [this, f] {
        store->put_inventory_field(f);
        {
          std::lock_guard lock(fields_mutex);
          fields_cache.reset();
        }
        spdlog::info("inventory field {} ({}) defined", f.name, to_string(f.type));
        return json_response(201, fields_json({f}));
      });
  }

  void inventory_field_delete(HttpRequest&&, Responder& r, const PathSegments& p) {
      const auto name = p[3];
      return blocking(std::move(r), [this, name] {
        if (!store->delete_inventory_field(name))
          throw Error(ErrorKind::not_found, "inventory field \"" + name + "\" does not exist");
        std::lock_guard lock(fields_mutex);
        fields_cache.reset();
        return json_response(200, bj::object{{"deleted", name}});
      });
  }

  void inventory_host(HttpRequest&& req, Responder& r, const PathSegments& p) {
      const auto key = p[3];
      const bool history = p.size() == 5;
      int limit = 200;
      if (auto it = req.query.find("limit"); it != req.query.end()) {
        try {
          limit = std::clamp(std::stoi(it->second), 1, 100000);
        } catch (const std::exception&) {
          throw Error(ErrorKind::invalid_argument, "query parameter limit must be a number");
        }
      }
      return blocking(std::move(r), [this, key, history, limit] {
        const auto all = store->list_hosts();
        const auto id = resolve_host_keys({key}, "no inventory shown", all).front();
        std::string name;
        for (const auto& h : all)
          if (h.host_id == id) name = h.name;
        bj::object out{{"host_id", id}, {"name", name}};
        if (history) {
          bj::array arr;
          for (const auto& c : store->inventory_history(id, limit))
            arr.push_back(bj::object{{"at", c.at}, {"change", std::string(to_string(c.kind))}, {"key", c.key},
                                     {"old", c.old_value}, {"new", c.new_value}});
          out["history"] = std::move(arr);
          return json_response(200, out);
        }
        auto inv = store->find_inventory(id);
        if (!inv)
          throw Error(ErrorKind::not_found, "host " + name + " has not reported an inventory yet (create a get-system-info job, or wait for its periodic report)");
        bj::object items;
        for (const auto& [k, v] : inv->items) items[k] = v;
        out["collected_at"] = inv->collected_at;
        out["reported_at"] = inv->reported_at;
        out["items"] = std::move(items);
        return json_response(200, out);
      });
  }

  void group_list(HttpRequest&&, Responder& r, const PathSegments&) {
      return blocking(std::move(r), [this] {
        bj::array arr;
        for (auto& g : store->list_host_groups()) {
          if (!g.query.empty()) g.members = hosts_matching(parse_inventory_query(g.query));
          auto o = json::to_json(g);
          o["hosts"] = host_refs(g.members);
          arr.push_back(std::move(o));
        }
        return json_response(200, bj::object{{"groups", std::move(arr)}});
      });
  }

  void group_create(HttpRequest&& req, Responder& r, const PathSegments&) {
      require_json(req);
      auto body = json::parse_object(req.body);
      HostGroup g;
      g.name = json::get_string(body, "name");
      validate_group_name(g.name, "host group");
      g.description = json::get_string(body, "description", false);
      g.query = json::get_string(body, "query", false);
      auto keys = optional_strings(body, "hosts");
      if (!g.query.empty()) {
        if (!keys.empty())
          throw Error(ErrorKind::invalid_argument, "a host group has either members or a query, not both; the host group was not created");
        g.query = to_string(parse_inventory_query(g.query));  // refused here when malformed
      }
      return blocking(std::move(r), [this, g, keys]() mutable {
        g.members = resolve_host_keys(keys, "the host group was not created");
        store->create_host_group(g);
        if (!g.query.empty()) g.members = hosts_matching(parse_inventory_query(g.query));
        spdlog::info("host group {} created with {} host(s){}", g.name, g.members.size(),
                     g.query.empty() ? "" : " matching " + g.query);
        return json_response(201, json::to_json(g));
      });
  }

  void group_show(HttpRequest&&, Responder& r, const PathSegments& p) {
      const auto name = p[2];
      return blocking(std::move(r), [this, name] {
        auto g = store->find_host_group(name);
        if (!g) throw Error(ErrorKind::not_found, "host group \"" + name + "\" does not exist");
        if (!g->query.empty()) g->members = hosts_matching(parse_inventory_query(g->query));
        auto o = json::to_json(*g);
        o["hosts"] = host_refs(g->members);
        return json_response(200, o);
      });
  }

  void group_delete(HttpRequest&&, Responder& r, const PathSegments& p) {
    const auto name = p[2];
    return delete_group(r, "host group", name, [this, name] { return store->delete_host_group(name); });
  }

  void group_members(HttpRequest&& req, Responder& r, const PathSegments& p) {
      const auto name = p[2];
      auto [add, remove] = member_change(req);
      return blocking(std::move(r), [this, name, add, remove] {
        auto g = store->find_host_group(name);
        if (!g) throw Error(ErrorKind::not_found, "host group \"" + name + "\" does not exist");
        if (!g->query.empty())
          throw Error(ErrorKind::conflict, "host group \"" + name + "\" is defined by the query \"" + g->query +
                                               "\"; its members follow the inventory");
        const auto a = resolve_host_keys(add, "nothing was changed");
        const auto d = resolve_host_keys(remove, "nothing was changed");
        const int n = store->change_host_group(name, a, d);
        return json_response(200, bj::object{{"group", name}, {"changed", n}});
      });
  }

  void id_group_list(HttpRequest&&, Responder& r, const PathSegments&) {
      return blocking(std::move(r), [this] {
        std::map<std::string, std::int64_t> counts;
        bj::array arr;
        for (const auto& g : store->list_id_groups(&counts)) {
          auto o = json::to_json(g);
          o["member_count"] = counts.count(g.name) ? counts[g.name] : 0;
          o["standing_jobs"] = store->standing_jobs(g.name).size();
          arr.push_back(std::move(o));
        }
        return json_response(200, bj::object{{"id_groups", std::move(arr)}, {"owner", my_id}});
      });
  }

  void id_group_create(HttpRequest&& req, Responder& r, const PathSegments&) {
      require_json(req);
      auto body = json::parse_object(req.body);
      IdGroup g = json::id_group_from_json(body);
      validate_group_name(g.name, "ID group");
      validate_join_policy(g.policy);
      const auto password = json::get_string(body, "password", false);
      if (!password.empty()) g.password_hash = hash_join_password(password);
      g.owner = my_id;
      g.members.clear();
      return blocking(std::move(r), [this, g] {
        store->create_id_group(g);
        spdlog::info("ID group {} created{}{}", g.name, g.has_password() ? " (join password set)" : "",
                     g.policy.empty() ? "" : " with a join policy");
        if (!g.policy.empty()) {
          // Hosts already registered that the policy takes in, in one join.
          std::vector<std::string> matching;
          for (const auto& h : store->list_hosts())
            if (h.approved && policy_matches(g.policy, h)) matching.push_back(h.host_id);
          if (!matching.empty()) wake(store->join_id_group(g.name, matching, JoinMethod::policy).vias, true);
        }
        auto created = store->find_id_group(g.name);
        return json_response(201, json::to_json(*created));
      });
  }

  void id_group_show(HttpRequest&&, Responder& r, const PathSegments& p) {
      const auto name = p[2];
      return blocking(std::move(r), [this, name] {
        auto g = store->find_id_group(name);
        if (!g) throw Error(ErrorKind::not_found, "ID group \"" + name + "\" does not exist here");
        auto o = json::to_json(*g);
        bj::array jobs;
        for (const auto& j : store->standing_jobs(name)) jobs.push_back(json::to_json(j));
        o["jobs"] = std::move(jobs);
        return json_response(200, o);
      });
  }

  void id_group_delete(HttpRequest&&, Responder& r, const PathSegments& p) {
    const auto name = p[2];
    return delete_group(r, "ID group", name, [this, name] { return store->delete_id_group(name); });
  }

  void id_group_members(HttpRequest&& req, Responder& r, const PathSegments& p) {
      const auto name = p[2];
      auto [add, remove] = member_change(req);
      return blocking(std::move(r), [this, name, add, remove] {
        if (!store->find_id_group(name)) throw Error(ErrorKind::not_found, "ID group \"" + name + "\" does not exist here");
        const auto a = resolve_host_keys(add, "nothing was changed");
        const auto d = resolve_host_keys(remove, "nothing was changed");
        auto joined_change = store->join_id_group(name, a, JoinMethod::admin);
        auto left_change = store->leave_id_group(name, d);
        wake(joined_change.vias, true);
        wake(left_change.vias, true);
        return json_response(200, bj::object{{"group", name},
                                             {"joined", joined_change.changed},
                                             {"entries", joined_change.entries},
                                             {"left", left_change.changed},
                                             {"cancelled", left_change.entries}});
      });
  }

  // --- relay manager ----------------------------------------------------------------------

  // The package's manifest, fetched from the parent and recorded here when missing.
  std::optional<Manifest> ensure_manifest(const std::string& name, const std::string& version) {
    if (auto m = store->find_package(name, version)) return m;
    std::string text;
    try {
      text = upstream->get("/v1/content/manifests/" + url_encode(name) + "/" + url_encode(version));
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::not_found) return std::nullopt;
      throw;
    }
    Manifest m = manifest_from_json(text);
    if (m.name != name || m.version != version)
      throw Error(ErrorKind::integrity, "parent sent the manifest of another package");
    validate_manifest(m);
    store->insert_package(m);
    store->touch_package(name, version, fs::now_unix());
    return m;
  }

  void maybe_maintain() {
    if (!is_relay() || settings.cache_limit_bytes == 0) return;  // expiry alone: the periodic run
    {
      std::lock_guard lock(relay_mutex);
      maintain_wanted = true;
    }
    relay_cv.notify_all();
  }

  struct Freed {
    std::size_t chunks = 0;
    std::uint64_t bytes = 0;
  };
  // Removes the package's chunks that no other cached package uses.
  Freed remove_package_chunks(const Manifest& gone) {
    std::set<std::string> keep;
    for (const auto& p : store->list_packages())
      if (auto m = store->find_package(p.name, p.version))
        for (const auto& c : m->chunks) keep.insert(c.digest);
    Freed freed;
    for (const auto& c : gone.chunks) {
      if (keep.count(c.digest)) continue;
      std::error_code ec;
      const auto size = std::filesystem::file_size(chunks->path_of(c.digest), ec);
      if (ec) continue;  // not cached here
      chunks->remove(c.digest);
      ++freed.chunks;
      freed.bytes += size;
    }
    return freed;
  }

  // Drops a cached package unless a job that is not over still needs it.
  std::optional<Freed> evict(const PackageSummary& p, const char* why) {
    auto m = store->find_package(p.name, p.version);
    try {
      if (!m || !store->delete_package(p.name, p.version)) return std::nullopt;
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::conflict) return std::nullopt;  // still needed: keep it
      throw;
    }
    const auto freed = remove_package_chunks(*m);
    spdlog::info("relay cache: package {} {} dropped ({}; {} chunk(s) freed)", p.name, p.version, why, freed.chunks);
    return freed;
  }

  std::uint64_t cache_bytes() const {
    std::uint64_t total = 0;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(chunks->root(), ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
      if (it->is_regular_file(ec)) total += it->file_size(ec);
    return total;
  }

  // Expiry first, then least recently used packages until the cache fits its limit.
  void maintain_cache() {
    auto packages = store->list_packages();
    const auto now = fs::now_unix();
    if (settings.package_expiry_days > 0) {
      const auto max_age = static_cast<std::int64_t>(settings.package_expiry_days * 86400.0);
      for (const auto& p : packages)
        if (now - std::max(p.last_used, p.created_at) > max_age) evict(p, "expired");
    }
    if (settings.cache_limit_bytes == 0) return;
    auto used = cache_bytes();
    if (used <= settings.cache_limit_bytes) return;
    packages = store->list_packages();
    std::sort(packages.begin(), packages.end(), [](const auto& a, const auto& b) {
      return std::max(a.last_used, a.created_at) < std::max(b.last_used, b.created_at);
    });
    for (const auto& p : packages) {
      if (used <= settings.cache_limit_bytes) break;
      if (auto freed = evict(p, "cache over its limit")) used -= std::min(used, freed->bytes);
    }
    if (used > settings.cache_limit_bytes)
      spdlog::warn("relay cache holds {} bytes, over its limit of {}: what is left is needed by active jobs",
                   used, settings.cache_limit_bytes);
  }

  void maintain_loop() {
    std::unique_lock lock(relay_mutex);
    while (!relay_stopping_flag) {
      // Every 30 s, or more often when packages expire sooner than that.
      const double expiry_s = settings.package_expiry_days * 86400.0;
      const auto every = std::chrono::milliseconds(static_cast<std::int64_t>(
          expiry_s > 0 ? std::clamp(expiry_s * 500.0, 1000.0, 30000.0) : 30000.0));
      relay_cv.wait_for(lock, every, [&] { return relay_stopping_flag || maintain_wanted; });
      if (relay_stopping_flag) break;
      maintain_wanted = false;
      lock.unlock();
      try {
        maintain_cache();
      } catch (const std::exception& e) {
        spdlog::error("relay cache maintenance: {}", e.what());
      }
      lock.lock();
    }
  }

  void relay_sleep(int ms) {
    std::unique_lock lock(relay_mutex);
    relay_cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return relay_stopping_flag.load(); });
  }
  std::atomic<bool> relay_stopping_flag{false};

  bj::object parent_call(ClientSet& clients, const std::string& url, std::string_view method,
                         const std::string& target, const bj::value& body, int timeout = 120) {
    auto& c = clients.get(url);
    c.set_timeout(timeout);
    return call_parent(c, method, target, body);
  }

  // Registers this relay with `url`; refuses a parent that is this relay or below it.
  void register_up(const std::string& url) {
    const bool wildcard = settings.listen_address == "0.0.0.0" || settings.listen_address == "::";
    const Host me = describe_this_host(my_id, HostRole::relay, settings.host_name,
                                       !settings.bind_address.empty() ? settings.bind_address
                                       : wildcard                     ? std::string()
                                                                      : settings.listen_address);
    auto res = parent_call(*poll_clients, url, "POST", "/v1/agent/register", json::to_json(me));
    std::vector<std::string> up = json::get_string_array(res, "path", false);
    check_not_below(url, up);
    {
      std::lock_guard lock(relay_mutex);
      tree_path = {my_id};
      tree_path.insert(tree_path.end(), up.begin(), up.end());
      registered_url = url;
      sync_wanted = true;
    }
    relay_cv.notify_all();
    spdlog::info("relay {} registered with parent {} ({} level(s) below the top)", me.name, url, up.size());
  }

  void check_not_below(const std::string& url, const std::vector<std::string>& parent_path) const {
    if (!parent_path.empty() && parent_path.front() == my_id)
      throw Error(ErrorKind::invalid_argument, "parent " + url + " is this relay itself; a relay's parent must be above it");
    if (std::find(parent_path.begin(), parent_path.end(), my_id) != parent_path.end())
      throw Error(ErrorKind::invalid_argument, "parent " + url +
                                                   " is below this relay in the tree; choosing it would make a loop");
  }

  // Sends acks, hosts, last contacts and entry states upward. Returns true when more is queued.
  bool sync_once(const std::vector<std::pair<std::int64_t, EntryState>>& acks) {
    std::string url;
    {
      std::lock_guard lock(relay_mutex);
      url = registered_url;
    }
    if (url.empty()) return false;
    auto hosts = acks.empty() ? store->hosts_to_report(500) : std::vector<PendingHost>{};
    auto reports = acks.empty() ? store->reports_to_forward(500) : std::vector<PendingReport>{};
    std::unordered_map<std::string, std::int64_t> seen;
    if (acks.empty()) {
      std::lock_guard lock(relay_mutex);
      seen.swap(seen_since_sync);
    }
    if (acks.empty() && hosts.empty() && reports.empty() && seen.empty()) return false;
    bj::array ha, sa, ra, aa;
    for (auto& h : hosts) {
      Host up = h.host;
      if (up.parent.empty()) up.parent = my_id;  // directly below this relay
      ha.push_back(json::to_json(up));
    }
    for (const auto& [h, t] : seen) sa.push_back(bj::object{{"host_id", h}, {"last_seen", t}});
    for (const auto& r : reports) ra.push_back(json::to_json(r.report));
    for (const auto& [e, st] : acks) aa.push_back(bj::object{{"entry_id", e}, {"state", std::string(to_string(st))}});
    try {
      parent_call(*sync_clients, url, "POST", "/v1/relay/sync",
                  bj::object{{"host_id", my_id}, {"hosts", ha}, {"seen", sa}, {"reports", ra}, {"acks", aa}});
    } catch (...) {
      std::lock_guard lock(relay_mutex);
      for (const auto& [h, t] : seen) seen_since_sync.try_emplace(h, t);
      throw;
    }
    std::vector<std::pair<std::string, std::int64_t>> hd;
    for (const auto& h : hosts) hd.emplace_back(h.host.host_id, h.version);
    store->hosts_reported(hd);
    std::vector<std::pair<std::int64_t, std::int64_t>> rd;
    for (const auto& r : reports) rd.emplace_back(r.local_id, r.version);
    store->reports_forwarded(rd);
    return hosts.size() == 500 || reports.size() == 500;
  }

  void sync_loop() {
    int backoff = 0;
    while (!relay_stopping_flag) {
      {
        std::unique_lock lock(relay_mutex);
        relay_cv.wait_for(lock, std::chrono::milliseconds(backoff ? backoff : settings.sync_interval_ms),
                          [&] { return relay_stopping_flag.load() || (sync_wanted && backoff == 0); });
        sync_wanted = false;
      }
      if (relay_stopping_flag) break;
      // A short pause lets a burst of changes travel in one batch.
      relay_sleep(50);
      try {
        while (sync_once({}) && !relay_stopping_flag) {
        }
        backoff = 0;
      } catch (const std::exception& e) {
        backoff = std::min(backoff ? backoff * 2 : 250, 5000);
        spdlog::warn("reporting to the parent failed: {}; retrying in {} ms", e.what(), backoff);
      }
    }
  }

  void send_own_report(EntryReport rep) {
    rep.seq = own_seq++;
    fs::write_file_atomic(settings.state_dir / "seq", std::to_string(own_seq));
    own_unsent.push_back(std::move(rep));
    flush_own_reports();
  }

  void flush_own_reports() {
    if (own_unsent.empty()) return;
    bj::array arr;
    for (const auto& r : own_unsent) arr.push_back(json::to_json(r));
    parent_call(*poll_clients, link->current(), "POST", "/v1/agent/report",
                bj::object{{"host_id", my_id}, {"reports", std::move(arr)}});
    own_unsent.clear();
  }

  // Work addressed to this relay itself: pre-stage or drop a package in its cache.
  void process_own(const bj::object& item) {
    EntryReport rep;
    rep.entry_id = json::get_int(item, "entry_id");
    rep.attempt = static_cast<std::int32_t>(json::get_int(item, "attempt", 1));
    const auto type = parse_job_type(json::get_string(item, "type"));
    const auto& pkg = item.at("package").as_object();
    const auto name = json::get_string(pkg, "name");
    const auto version = json::get_string(pkg, "version");
    try {
      if (type == JobType::transfer_to_relay) {
        rep.state = EntryState::transferring;
        send_own_report(rep);
        auto m = ensure_manifest(name, version);
        if (!m) throw Error(ErrorKind::not_found, "package \"" + name + "\" " + version + " does not exist at the parent");
        std::vector<std::string> digests;
        for (const auto& c : m->chunks) digests.push_back(c.digest);
        const auto before = upstream->fetches();
        upstream->fetch_all(digests);
        store->touch_package(name, version, fs::now_unix());
        rep.state = EntryState::succeeded;
        rep.message = "cached: " + std::to_string(upstream->fetches() - before) + " of " +
                      std::to_string(digests.size()) + " chunk(s) fetched";
        maybe_maintain();
      } else if (type == JobType::delete_package) {
        auto m = store->find_package(name, version);
        if (m && store->delete_package(name, version)) {
          const auto freed = remove_package_chunks(*m);
          rep.message = "removed from the cache (" + std::to_string(freed.chunks) + " chunk(s) freed)";
        } else {
          rep.message = "was not in this relay's cache";
        }
        rep.state = EntryState::succeeded;
      } else {
        throw Error(ErrorKind::invalid_argument, "relays do not install packages");
      }
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::unavailable) throw;  // transient: the entry comes again
      rep.state = EntryState::failed;
      rep.message = e.what();
    }
    send_own_report(rep);
  }

  void poll_loop() {
    int backoff = 0;
    std::set<std::pair<std::int64_t, std::int64_t>> done_own;  // (entry, attempt) finished here
    while (!relay_stopping_flag) {
      const auto url = link->current();
      try {
        if (link->maybe_return_to_primary()) {
          std::lock_guard lock(relay_mutex);
          registered_url.clear();
        }
        bool registered;
        {
          std::lock_guard lock(relay_mutex);
          registered = registered_url == link->current();
        }
        if (!registered) register_up(link->current());
        flush_own_reports();
        auto res = parent_call(*poll_clients, link->current(), "GET",
                               "/v1/agent/work?host_id=" + my_id + "&wait=" + std::to_string(settings.poll_timeout_seconds),
                               nullptr, settings.poll_timeout_seconds + 15);
        backoff = 0;
        if (auto it = res.find("routed"); it != res.end() && it->value().is_array()) {
          std::vector<RoutedEntry> routed;
          for (const auto& v : it->value().as_array()) routed.push_back(json::routed_entry_from_json(v.as_object()));
          auto vias = store->import_entries(routed);
          wake(vias, true);
          std::vector<std::pair<std::int64_t, EntryState>> acks;
          for (const auto& x : routed) acks.emplace_back(x.entry.id, x.entry.state);
          sync_once(acks);
          spdlog::debug("{} entr(ies) received from the parent", routed.size());
        }
        if (auto it = res.find("released"); it != res.end() && it->value().is_array()) {
          for (const auto& v : it->value().as_array()) {
            const std::string h(v.as_string());
            if (auto known = store->find_host(h)) {
              if (!known->via.empty() && known->via != h) release(known->via, h);
              store->remove_host(h);
              spdlog::info("host {} ({}) now lives under another parent; forgotten here", known->name, h);
            }
          }
        }
        bool fresh = false;
        for (const auto& v : json::get_array(res, "work")) {
          const auto& o = v.as_object();
          const auto key = std::make_pair(json::get_int(o, "entry_id"), json::get_int(o, "attempt", 1));
          if (done_own.count(key)) continue;
          process_own(o);
          done_own.insert(key);
          fresh = true;
        }
        if (!fresh && !json::get_array(res, "work").empty()) relay_sleep(1000);
      } catch (const Error& e) {
        if (relay_stopping_flag) break;
        {
          std::lock_guard lock(relay_mutex);
          registered_url.clear();
        }
        const bool wrapped = link->failed(url);
        if (wrapped || e.kind() != ErrorKind::unavailable) {
          backoff = std::min(backoff ? backoff * 2 : 200, 5000);
          spdlog::warn("{}; retrying in {} ms", e.what(), backoff);
          relay_sleep(backoff);
        } else {
          spdlog::warn("{}; trying the next parent", e.what());
        }
      } catch (const std::exception& e) {
        if (relay_stopping_flag) break;
        backoff = std::min(backoff ? backoff * 2 : 200, 5000);
        spdlog::error("relay uplink: {}; retrying in {} ms", e.what(), backoff);
        relay_sleep(backoff);
      }
    }
  }

  // At start: a parent that answers and lists this relay on its way to the top is refused.
  void check_parents_at_start() {
    for (const auto& url : settings.parents) {
      std::vector<std::string> parent_path;
      try {
        HttpClientSettings cs = link->client_settings(url);
        cs.connect_timeout_seconds = 3;
        cs.timeout_seconds = 5;
        HttpClient probe(cs);
        parent_path = json::get_string_array(call_parent(probe, "GET", "/v1/status", nullptr), "path", false);
      } catch (const Error& e) {
        spdlog::warn("parent {} is not reachable now ({}); will keep trying", url, e.what());
        continue;
      }
      check_not_below(url, parent_path);
    }
  }
};

namespace {
EventSinkRegistry builtin_sinks() {
  EventSinkRegistry r;
  register_builtin_event_sinks(r);
  return r;
}
}  // namespace

Manager::Manager(ManagerSettings settings, const StoreRegistry& stores)
    : Manager(std::move(settings), stores, builtin_sinks()) {}

Manager::Manager(ManagerSettings settings, const StoreRegistry& stores, const EventSinkRegistry& sinks)
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
  impl_->my_id = fs::load_or_create_host_id(s.state_dir / "host-id");
  impl_->tree_path = {impl_->my_id};
  if (!s.parents.empty()) {
    ParentLink::Settings ls;
    ls.urls = s.parents;
    ls.ca_file = s.ca_file;
    ls.bind_address = s.bind_address;
    ls.recheck_seconds = s.parent_recheck_seconds;
    impl_->link = std::make_unique<ParentLink>(ls);
    if (s.sync_interval_ms < 10) throw Error(ErrorKind::invalid_argument, "sync interval must be at least 10 ms");
    try {
      impl_->own_seq = std::stoll(fs::read_file(s.state_dir / "seq"));
    } catch (...) {
      impl_->own_seq = 1;
    }
  }
  if (s.silent_after_seconds < 0) throw Error(ErrorKind::invalid_argument, "silent-after must be 0 (never) or more seconds");
  if (s.event_retention_days < 0) throw Error(ErrorKind::invalid_argument, "event retention must be 0 (keep) or more days");
  impl_->store = stores.open(s.store);
  impl_->events = std::make_unique<EventDispatcher>(*impl_->store, sinks, s.event_sinks);
  impl_->register_routes();
}

Manager::~Manager() { stop(); }

void Manager::start() {
  auto& i = *impl_;
  if (i.started) return;
  for (auto& h : i.store->children_with_work()) i.hosts_with_work.insert(h);
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
    // Collected files carry up to the largest per-file limit; inventory reports are large JSON.
    if (method == "POST" && target.starts_with("/v1/agent/collect")) return kMaxCollectFile;
    if (method == "POST" && target.starts_with("/v1/agent/inventory")) return 64ull << 20;
    return 0;
  };
  i.server = std::make_unique<HttpServer>(hs, [this](HttpRequest&& req, Responder r) {
    impl_->handle(std::move(req), std::move(r));
  });
  i.server->start();
  i.timers = std::make_unique<TimerQueue>();
  i.hot_chunks = std::make_unique<ByteCache>(i.settings.memory_cache_bytes);
  if (const char* fault = std::getenv("DISTRIB_FAULT_CORRUPT_CHUNKS"); fault && *fault) {
    i.corrupt_left = std::atoll(fault);
    spdlog::warn("fault injection: the next {} chunk(s) served in batches are corrupted on purpose", i.corrupt_left.load());
  }
  i.started_unix = fs::now_unix();
  i.store->set_event_listener([d = i.events.get()] { d->notify(); });
  i.events->start();
  i.sweeper = std::thread([this] { impl_->sweep_loop(); });
  i.scheduler = std::thread([this] { impl_->schedule_loop(); });
  i.ingest_stopping = false;
  i.ingester = std::thread([this] { impl_->ingest_loop(); });
  i.started = true;
  if (i.is_relay()) {
    i.poll_clients = std::make_unique<ClientSet>(*i.link);
    i.sync_clients = std::make_unique<ClientSet>(*i.link);
    i.join_clients = std::make_unique<ClientPool>(*i.link);
    i.upstream = std::make_unique<UpstreamFetcher>(*i.chunks, *i.link, i.my_id, i.settings.upstream_threads);
    try {
      i.check_parents_at_start();
    } catch (...) {
      stop();
      throw;
    }
    i.poller = std::thread([this] { impl_->poll_loop(); });
    i.syncer = std::thread([this] { impl_->sync_loop(); });
    i.maintainer = std::thread([this] { impl_->maintain_loop(); });
    i.maybe_maintain();
  }
  fs::write_file_atomic(i.settings.state_dir / "endpoint", url() + "\n");
  spdlog::info("{} {} listening on {} (database: {}, key mode: {}, {} host(s) with open work)",
               i.is_relay() ? "relay" : "manager", i.my_id, url(), i.settings.store.backend, to_string(i.settings.key_mode), i.hosts_with_work.size());
}

void Manager::stop() {
  auto& i = *impl_;
  if (!i.started) return;
  i.started = false;
  if (i.is_relay() && i.poll_clients) {
    {
      std::lock_guard lock(i.relay_mutex);
      i.relay_stopping_flag = true;
    }
    i.relay_cv.notify_all();
    i.poll_clients->abort();
    i.sync_clients->abort();
    i.join_clients->abort();
    i.upstream->stop();
    for (auto* t : {&i.poller, &i.syncer, &i.maintainer})
      if (t->joinable()) t->join();
  }
  {
    std::lock_guard lock(i.mutex);
    i.stopping = true;
  }
  i.sweeper_cv.notify_all();
  if (i.sweeper.joinable()) i.sweeper.join();
  {
    std::lock_guard lock(i.sched_mutex);
    i.sched_stopping = true;
  }
  i.sched_cv.notify_all();
  if (i.scheduler.joinable()) i.scheduler.join();
  {
    std::lock_guard lock(i.ingest_mutex);
    i.ingest_stopping = true;
  }
  i.ingest_cv.notify_all();
  if (i.ingester.joinable()) i.ingester.join();
  // Agents in a long poll get an empty answer and come back to whoever serves next.
  decltype(i.waiters) waiting;
  {
    std::lock_guard lock(i.mutex);
    waiting.swap(i.waiters);
  }
  for (auto& [host, list] : waiting)
    for (auto& w : list) (*w.responder)(json_response(200, bj::object{{"work", bj::array{}}}));
  if (i.timers) i.timers->stop();
  i.events->stop();  // closes event streams
  i.pool->stop();
  i.server->stop();
  i.store->set_event_listener(nullptr);
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
const std::string& Manager::host_id() const noexcept { return impl_->my_id; }

}  // namespace distrib
