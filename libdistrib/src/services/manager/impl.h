#pragma once
// The manager's shared state and the declarations of its facilities. Manager::Impl is one class
// whose member functions are defined by facility, one source file each under services/manager/
// (see the groups below and docs/ARCHITECTURE.md): it is over the usual size because it is the
// state those facilities share. The way on is to give each facility a class of its own with a
// narrow context, as the work cache (work_cache.h) already has.
#include <distrib/content/chunk_store.h>
#include <distrib/content/packager.h>
#include <distrib/error.h>
#include <distrib/net/http.h>
#include <distrib/services/manager.h>
#include <distrib/version.h>

#include "model/json_codec.h"
#include "services/manager/http_util.h"
#include "services/manager/router.h"
#include "services/manager/work_cache.h"
#include "services/observe.h"
#include "services/parent_link.h"
#include "services/system_info.h"
#include "services/upstream.h"
#include "util/blocking_pool.h"
#include "util/byte_cache.h"
#include "util/fs.h"
#include "util/random.h"
#include "util/timer_queue.h"

#include <distrib/content/digest.h>
#include <distrib/model/inventory.h>
#include <distrib/model/units.h>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
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

namespace manager {

inline std::string random_token() {
  return util::random_hex(32, "admin token");
}

inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// What kind of contact a poll is: the first after the agent started (at-start installs are
// due), or its last before an orderly stop (at-stop installs are due).
struct PollFlags {
  bool start = false;
  bool stopping = false;
};

}  // namespace manager
using manager::PollFlags;
using manager::random_token;
using manager::trim;

struct Manager::Impl {
  ManagerSettings settings;
  std::unique_ptr<Store> store;
  std::unique_ptr<ChunkStore> chunks;
  std::string admin_token;
  std::unique_ptr<BlockingPool> pool;
  std::unique_ptr<HttpServer> server;

  // Work cache: hosts with work, agents waiting in a long poll, last contacts, releases. The
  // only mutable state the facilities share (work_cache.h); long polls whose wait ran out are
  // answered empty.
  manager::WorkCache work_cache{[](std::vector<manager::WorkCache::Waiter> expired) {
    const auto empty = json_response(200, bj::object{{"work", bj::array{}}});
    for (auto& r : expired) (*r)(empty);
  }};
  bool started = false;
  std::int64_t started_unix = 0;

  std::string my_id;                   // this manager's host identifier
  std::vector<std::string> tree_path;  // host ids from this manager up to the top

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
  std::unordered_map<std::string, Clock::time_point> link_free;         // requester → when its link is free
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
  std::string registered_url;  // the parent we are registered with; empty: none
  std::unordered_map<std::string, std::int64_t> seen_since_sync;  // last contacts not yet reported up
  std::int64_t own_seq = 1;             // sequence of this relay's reports on its own entries
  std::vector<EntryReport> own_unsent;  // those not yet acknowledged by the parent

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

  manager::Router router;  // the route table (routes.cpp)

  // --- types and constants of the facilities

  struct SchedulerState {               // scheduler.cpp
    std::int64_t contacts_flushed = 0;  // when last contacts last went to the store
    std::int64_t events_pruned = 0;     // when old events were last deleted
    std::int64_t expired_upto = 0;      // expiries up to here are done (0: every past one at start)
    std::int64_t ready_upto = 0;
    std::map<std::int64_t, bool> window_open;
  };

  // routes.cpp: the body limit of a route that declares none.
  static constexpr std::uint64_t kDefaultBodyLimit = 4 * 1024 * 1024;

  // content.cpp: a segment lists at most this many chunks and is cut at this many bytes.
  static constexpr std::size_t kMaxBatchChunks = 4096;
  static constexpr std::uint64_t kMaxBatchBytes = 32ull << 20;

  // jobs.cpp. Destinations of a job: host keys, "group:NAME" (host group), "id:NAME" (ID group,
  // standing) and "relay:KEY" (every host below that relay). Everything is checked before
  // anything is created; the answer names every destination that is wrong.
  struct Expansion {
    std::vector<std::string> host_ids;
    std::vector<std::string> id_groups;
    std::size_t skipped = 0;  // group members of the wrong role or awaiting approval
  };

  // groups.cpp: ID group membership asked by hosts (agent configuration or a command on the host).
  struct JoinRequest {
    std::string host_id, group, password, relay;
    bool leave = false;
    JoinMethod how = JoinMethod::command;
    std::optional<Host> record;  // forwarded by a relay: the host as it knows it
  };

  struct Freed {  // relay_cache.cpp
    std::size_t chunks = 0;
    std::uint64_t bytes = 0;
  };

  std::atomic<bool> relay_stopping_flag{false};

  // --- facilities: each group is defined in services/manager/<name>.cpp

  // routes.cpp
  void handle(HttpRequest&& req, Responder r);
  void register_routes();

  // dispatch.cpp
  void note_contact(const std::string& id);
  std::uint64_t generation_of(const std::string& host_id);
  static int minute_of_day_now();
  static bool due(const JobEntry& e, const Job& job, PollFlags flags, std::int64_t now, int minute);
  std::vector<std::pair<JobEntry, Job>> due_entries(const std::string& host_id, PollFlags flags);
  bool has_work(const std::string& child);
  void settle(const std::string& host_id, std::uint64_t seen, bool has_open_entries);
  HttpResponse work_for(const std::string& host_id, PollFlags flags = {});
  void wake(const std::vector<std::string>& host_ids, bool has_work);
  void agent_work(HttpRequest&& req, Responder& r, const PathSegments&);
  void agent_transfer(HttpRequest&& req, Responder& r, const PathSegments&);
  void agent_report(HttpRequest&& req, Responder& r, const PathSegments&);

  // registration.cpp
  void release(const std::string& via, const std::string& host);
  HostChange record_host(Host host, const std::string& via);
  void report_conflicts(const Host& host);
  void apply_join_policies(const std::string& host_id);
  void agent_register(HttpRequest&& req, Responder& r, const PathSegments&);
  void approve_hosts(HttpRequest&& req, Responder& r, const PathSegments&);
  void list_hosts(HttpRequest&&, Responder& r, const PathSegments&);
  std::vector<std::string> resolve_host_keys(const std::vector<std::string>& keys, const std::string& what);
  std::vector<std::string> resolve_host_keys(const std::vector<std::string>& keys, const std::string& what,
                                             const std::vector<Host>& all);
  static bool is_below(const std::map<std::string, const Host*>& by_id, const Host& host,
                       const std::string& ancestor);

  // scheduler.cpp
  void poke_scheduler();
  void flush_contacts(SchedulerState& st, std::int64_t now);
  void prune_events(SchedulerState& st, std::int64_t now);
  void schedule_tick(SchedulerState& st);
  void schedule_loop();

  // observe_api.cpp
  void audit_answer(const HttpRequest& req, Responder& r);
  void get_status(HttpRequest&&, Responder& r, const PathSegments&);
  void get_routes(HttpRequest&&, Responder& r, const PathSegments&);
  void get_cluster_status(HttpRequest&&, Responder& r, const PathSegments&);
  static EventFilter filter_of(const HttpRequest& req);
  void events_page(HttpRequest&& req, Responder& r, const PathSegments&);
  void events_stream(HttpRequest&& req, Responder& r, const PathSegments&);
  void events_sinks(HttpRequest&& req, Responder& r, const PathSegments&);
  void audit_route(HttpRequest&& req, Responder& r, const PathSegments&);
  void get_metrics(HttpRequest&&, Responder& r, const PathSegments&);
  void stats(HttpRequest&&, Responder& r, const PathSegments&);

  // content.cpp
  std::optional<int> admit(const std::string& requester);
  void transfer_done(const std::string& requester);
  HttpResponse busy_response(int seconds);
  void send_paced(const std::string& requester, std::uint64_t bytes, std::shared_ptr<Responder> r,
                  HttpResponse res);
  void count_served(const std::string& requester, std::uint64_t chunk_count, std::uint64_t bytes);
  void serve_chunk(const std::string& digest, const std::string& requester, std::shared_ptr<Responder> r);
  void serve_batch(std::string requester, std::vector<std::string> digests, std::shared_ptr<Responder> r,
                   bool after_upstream);
  void content_chunk_batch(HttpRequest&& req, Responder& r, const PathSegments&);
  void content_chunk(HttpRequest&& req, Responder& r, const PathSegments& p);
  void content_manifest(HttpRequest&&, Responder& r, const PathSegments& p);
  void chunks_missing(HttpRequest&& req, Responder& r, const PathSegments&);
  void chunk_upload(HttpRequest&& req, Responder& r, const PathSegments& p);
  void package_list(HttpRequest&&, Responder& r, const PathSegments&);
  void package_register(HttpRequest&& req, Responder& r, const PathSegments&);
  void package_show(HttpRequest&&, Responder& r, const PathSegments& p);

  // jobs.cpp
  static std::string joined(const std::vector<std::string>& v);
  Expansion expand_destinations(const Job& job);
  void transfers_suspend_resume(HttpRequest&& req, Responder& r, const PathSegments& p);
  void job_create(HttpRequest&& req, Responder& r, const PathSegments&);
  void job_list(HttpRequest&& req, Responder& r, const PathSegments&);
  static std::int64_t job_id_of(const PathSegments& p);
  void job_show(HttpRequest&&, Responder& r, const PathSegments& p);
  void job_files(HttpRequest&&, Responder& r, const PathSegments& p);
  void job_file(HttpRequest&& req, Responder& r, const PathSegments& p);
  void job_retry(HttpRequest&&, Responder& r, const PathSegments& p);
  void job_complete_now(HttpRequest&&, Responder& r, const PathSegments& p);
  void job_cancel(HttpRequest&&, Responder& r, const PathSegments& p);

  // groups.cpp
  void agent_join(HttpRequest&& req, Responder& r, const PathSegments&);
  bj::object join(const JoinRequest& j);
  bj::array host_refs(const std::vector<std::string>& ids);
  static std::vector<std::string> optional_strings(const bj::object& o, std::string_view key);
  static std::pair<std::vector<std::string>, std::vector<std::string>> member_change(const HttpRequest& req);
  void delete_group(Responder& r, const char* what, const std::string& name, std::function<bool()> erase);
  void group_list(HttpRequest&&, Responder& r, const PathSegments&);
  void group_create(HttpRequest&& req, Responder& r, const PathSegments&);
  void group_show(HttpRequest&&, Responder& r, const PathSegments& p);
  void group_delete(HttpRequest&&, Responder& r, const PathSegments& p);
  void group_members(HttpRequest&& req, Responder& r, const PathSegments& p);
  void id_group_list(HttpRequest&&, Responder& r, const PathSegments&);
  void id_group_create(HttpRequest&& req, Responder& r, const PathSegments&);
  void id_group_show(HttpRequest&&, Responder& r, const PathSegments& p);
  void id_group_delete(HttpRequest&&, Responder& r, const PathSegments& p);
  void id_group_members(HttpRequest&& req, Responder& r, const PathSegments& p);

  // inventory.cpp
  void agent_inventory_fields(HttpRequest&& req, Responder& r, const PathSegments&);
  std::vector<InventoryValue> values_of(const std::string& field);
  std::vector<std::string> hosts_matching(const InventoryQuery& q);
  static bj::object fields_json(const std::vector<InventoryField>& fields);
  std::vector<InventoryField> inventory_fields();
  void agent_inventory(HttpRequest&& req, Responder& r, const PathSegments&);
  bj::array drop_undefined_fields(InventoryReport& rep);
  void ingest_loop();
  static std::vector<std::string> split_list(const std::string& text);
  void inventory_query(HttpRequest&& req, Responder& r, const PathSegments&);
  void inventory_fields_list(HttpRequest&&, Responder& r, const PathSegments&);
  void inventory_field_define(HttpRequest&& req, Responder& r, const PathSegments&);
  void inventory_field_delete(HttpRequest&&, Responder& r, const PathSegments& p);
  void inventory_host(HttpRequest&& req, Responder& r, const PathSegments& p);

  // collection.cpp
  std::filesystem::path collected_path(std::int64_t job, const std::string& host,
                                       const std::string& path) const;
  static void validate_collected_path(const std::string& path);
  void agent_collect(HttpRequest&& req, Responder& r, const PathSegments&);

  // relay_uplink.cpp
  void note_for_sync(const std::string& id);
  void notify_sync();
  void relay_sync(HttpRequest&& req, Responder& r, const PathSegments&);
  HttpResponse forward_request(const HttpRequest& req, const std::string& target);
  void forward_up(HttpRequest&& req, Responder& r, std::string target);
  void relay_sleep(int ms);
  bj::object parent_call(ClientSet& clients, const std::string& url, std::string_view method,
                         const std::string& target, const bj::value& body, int timeout = 120);
  void register_up(const std::string& url);
  void check_not_below(const std::string& url, const std::vector<std::string>& parent_path) const;
  bool sync_once(const std::vector<std::pair<std::int64_t, EntryState>>& acks);
  void sync_loop();
  void send_own_report(EntryReport rep);
  void flush_own_reports();
  void process_own(const bj::object& item);
  void poll_loop();
  void check_parents_at_start();

  // relay_cache.cpp
  std::optional<Manifest> ensure_manifest(const std::string& name, const std::string& version);
  void maybe_maintain();
  Freed remove_package_chunks(const Manifest& gone);
  std::optional<Freed> evict(const PackageSummary& p, const char* why);
  std::uint64_t cache_bytes() const;
  void maintain_cache();
  void maintain_loop();
};

}  // namespace distrib
