#pragma once
// SociStore: the one Store implementation, on SOCI, with one Dialect per database. Each facility
// interface of Store is implemented by its own class over the shared SociCore (core.h: sessions,
// dialect, write path, fencing, events), defined in the source file of the same name under
// store/soci/: SociHosts (hosts.cpp), SociPackages (packages.cpp), SociGroups (groups.cpp),
// SociJobs (jobs.cpp), SociRouting (routing.cpp), SociSchedule (schedule.cpp), SociInventory
// (inventory.cpp), SociEvents (events.cpp), SociLease (lease.cpp), SociEnrolment (enrolment.cpp)
// and SociData (data.cpp).
// SociStore composes them: the facility interfaces are virtual bases of Store, so each facility
// class's overrides are the final ones.
#include <distrib/error.h>
#include <distrib/model/event.h>
#include <distrib/store/store.h>

#include "model/json_codec.h"
#include "store/connection.h"
#include "store/dialect.h"
#include "store/soci/core.h"
#include "store/soci/item_catalogue.h"
#include "store/soci/rows.h"
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
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_set>

namespace distrib::store {

class SociHosts : public virtual HostStore {
 public:
  explicit SociHosts(SociCore& core) : core_(core) {}

  HostChange upsert_host(const Host& h, bool report_upward) override;
  std::optional<Host> find_host(const std::string& host_id) override;
  std::vector<Host> hosts_with_key(HostKeyMode mode, const std::string& key) override;
  std::vector<Host> list_hosts() override;
  int approve_hosts(const std::vector<std::string>& host_ids) override;
  void remove_host(const std::string& host_id) override;
  void touch_hosts(const std::vector<std::pair<std::string, std::int64_t>>& seen) override;
  int mark_silent_hosts(std::int64_t cutoff) override;

 private:
  std::optional<Host> select_host(soci::session& sql, const std::string& host_id);

  SociCore& core_;
};

class SociPackages : public virtual PackageStore {
 public:
  explicit SociPackages(SociCore& core) : core_(core) {}

  bool insert_package(const Manifest& m) override;
  std::optional<Manifest> find_package(const std::string& name, const std::string& version) override;
  std::vector<PackageSummary> list_packages() override;
  void touch_package(const std::string& name, const std::string& version, std::int64_t when) override;
  bool delete_package(const std::string& name, const std::string& version) override;

 private:
  SociCore& core_;
};

class SociGroups : public virtual GroupStore {
 public:
  explicit SociGroups(SociCore& core) : core_(core) {}

  // --- host groups
  void create_host_group(const HostGroup& g) override;
  std::optional<HostGroup> find_host_group(const std::string& name) override;
  std::vector<HostGroup> list_host_groups() override;
  int change_host_group(const std::string& name, const std::vector<std::string>& add,
                        const std::vector<std::string>& remove) override;
  bool delete_host_group(const std::string& name) override;

  // --- ID groups
  void create_id_group(const IdGroup& g) override;
  std::optional<IdGroup> find_id_group(const std::string& name) override;
  std::vector<IdGroup> list_id_groups(std::map<std::string, std::int64_t>* counts) override;
  bool delete_id_group(const std::string& name) override;
  MembershipChange join_id_group(const std::string& name, const std::vector<std::string>& host_ids,
                                 JoinMethod how) override;
  MembershipChange leave_id_group(const std::string& name, const std::vector<std::string>& host_ids) override;
  std::vector<std::string> id_groups_of(const std::string& host_id) override;
  std::vector<Job> standing_jobs(const std::string& name) override;

 private:
  int add_host_group_members(soci::session& sql, const std::string& name,
                             const std::vector<std::string>& ids);
  std::vector<HostGroup> select_host_groups(soci::session& sql, const std::string* only);
  static IdGroup id_group_from_row(const soci::row& r);
  static constexpr const char* kIdGroupColumns =
      "name, description, owner, password_hash, name_pattern, ip_range, created_at";
  std::vector<Job> select_standing(soci::session& sql, const std::string& name, bool only_open);
  std::string via_of(soci::session& sql, const std::string& host_id);

  SociCore& core_;
};

class SociJobs : public virtual JobStore {
 public:
  explicit SociJobs(SociCore& core) : core_(core) {}

  JobCreated create_job(const Job& job, const std::vector<std::string>& host_ids) override;
  std::optional<Job> find_job(std::int64_t job_id) override;
  std::vector<JobListing> list_jobs(int limit) override;
  std::vector<JobEntry> job_entries(std::int64_t job_id) override;
  std::vector<JobEntry> open_entries_for_host(const std::string& host_id) override;
  std::vector<JobEntry> open_entries_for_hosts(const std::vector<std::string>& host_ids) override;
  std::vector<std::string> children_with_work() override;
  ReportOutcome apply_report(const std::string& reporter, const EntryReport& rep, bool forwarded) override;
  JobCancel cancel_job_entries(std::int64_t job_id) override;
  std::pair<std::int64_t, std::vector<std::string>> retry_failed(std::int64_t job_id) override;

 private:
  SociCore& core_;
};

class SociRouting : public virtual RoutingStore {
 public:
  explicit SociRouting(SociCore& core) : core_(core) {}

  std::vector<RoutedEntry> entries_to_push(const std::string& via, int limit) override;
  std::vector<std::string> vias_with_entries_to_push(const std::vector<std::string>& vias) override;
  void mark_pushed(const std::string& via,
                   const std::vector<std::pair<std::int64_t, EntryState>>& acks) override;
  std::vector<std::string> import_entries(const std::vector<RoutedEntry>& entries) override;
  std::vector<PendingHost> hosts_to_report(int limit) override;
  void hosts_reported(const std::vector<std::pair<std::string, std::int64_t>>& done) override;
  std::vector<PendingReport> reports_to_forward(int limit) override;
  void reports_forwarded(const std::vector<std::pair<std::int64_t, std::int64_t>>& done) override;

 private:
  // A routed entry the relay already has may bring its job's new split (complete-now).
  bool update_split(soci::session& sql, ll local_entry, const SplitSpec& split);

  SociCore& core_;
};

class SociSchedule : public virtual ScheduleStore {
 public:
  explicit SociSchedule(SociCore& core) : core_(core) {}

  // --- transfers
  TransferChange suspend_transfers(std::int64_t job_id, const std::vector<std::string>& host_ids,
                                   bool suspend) override;
  TransferChange clear_split(std::int64_t job_id) override;
  std::optional<TransferStatus> transfer_status(const std::string& host_id, std::int64_t entry_id) override;

  // --- scheduling
  std::vector<std::string> expire_entries(std::int64_t after, std::int64_t upto) override;
  std::vector<std::string> vias_ready_between(std::int64_t after, std::int64_t upto) override;
  std::vector<Job> open_window_jobs() override;
  std::vector<std::string> vias_with_open_entries(std::int64_t job_id) override;
  std::vector<Job> running_rollouts() override;
  std::vector<WaveCounts> wave_counts(std::int64_t job_id) override;
  std::vector<std::string> release_wave(std::int64_t job_id, int wave) override;
  void stop_rollout(std::int64_t job_id, const std::string& reason) override;

 private:
  // Throws Error(not_found) when there is no job `id`.
  void require_job(soci::session& sql, ll id);

  SociCore& core_;
};

class SociInventory : public virtual InventoryStore {
 public:
  explicit SociInventory(SociCore& core) : core_(core), catalogue_(core.dialect().name == "postgresql") {}

  InventoryIngest ingest_inventory(const InventoryReport& rep, std::int64_t received_at) override;
  std::vector<InventoryIngest> ingest_inventory_batch(const std::vector<InventoryReport>& reports,
                                                      std::int64_t received_at) override;
  std::optional<HostInventory> find_inventory(const std::string& host_id) override;
  std::vector<InventoryChange> inventory_history(const std::string& host_id, int limit) override;
  std::vector<InventoryValue> inventory_values(const std::string& key, bool prefix) override;
  std::vector<InventoryValue> inventory_values_of(const std::string& key, bool prefix,
                                                  const std::vector<std::string>& hosts) override;
  std::vector<std::string> inventoried_hosts() override;
  ItemMatch match_inventory(
      const std::string& key, bool prefix, const std::function<bool(std::string_view key)>& key_ok,
      const std::function<bool(std::string_view key, std::string_view value)>& value_ok) override;
  void put_inventory_field(const InventoryField& f) override;
  std::vector<InventoryField> list_inventory_fields() override;
  bool delete_inventory_field(const std::string& name) override;

  // --- remote collection
  void record_collected_file(const CollectedFile& f) override;
  std::vector<CollectedFile> collected_files(std::int64_t job_id) override;

 private:
  InventoryIngest ingest_one(soci::session& sql, ItemCatalogue::Staged& st, const InventoryReport& rep,
                             const std::string& dsys, const std::string& dsoft, std::int64_t received_at);
  std::vector<InventoryValue> values_under(const std::string& key, bool prefix,
                                           const std::vector<std::string>* hosts);
  // Calls fn(host_id, volatile_text, set texts...) for every inventoried host, reading the sets
  // a key under `key` can be in.
  template <class Fn>
  void scan_item_sets(soci::session& sql, const std::string& key, bool with_volatile, Fn&& fn);

  SociCore& core_;
  ItemCatalogue catalogue_;
};

class SociEvents : public virtual EventStore {
 public:
  explicit SociEvents(SociCore& core) : core_(core) {}

  std::vector<Event> events_after(std::int64_t after_id, int limit) override;
  std::vector<Event> events_before(std::int64_t before_id, int limit) override;
  std::int64_t event_cursor(const std::string& sink) override;
  void set_event_cursor(const std::string& sink, std::int64_t last_id) override;
  std::int64_t prune_events(std::int64_t before_ms, std::int64_t upto_id) override;
  void record_events(const std::vector<Event>& events) override;
  std::int64_t last_event_id() override;
  void set_event_listener(std::function<void()> listener) override;

  // --- audit trail
  void append_audit(const std::vector<AuditRecord>& records) override;
  std::vector<AuditRecord> audit_records(int limit, std::int64_t before_id) override;

 private:
  std::vector<Event> select_events(const char* where_order, ll bound, int limit);

  SociCore& core_;
};

class SociLease : public virtual LeaseStore {
 public:
  explicit SociLease(SociCore& core) : core_(core) {}

  LeaseRecord acquire_lease(const std::string& name, const std::string& node, std::int64_t now_ms,
                            std::int64_t ttl_ms) override;
  bool renew_lease(const std::string& name, const std::string& node, std::int64_t token, std::int64_t now_ms,
                   std::int64_t ttl_ms) override;
  void release_lease(const std::string& name, const std::string& node, std::int64_t token,
                     std::int64_t now_ms) override;
  std::optional<LeaseRecord> read_lease(const std::string& name) override;
  std::vector<Takeover> takeovers(const std::string& name, int limit) override;
  bool raise_fence(const std::string& name, const std::string& node, std::int64_t token,
                   std::int64_t now_ms) override;
  void set_fencing(const std::string& name, std::int64_t token) override;

 private:
  void record_takeover(soci::session& sql, const std::string& name, const std::string& node,
                       const std::string& prev, ll token, ll now, ll gap);

  SociCore& core_;
};

class SociEnrolment : public virtual EnrolmentStore {
 public:
  explicit SociEnrolment(SociCore& core) : core_(core) {}

  Enrolment request_enrolment(const Enrolment& e) override;
  std::optional<Enrolment> find_enrolment(const std::string& host_id) override;
  std::vector<Enrolment> list_enrolments(std::optional<EnrolmentState> state) override;
  bool decide_enrolment(const Enrolment& decision) override;
  bool renew_certificate(const std::string& host_id, const std::string& fingerprint,
                         const std::string& request_pem, const std::string& certificate_pem,
                         std::uint64_t serial, std::int64_t not_after) override;
  bool revoke_enrolment(const std::string& host_id, std::int64_t at, const std::string& by) override;
  std::vector<std::uint64_t> revoked_serials() override;

  // --- enrolment tokens
  void create_enrol_token(const EnrolToken& t) override;
  std::optional<EnrolToken> use_enrol_token(const std::string& secret_hash, std::int64_t now) override;
  std::vector<EnrolToken> list_enrol_tokens() override;
  bool revoke_enrol_token(const std::string& id) override;

 private:
  // The enrolments whose `column` equals `value` (all when nullopt), by requested_at then host
  // id; `lock`: locked until the transaction ends.
  std::vector<Enrolment> select_enrolments(soci::session& sql, const char* column,
                                           const std::optional<std::string>& value, bool lock = false);
  std::optional<Enrolment> select_enrolment(soci::session& sql, const std::string& host_id, bool lock);
  // The token whose secret hashes to `secret_hash` (every token when nullptr), by created_at then id.
  std::vector<EnrolToken> select_tokens(soci::session& sql, const std::string* secret_hash,
                                        bool lock = false);

  SociCore& core_;
};

class SociData : public virtual DataStore {
 public:
  explicit SociData(SociCore& core) : core_(core) {}

  int schema_version() override;
  int version_at_open() override { return core_.version_at_open(); }
  Stats stats() const override;
  Counts counts() override;
  DataSummary export_data(std::ostream& out, const DataProgress& progress) override;
  DataSummary import_data(std::istream& in, const DataProgress& progress) override;
  DataSummary summarize() override;
  std::vector<QueryPlan> query_plans() override;

 private:
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

  static std::string replace_table(std::string s, const std::string& table);

  SociCore& core_;
};

// The facilities over one SociCore, which this object owns.
class SociStore final : public Store,
                        public SociHosts,
                        public SociPackages,
                        public SociGroups,
                        public SociJobs,
                        public SociRouting,
                        public SociSchedule,
                        public SociInventory,
                        public SociEvents,
                        public SociLease,
                        public SociEnrolment,
                        public SociData {
 public:
  SociStore(const Dialect& dialect, const soci::backend_factory& backend, const std::string& connection,
            const StoreSettings& settings)
      : SociStore(std::make_unique<SociCore>(dialect, backend, connection, settings)) {}

 private:
  explicit SociStore(std::unique_ptr<SociCore> core)
      : SociHosts(*core),
        SociPackages(*core),
        SociGroups(*core),
        SociJobs(*core),
        SociRouting(*core),
        SociSchedule(*core),
        SociInventory(*core),
        SociEvents(*core),
        SociLease(*core),
        SociEnrolment(*core),
        SociData(*core),
        core_(std::move(core)) {}

  // Destroyed before the facilities, which do not use it in their destructors.
  std::unique_ptr<SociCore> core_;
};

}  // namespace distrib::store
