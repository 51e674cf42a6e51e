#pragma once
// SociStore: the one Store implementation, on SOCI, with one Dialect per database. The class is
// declared here and its member functions are defined by facility, one source file each under
// store/soci/ (sessions, hosts, packages, jobs, routing, schedule, groups, inventory, events,
// lease, export). It implements the whole Store interface, hence its size.
#include <distrib/error.h>
#include <distrib/model/event.h>
#include <distrib/store/store.h>

#include "model/json_codec.h"
#include "store/connection.h"
#include "store/dialect.h"
#include "util/fs.h"

#include <distrib/content/digest.h>

#include <fmt/format.h>
#include <boost/json.hpp>

#include <soci/soci.h>

#include <spdlog/spdlog.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <istream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_set>

namespace distrib::store {

// Events written by the current thread's transaction in progress (the listener is told after
// its commit).
inline thread_local int tl_events_written = 0;
// A database unreachable at least this long is told as a database.outage event.
constexpr long long kOutageEventMs = 2000;

using ll = long long;

inline std::int64_t get_i64(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return 0;
  switch (r.get_properties(i).get_data_type()) {
    case soci::dt_integer:
      return r.get<int>(i);
    case soci::dt_long_long:
      return r.get<long long>(i);
    case soci::dt_unsigned_long_long:
      return static_cast<std::int64_t>(r.get<unsigned long long>(i));
    case soci::dt_double:
      return static_cast<std::int64_t>(r.get<double>(i));
    case soci::dt_string:
      return std::stoll(r.get<std::string>(i));
    default:
      throw Error("unexpected column type in " + r.get_properties(i).get_name());
  }
}
inline std::optional<std::int64_t> get_opt_i64(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return std::nullopt;
  return get_i64(r, i);
}
inline std::string get_str(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return {};
  return r.get<std::string>(i);
}

inline std::string join_addresses(const std::vector<std::string>& a) {
  std::string out;
  for (const auto& s : a) out += (out.empty() ? "" : ",") + s;
  return out;
}
inline std::vector<std::string> split_addresses(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < s.size()) {
    auto end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

inline const char* kHostColumns =
    "host_id, name, addresses, os, role, parent, agent_version, registered_at, last_seen, via, "
    "approved";
inline Host host_from_row(const soci::row& r) {
  Host h;
  h.host_id = get_str(r, 0);
  h.name = get_str(r, 1);
  h.addresses = split_addresses(get_str(r, 2));
  h.os = get_str(r, 3);
  h.role = parse_host_role(get_str(r, 4));
  h.parent = get_str(r, 5);
  h.agent_version = get_str(r, 6);
  h.registered_at = get_i64(r, 7);
  h.last_seen = get_i64(r, 8);
  h.via = get_str(r, 9);
  h.approved = get_i64(r, 10) != 0;
  return h;
}

inline const char* kEntryColumns =
    "e.id, e.job_id, e.host_id, h.name, e.state, e.attempt, e.last_seq, e.exit_code, e.message, "
    "e.output_tail, e.updated_at, h.parent, p.name, e.wave, e.late_join, e.ready_at, e.seg_done, "
    "e.seg_total, e.bytes_received, e.bad_chunks";
inline const char* kEntryFrom =
    " FROM job_entries e LEFT JOIN hosts h ON h.host_id = e.host_id LEFT JOIN hosts p ON "
    "p.host_id = h.parent ";
inline JobEntry entry_from_row(const soci::row& r) {
  JobEntry e;
  e.id = get_i64(r, 0);
  e.job_id = get_i64(r, 1);
  e.host_id = get_str(r, 2);
  e.host_name = get_str(r, 3);
  e.state = parse_entry_state(get_str(r, 4));
  e.attempt = static_cast<std::int32_t>(get_i64(r, 5));
  e.last_seq = get_i64(r, 6);
  if (auto x = get_opt_i64(r, 7)) e.exit_code = static_cast<int>(*x);
  e.message = get_str(r, 8);
  e.output_tail = get_str(r, 9);
  e.updated_at = get_i64(r, 10);
  e.parent_id = get_str(r, 11);
  e.parent_name = get_str(r, 12);
  e.wave = static_cast<int>(get_i64(r, 13));
  e.late_join = get_i64(r, 14) != 0;
  e.ready_at = get_i64(r, 15);
  e.progress.segments_done = get_i64(r, 16);
  e.progress.segments_total = get_i64(r, 17);
  e.progress.bytes_received = get_i64(r, 18);
  e.progress.bad_chunks = get_i64(r, 19);
  return e;
}

// The job's type-specific parameters (jobs.params): the collect specification.
inline void read_params(const std::string& params, Job& j) {
  if (params.empty()) return;
  const auto o = json::parse_object(params);
  if (auto c = o.find("collect"); c != o.end() && c->value().is_object())
    j.collect = json::collect_from_json(c->value().as_object());
}

inline const char* kJobColumns =
    "id, type, package_name, package_version, destinations, key_mode, created_by, created_at, "
    "cancel_requested, upstream_id, start_at, expires_at, timing, window_spec, max_retries, "
    "retry_installs, retry_backoff, waves, success_threshold, error_threshold, rollout_state, "
    "current_wave, rollout_message, id_groups, split_size, split_interval, params";

inline std::string join_waves(const std::vector<int>& waves) {
  std::string out;
  for (int w : waves) out += (out.empty() ? "" : ",") + std::to_string(w);
  return out;
}
inline Job job_from_row(const soci::row& r) {
  Job j;
  j.id = get_i64(r, 0);
  j.type = parse_job_type(get_str(r, 1));
  j.package_name = get_str(r, 2);
  j.package_version = get_str(r, 3);
  j.destinations = split_addresses(get_str(r, 4));
  j.key_mode = get_str(r, 5);
  j.created_by = get_str(r, 6);
  j.created_at = get_i64(r, 7);
  j.cancel_requested = get_i64(r, 8) != 0;
  j.upstream_id = get_i64(r, 9);
  j.schedule.start_at = get_i64(r, 10);
  j.schedule.expires_at = get_i64(r, 11);
  j.schedule.timing = parse_install_timing(get_str(r, 12));
  if (const auto w = get_str(r, 13); !w.empty()) j.schedule.window = parse_daily_window(w);
  j.schedule.max_retries = static_cast<int>(get_i64(r, 14));
  j.schedule.retry_installs = get_i64(r, 15) != 0;
  j.schedule.retry_backoff_seconds = static_cast<int>(get_i64(r, 16));
  if (const auto w = get_str(r, 17); !w.empty()) j.rollout.waves = parse_waves(w);
  j.rollout.success_threshold = static_cast<int>(get_i64(r, 18));
  j.rollout.error_threshold = static_cast<int>(get_i64(r, 19));
  j.rollout_state = parse_rollout_state(get_str(r, 20));
  j.current_wave = static_cast<int>(get_i64(r, 21));
  j.rollout_message = get_str(r, 22);
  j.id_groups = split_addresses(get_str(r, 23));
  j.split.size = static_cast<std::uint64_t>(get_i64(r, 24));
  j.split.interval_seconds = static_cast<int>(get_i64(r, 25));
  read_params(get_str(r, 26), j);
  return j;
}

// The SQL list "('waiting', ...)" of the entry states `keep` selects, from the model's state machine.
template <class Keep>
inline std::string state_list(Keep keep) {
  std::string out;
  for (const auto state : kAllEntryStates)
    if (keep(state)) out += std::string(out.empty() ? "('" : ", '") + std::string(to_string(state)) + "'";
  return out + ")";
}
// States an operator's cancel moves to cancelled (an install under way runs to its end).
inline const std::string kCancellable =
    state_list([](EntryState s) { return can_transition(s, EntryState::cancelled); });
// States of entries not yet ended.
inline const std::string kOpen = state_list([](EntryState s) { return !is_final(s); });

inline bool host_differs(const Host& a, const Host& b) {
  return a.name != b.name || a.addresses != b.addresses || a.os != b.os || a.role != b.role ||
         a.parent != b.parent || a.agent_version != b.agent_version || a.via != b.via;
}

// Sessions handed out one per call. Not soci::connection_pool: a session taken from it is a
// proxy sharing the pooled session's backend, and reconnecting the proxy frees that backend
// under the pool. Here a caller holds the real session and may reconnect it.
class SessionPool {
 public:
  explicit SessionPool(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      sessions_.push_back(std::make_unique<soci::session>());
      free_.push_back(i);
    }
  }
  std::size_t size() const { return sessions_.size(); }
  soci::session& at(std::size_t i) { return *sessions_.at(i); }

  class Lease {
   public:
    Lease(SessionPool& pool, std::size_t i) : pool_(pool), i_(i) {}
    ~Lease() { pool_.give_back(i_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    soci::session& operator*() { return pool_.at(i_); }

   private:
    SessionPool& pool_;
    std::size_t i_;
  };
  Lease lease() {
    std::unique_lock lock(mutex_);
    available_.wait(lock, [&] { return !free_.empty(); });
    const auto i = free_.back();
    free_.pop_back();
    return Lease(*this, i);
  }

 private:
  void give_back(std::size_t i) {
    {
      std::lock_guard lock(mutex_);
      free_.push_back(i);
    }
    available_.notify_one();
  }
  std::vector<std::unique_ptr<soci::session>> sessions_;
  std::vector<std::size_t> free_;
  std::mutex mutex_;
  std::condition_variable available_;
};

class SociStore final : public Store {
 public:
  SociStore(const Dialect& dialect, const soci::backend_factory& backend, const std::string& connection,
            const StoreSettings& settings)
      : dialect_(dialect),
        pool_(static_cast<std::size_t>(std::max(1, settings.pool_size))),
        reconnect_seconds_(settings.reconnect_seconds) {
    for (std::size_t i = 0; i < static_cast<std::size_t>(std::max(1, settings.pool_size)); ++i) {
      auto& s = pool_.at(i);
      try {
        s.open(backend, connection);
        for (const auto& stmt : dialect_.connection_setup) s << stmt;
      } catch (const soci::soci_error& e) {
        // Drivers put the reason (refused, authentication failed, no such database) on the
        // lines after SOCI's own first line.
        std::string why;
        std::istringstream lines(e.what());
        for (std::string line; std::getline(lines, line);) {
          while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
          const auto b = line.find_first_not_of(" \t");
          if (b != std::string::npos) why += (why.empty() ? "" : "; ") + line.substr(b);
        }
        throw Error(ErrorKind::unavailable,
                    "cannot open the " + dialect_.name + " database: " + why +
                        (settings.backend == "sqlite"
                             ? ""
                             : " (check the database "
                               "connection: server address, port, database, user and password)"));
      }
    }
    migrate();
  }

  int version_at_open() override { return version_at_open_; }

  int schema_version() override;

  HostChange upsert_host(const Host& h, bool report_upward) override;

  int approve_hosts(const std::vector<std::string>& host_ids) override;

  void remove_host(const std::string& host_id) override;

  void touch_hosts(const std::vector<std::pair<std::string, std::int64_t>>& seen) override;

  std::optional<Host> find_host(const std::string& host_id) override;

  std::vector<Host> hosts_with_key(HostKeyMode mode, const std::string& key) override;

  std::vector<Host> list_hosts() override;

  bool insert_package(const Manifest& m) override;

  std::optional<Manifest> find_package(const std::string& name, const std::string& version) override;

  std::vector<PackageSummary> list_packages() override;

  void touch_package(const std::string& name, const std::string& version, std::int64_t when) override;

  bool delete_package(const std::string& name, const std::string& version) override;

  JobCreated create_job(const Job& job, const std::vector<std::string>& host_ids) override;

  // Inserts the job and its entries; `waves` (when not empty) gives each host's wave.
  Job insert_job(soci::session& sql, const Job& job, const std::vector<std::string>& host_ids,
                 const std::vector<int>& waves = {});

  std::optional<Job> find_job(std::int64_t job_id) override;

  std::vector<JobListing> list_jobs(int limit) override;

  std::vector<JobEntry> job_entries(std::int64_t job_id) override;

  std::vector<JobEntry> open_entries_for_host(const std::string& host_id) override;

  std::vector<std::string> children_with_work() override;

  ReportOutcome apply_report(const std::string& reporter, const EntryReport& rep, bool forwarded) override;

  JobCancel cancel_job_entries(std::int64_t job_id) override;

  std::vector<RoutedEntry> entries_to_push(const std::string& via, int limit) override;

  void mark_pushed(const std::string& via,
                   const std::vector<std::pair<std::int64_t, EntryState>>& acks) override;

  std::vector<std::string> import_entries(const std::vector<RoutedEntry>& entries) override;

  // A routed entry the relay already has may bring its job's new split (complete-now).
  bool update_split(soci::session& sql, ll local_entry, const SplitSpec& split);

  std::vector<PendingHost> hosts_to_report(int limit) override;

  void hosts_reported(const std::vector<std::pair<std::string, std::int64_t>>& done) override;

  std::vector<PendingReport> reports_to_forward(int limit) override;

  void reports_forwarded(const std::vector<std::pair<std::int64_t, std::int64_t>>& done) override;

  // --- host groups ---------------------------------------------------------------------

  void create_host_group(const HostGroup& g) override;

  int add_host_group_members(soci::session& sql, const std::string& name,
                             const std::vector<std::string>& ids);

  std::vector<HostGroup> select_host_groups(soci::session& sql, const std::string* only);

  std::optional<HostGroup> find_host_group(const std::string& name) override;

  std::vector<HostGroup> list_host_groups() override;

  int change_host_group(const std::string& name, const std::vector<std::string>& add,
                        const std::vector<std::string>& remove) override;

  bool delete_host_group(const std::string& name) override;

  // --- ID groups -----------------------------------------------------------------------

  void create_id_group(const IdGroup& g) override;

  static IdGroup id_group_from_row(const soci::row& r);
  static constexpr const char* kIdGroupColumns =
      "name, description, owner, password_hash, name_pattern, ip_range, created_at";

  std::optional<IdGroup> find_id_group(const std::string& name) override;

  std::vector<IdGroup> list_id_groups(std::map<std::string, std::int64_t>* counts) override;

  bool delete_id_group(const std::string& name) override;

  std::vector<Job> select_standing(soci::session& sql, const std::string& name, bool only_open);

  std::vector<Job> standing_jobs(const std::string& name) override;

  std::vector<std::string> id_groups_of(const std::string& host_id) override;

  std::string via_of(soci::session& sql, const std::string& host_id);

  MembershipChange join_id_group(const std::string& name, const std::vector<std::string>& host_ids,
                                 JoinMethod how) override;

  MembershipChange leave_id_group(const std::string& name, const std::vector<std::string>& host_ids) override;

  // --- retries and scheduling --------------------------------------------------------------

  std::vector<std::string> distinct_vias(soci::session& sql, const std::string& where, ll a, ll b);

  std::pair<std::int64_t, std::vector<std::string>> retry_failed(std::int64_t job_id) override;

  void require_job(soci::session& sql, ll id);

  TransferChange suspend_transfers(std::int64_t job_id, const std::vector<std::string>& host_ids,
                                   bool suspend) override;

  TransferChange clear_split(std::int64_t job_id) override;

  std::optional<TransferStatus> transfer_status(const std::string& host_id, std::int64_t entry_id) override;

  std::vector<std::string> expire_entries(std::int64_t after, std::int64_t upto) override;

  std::vector<std::string> vias_ready_between(std::int64_t after, std::int64_t upto) override;

  std::vector<Job> open_window_jobs() override;

  std::vector<std::string> vias_with_open_entries(std::int64_t job_id) override;

  std::vector<Job> running_rollouts() override;

  std::vector<WaveCounts> wave_counts(std::int64_t job_id) override;

  std::vector<std::string> release_wave(std::int64_t job_id, int wave) override;

  void stop_rollout(std::int64_t job_id, const std::string& reason) override;

 private:
  std::optional<Host> select_host(soci::session& sql, const std::string& host_id);

  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

  // Runs `fn` on a pooled session, translating database errors into distrib::Error.
  // --- inventory ----------------------------------------------------------------------------

  InventoryIngest ingest_inventory(const InventoryReport& rep, std::int64_t received_at) override;

  std::vector<InventoryIngest> ingest_inventory_batch(const std::vector<InventoryReport>& reports,
                                                      std::int64_t received_at) override;

  InventoryIngest ingest_one(soci::session& sql, const InventoryReport& rep, const std::string& dsys,
                             const std::string& dsoft, std::int64_t received_at);

  std::optional<HostInventory> find_inventory(const std::string& host_id) override;

  std::vector<InventoryChange> inventory_history(const std::string& host_id, int limit) override;

  std::vector<InventoryValue> inventory_values(const std::string& key, bool prefix) override;

  std::vector<std::string> inventoried_hosts() override;

  void put_inventory_field(const InventoryField& f) override;

  std::vector<InventoryField> list_inventory_fields() override;

  bool delete_inventory_field(const std::string& name) override;

  void record_collected_file(const CollectedFile& f) override;

  std::vector<CollectedFile> collected_files(std::int64_t job_id) override;

  // --- events
  // Inside the transaction of the change: the event commits with it or not at all.
  void emit(soci::session& sql, const std::string& type, Severity severity, ll job_id,
            const std::string& host_id, const std::string& subject, const std::string& message);
  // After an entry became final: when the job has no open entry left, it completed or failed.
  void emit_job_end(soci::session& sql, ll job_id);

  std::vector<Event> select_events(const char* where_order, ll bound, int limit);

  std::vector<Event> events_after(std::int64_t after_id, int limit) override;

  std::vector<Event> events_before(std::int64_t before_id, int limit) override;

  std::int64_t event_cursor(const std::string& sink) override;

  void set_event_cursor(const std::string& sink, std::int64_t last_id) override;

  void record_events(const std::vector<Event>& events) override;

  std::int64_t prune_events(std::int64_t before_ms, std::int64_t upto_id) override;

  std::int64_t last_event_id() override;

  void set_event_listener(std::function<void()> listener) override;

  int mark_silent_hosts(std::int64_t cutoff) override;

  void append_audit(const std::vector<AuditRecord>& records) override;

  std::vector<AuditRecord> audit_records(int limit, std::int64_t before_id) override;

  Counts counts() override;

  Stats stats() const override;

  // --- active/standby
  static LeaseRecord lease_from_row(const soci::row& r);
  std::optional<LeaseRecord> select_lease(soci::session& sql, const std::string& name, bool lock = false);

  LeaseRecord acquire_lease(const std::string& name, const std::string& node, std::int64_t now_ms,
                            std::int64_t ttl_ms) override;

  void record_takeover(soci::session& sql, const std::string& name, const std::string& node,
                       const std::string& prev, ll token, ll now, ll gap);

  bool renew_lease(const std::string& name, const std::string& node, std::int64_t token, std::int64_t now_ms,
                   std::int64_t ttl_ms) override;

  void release_lease(const std::string& name, const std::string& node, std::int64_t token,
                     std::int64_t now_ms) override;

  std::optional<LeaseRecord> read_lease(const std::string& name) override;

  std::vector<Takeover> takeovers(const std::string& name, int limit) override;

  bool raise_fence(const std::string& name, const std::string& node, std::int64_t token,
                   std::int64_t now_ms) override;

  void set_fencing(const std::string& name, std::int64_t token) override;

  // Inside a write transaction: the lease this store is fenced by is still ours.
  void check_fence(soci::session& sql);

  // --- moving a whole database
  struct Checksum {
    std::uint64_t lane[4] = {};
    void add(const std::string& canonical) {
      const auto hex = sha256_hex(canonical);
      for (std::size_t i = 0; i < 4; ++i) lane[i] += std::stoull(hex.substr(i * 16, 16), nullptr, 16);
    }
    std::string hex() const {
      return fmt::format("{:016x}{:016x}{:016x}{:016x}", lane[0], lane[1], lane[2], lane[3]);
    }
  };

  struct Column {
    std::string name;
    bool integer = false;
  };

  static std::vector<Column> columns_of(const TableDef& t);

  static std::string column_list(const std::vector<Column>& cols, const std::string& prefix = "");

  // Reads every row of `table` (these columns), calling `each` with its canonical JSON array.
  template <class Each>
  TableSummary scan_table(soci::session& sql, const std::string& table, const std::vector<Column>& cols,
                          Each&& each) {
    TableSummary out{table, 0, {}};
    Checksum sum;
    soci::rowset<soci::row> rs = sql.prepare << "SELECT " + column_list(cols) + " FROM " + table;
    for (const auto& r : rs) {
      boost::json::array a;
      for (std::size_t i = 0; i < cols.size(); ++i) {
        if (r.get_indicator(i) == soci::i_null)
          a.emplace_back(nullptr);
        else if (cols[i].integer)
          a.emplace_back(get_i64(r, i));
        else
          a.emplace_back(get_str(r, i));
      }
      const auto line = boost::json::serialize(a);
      sum.add(line);
      each(line);
      ++out.rows;
    }
    out.checksum = sum.hex();
    return out;
  }

  DataSummary export_data(std::ostream& out, const DataProgress& progress) override;

  DataSummary summarize() override;

  // One batch of rows into `table`: column-wise vectors bound in bulk.
  struct Batch {
    std::vector<std::vector<long long>> ints;
    std::vector<std::vector<std::string>> texts;
    std::vector<std::vector<soci::indicator>> inds;
    std::size_t size = 0;
    explicit Batch(std::size_t ncols) : ints(ncols), texts(ncols), inds(ncols) {}
    void clear() {
      for (auto& v : ints) v.clear();
      for (auto& v : texts) v.clear();
      for (auto& v : inds) v.clear();
      size = 0;
    }
  };

  void insert_batch(soci::session& sql, const std::string& table, const std::vector<Column>& cols, Batch& b);

  DataSummary import_data(std::istream& in, const DataProgress& progress) override;

  static std::string replace_table(std::string s, const std::string& table);

  // Runs `fn` on a pooled session. A lost connection (the server restarted, a network cut) is
  // re-established and `fn` run again, until settings.reconnect_seconds have passed: the
  // server rolled back the transaction it was in, so running it again applies it once.
  template <class Fn>
  std::invoke_result_t<Fn&, soci::session&> guarded(Fn&& fn, int reconnect_seconds = -1) {
    const auto budget = reconnect_seconds < 0 ? reconnect_seconds_ : reconnect_seconds;
    const auto started = std::chrono::steady_clock::now();
    struct Timed {
      SociStore& self;
      std::chrono::steady_clock::time_point t0;
      ~Timed() { self.count_call(t0); }
    } timed{*this, started};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(std::max(0, budget));
    auto pause = std::chrono::milliseconds(100);
    for (;;) {
      auto lease = pool_.lease();
      soci::session& sql = *lease;
      std::string lost;
      try {
        // No check before use (SOCI's PostgreSQL is_connected() is a round trip): a dead
        // connection fails its first statement and is reconnected below.
        if (sql.get_backend() == nullptr) reconnect(sql);
        using R = std::invoke_result_t<Fn&, soci::session&>;
        if constexpr (std::is_void_v<R>) {
          fn(sql);
          recovered();
          return;
        } else {
          R result = fn(sql);
          recovered();
          return result;
        }
      } catch (const Error&) {
        throw;
      } catch (const soci::soci_error& e) {
        const std::string what = first_line(e.what());
        if (!connection_lost(sql, e)) {
          const bool busy =
              what.find("locked") != std::string::npos || what.find("busy") != std::string::npos;
          throw Error(busy ? ErrorKind::unavailable : ErrorKind::internal,
                      dialect_.name + " database error: " + what);
        }
        lost = what;
      }
      if (!outage_.exchange(true)) {
        outage_since_ms_ = fs::now_unix_ms();
        ++outages_;
        spdlog::warn("lost the connection to the {} database ({}); reconnecting", dialect_.name, lost);
      }
      if (std::chrono::steady_clock::now() + pause > deadline)
        throw Error(ErrorKind::unavailable, "the " + dialect_.name + " database cannot be reached (" + lost +
                                                "); the request can be retried when it is back");
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(1000));
      try {
        reconnect(sql);
      } catch (const soci::soci_error&) {
        // still down: the next round tries again
      }
    }
  }

  void count_call(std::chrono::steady_clock::time_point t0) noexcept;

  void recovered();

  static bool connection_lost(soci::session& sql, const soci::soci_error& e);

  void reconnect(soci::session& sql);

  // One transaction; serialised in-process (see Dialect::serialize_writes). When fenced, the
  // transaction first checks that this node still holds the active lease.
  template <class Fn>
  std::invoke_result_t<Fn&, soci::session&> write(Fn&& fn) {
    std::optional<std::pair<ll, ll>> outage;
    auto result_of = [&]() -> std::invoke_result_t<Fn&, soci::session&> {
      return write_unfenced([&](soci::session& sql) -> std::invoke_result_t<Fn&, soci::session&> {
        check_fence(sql);
        // An outage that ended is told with the first write of the serving node after it
        // (nothing could be written during it).
        {
          std::lock_guard outage_lock(outage_mutex_);
          outage = ended_outage_;
        }
        if (outage)
          emit(sql, "database.outage", Severity::error, 0, "", dialect_.name,
               "the " + dialect_.name + " database could not be reached for " +
                   std::to_string((outage->second - outage->first + 500) / 1000) + " s (since " +
                   format_rfc3339_ms(outage->first) + ")");
        return fn(sql);
      });
    };
    auto forget = [&] {
      if (!outage) return;
      std::lock_guard outage_lock(outage_mutex_);
      if (ended_outage_ == outage) ended_outage_.reset();
    };
    if constexpr (std::is_void_v<std::invoke_result_t<Fn&, soci::session&>>) {
      result_of();
      forget();
    } else {
      auto result = result_of();
      forget();
      return result;
    }
  }

  template <class Fn>
  std::invoke_result_t<Fn&, soci::session&> write_unfenced(Fn&& fn) {
    std::unique_lock<std::mutex> lock(write_mutex_, std::defer_lock);
    if (dialect_.serialize_writes) lock.lock();
    return guarded([&](soci::session& sql) -> std::invoke_result_t<Fn&, soci::session&> {
      soci::transaction tr(sql);
      tl_events_written = 0;
      auto commit = [&] {
        try {
          tr.commit();
          if (tl_events_written > 0) {
            tl_events_written = 0;
            std::lock_guard listener_lock(listener_mutex_);
            if (listener_) listener_();
          }
        } catch (const soci::soci_error& e) {
          // Whether the server committed before the connection broke cannot be known: say so
          // rather than apply the change a second time.
          if (connection_lost(sql, e))
            throw Error(ErrorKind::unavailable,
                        "the connection to the " + dialect_.name +
                            " database was lost while committing; the change may or may not "
                            "have been applied (" +
                            first_line(e.what()) + ")");
          throw;
        }
      };
      if constexpr (std::is_void_v<decltype(fn(sql))>) {
        fn(sql);
        commit();
      } else {
        auto result = fn(sql);
        commit();
        return result;
      }
    });
  }

  int read_version(soci::session& sql);

  void migrate();

  const Dialect& dialect_;
  SessionPool pool_;
  std::mutex write_mutex_;
  int reconnect_seconds_ = 15;
  std::mutex fence_mutex_;
  std::string fence_name_;
  ll fence_token_ = 0;
  int version_at_open_ = 0;
  std::atomic<bool> outage_{false};
  std::atomic<ll> outage_since_ms_{0};
  std::mutex outage_mutex_;
  std::optional<std::pair<ll, ll>> ended_outage_;
  std::mutex listener_mutex_;
  std::function<void()> listener_;
  // Stats
  std::atomic<std::uint64_t> calls_{0}, total_micros_{0}, outages_{0};
  std::atomic<std::uint64_t> buckets_[6] = {};
};

}  // namespace distrib::store
