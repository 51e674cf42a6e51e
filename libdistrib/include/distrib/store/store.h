#pragma once
// Persistence interfaces of the manager. Every durable fact lives here; the manager's in-memory
// structures are caches rebuilt from the store at start.
//
// Contract for every implementation:
//  - Calls block (disk, network to a database server) and must not run on network threads; the
//    manager runs them on its store thread pool.
//  - Calls are thread-safe: an implementation owns a connection pool.
//  - Failures throw distrib::Error: ErrorKind::unavailable when the database cannot be reached or
//    is busy beyond its timeout (retrying later may work), conflict / not_found for domain
//    refusals, internal otherwise. A call that throws changed nothing (each is one transaction).
#include <distrib/model/cluster.h>
#include <distrib/model/event.h>
#include <distrib/model/group.h>
#include <distrib/model/host.h>
#include <distrib/model/inventory.h>
#include <distrib/model/job.h>
#include <distrib/model/package.h>
#include <distrib/model/relay.h>
#include <distrib/model/report.h>
#include <distrib/registry.h>

#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace distrib {

/// Which database and where. Defaults are the embedded database.
struct StoreSettings {
  std::string backend = "sqlite";  ///< registry name: sqlite, postgresql, odbc
  std::string path;                ///< sqlite: database file
  /// postgresql: libpq key=value string ("host=127.0.0.1 port=5432 dbname=distrib user=u");
  /// odbc: ODBC connection string ("DRIVER={PostgreSQL Unicode};SERVER=...;DATABASE=...").
  std::string connection;
  /// odbc: the SQL spoken behind the driver: sqlserver, oracle, postgresql or sqlite.
  std::string dialect;
  int pool_size = 4;
  int busy_timeout_seconds = 10;  ///< sqlite: wait for a lock; servers: connect timeout
  /// A lost connection is re-established and the call retried for this long before the call
  /// fails with ErrorKind::unavailable.
  int reconnect_seconds = 15;
};

/// What a whole-database move carried, per table: counted and checksummed the same way at
/// both ends (the checksum does not depend on row order, which differs between databases).
struct TableSummary {
  std::string name;
  std::int64_t rows = 0;
  std::string checksum;  ///< hex; sum of the SHA-256 of each row's canonical form
};
struct DataSummary {
  int schema_version = 0;
  std::vector<TableSummary> tables;
};
/// Called as a table is moved: the table and the rows done so far.
using DataProgress = std::function<void(const std::string& table, std::int64_t rows)>;

class Store {
 public:
  virtual ~Store() = default;

  // --- schema
  /// Schema version the database is at after migrations.
  virtual int schema_version() = 0;
  /// Schema version the database was at when opened, before migrations (0: a new database).
  virtual int version_at_open() { return schema_version(); }

  // --- hosts
  /// Inserts the host or updates it by host_id. registered_at and approved are kept from the
  /// first insert. A change other than last_seen marks the host for reporting upward, and so
  /// does `report_upward` (a host registering again may have been elsewhere meanwhile).
  virtual HostChange upsert_host(const Host& host, bool report_upward = false) = 0;
  virtual std::optional<Host> find_host(const std::string& host_id) = 0;
  /// Hosts that may answer to `key` (a host name, compared without case, or an address):
  /// candidates for a key conflict; the caller checks them exactly (host_matches).
  virtual std::vector<Host> hosts_with_key(HostKeyMode mode, const std::string& key) = 0;
  virtual std::vector<Host> list_hosts() = 0;
  /// Approves hosts waiting for approval; returns how many changed.
  virtual int approve_hosts(const std::vector<std::string>& host_ids) = 0;
  /// Forgets a host (it moved to another relay); its entries stay for the record.
  virtual void remove_host(const std::string& host_id) = 0;
  /// Raises last_seen of the hosts given (host id, unix seconds); unknown hosts are ignored.
  virtual void touch_hosts(const std::vector<std::pair<std::string, std::int64_t>>& seen) = 0;

  /// Hosts whose last contact is older than `cutoff` (unix seconds) are marked silent
  /// (host.silent) and silent hosts heard since are marked back (host.returned). Returns the
  /// number of hosts that changed either way.
  virtual int mark_silent_hosts(std::int64_t cutoff) = 0;

  // --- packages
  /// Registers a package. Returns false when the same name and version with the same payload
  /// digest already exists (idempotent); throws Error(conflict) when it exists with other content.
  virtual bool insert_package(const Manifest& manifest) = 0;
  virtual std::optional<Manifest> find_package(const std::string& name, const std::string& version) = 0;
  virtual std::vector<PackageSummary> list_packages() = 0;
  /// Records that the package was used now (relay cache LRU).
  virtual void touch_package(const std::string& name, const std::string& version, std::int64_t when) = 0;
  /// Removes a package record. Returns false when it does not exist; throws Error(conflict) when
  /// an entry that is not final still needs it.
  virtual bool delete_package(const std::string& name, const std::string& version) = 0;

  // --- host groups (administrator-defined sets of hosts)
  /// Throws Error(conflict) when the name is taken.
  virtual void create_host_group(const HostGroup& group) = 0;
  virtual std::optional<HostGroup> find_host_group(const std::string& name) = 0;
  virtual std::vector<HostGroup> list_host_groups() = 0;
  /// Adds and removes members; throws Error(not_found) for an unknown group. Returns the number
  /// of memberships that changed.
  virtual int change_host_group(const std::string& name, const std::vector<std::string>& add,
                                const std::vector<std::string>& remove) = 0;
  virtual bool delete_host_group(const std::string& name) = 0;

  // --- ID groups (hosts join; jobs addressed to them are standing)
  /// Throws Error(conflict) when the name is taken. `group.members` is ignored.
  virtual void create_id_group(const IdGroup& group) = 0;
  /// With members (and their names).
  virtual std::optional<IdGroup> find_id_group(const std::string& name) = 0;
  /// Without members; `member_counts` (if given) receives the count per group.
  virtual std::vector<IdGroup> list_id_groups(
      std::map<std::string, std::int64_t>* member_counts = nullptr) = 0;
  /// Deletes the group and its memberships; its jobs stop standing (their entries stay).
  virtual bool delete_id_group(const std::string& name) = 0;
  /// Makes the hosts members. Each new member receives every standing job of the group it has
  /// no entry in yet (not cancelled, not expired, rollout not stopped), oldest first, marked
  /// late-join. Throws Error(not_found) for an unknown group.
  virtual MembershipChange join_id_group(const std::string& name, const std::vector<std::string>& host_ids,
                                         JoinMethod how) = 0;
  /// Ends memberships; the hosts' entries of the group's jobs that have not started are
  /// cancelled ("left ID group").
  virtual MembershipChange leave_id_group(const std::string& name,
                                          const std::vector<std::string>& host_ids) = 0;
  /// ID groups the host is a member of.
  virtual std::vector<std::string> id_groups_of(const std::string& host_id) = 0;
  /// Standing jobs of the group, oldest first.
  virtual std::vector<Job> standing_jobs(const std::string& name) = 0;

  // --- jobs
  /// Creates the job and one waiting entry per host, atomically: the hosts given plus the
  /// current approved members of `job.id_groups` of the role the job type needs (agents for
  /// installs, relays otherwise), each host once. With waves, hosts are drawn at random into
  /// them and only the first is ready. Entries wait until `job.schedule.start_at`.
  virtual JobCreated create_job(const Job& job, const std::vector<std::string>& host_ids) = 0;
  virtual std::optional<Job> find_job(std::int64_t job_id) = 0;
  virtual std::vector<JobListing> list_jobs(int limit) = 0;
  virtual std::vector<JobEntry> job_entries(std::int64_t job_id) = 0;
  /// Entries of the host that are not in a final state, oldest first.
  virtual std::vector<JobEntry> open_entries_for_host(const std::string& host_id) = 0;
  /// Direct children (hosts' `via`) with work: their own open entries, or entries of their
  /// subtree not yet pushed to them. Rebuilds the manager's work cache.
  virtual std::vector<std::string> children_with_work() = 0;
  /// Applies a report to the entry it names. A direct report must come from the entry's host
  /// (`reporter`) and make one allowed transition; a forwarded one comes from the relay the
  /// host is reached through and may skip states in between (can_reach).
  virtual ReportOutcome apply_report(const std::string& reporter, const EntryReport& report,
                                     bool forwarded = false) = 0;

  /// What a cancel changed: the direct children whose entries changed, and how many entries.
  struct JobCancel {
    std::vector<std::string> vias;
    std::int64_t cancelled = 0;
  };
  /// Marks the job cancel-requested and moves its cancellable entries to cancelled (a rollout
  /// stops), in one transaction, counting what it cancelled. Throws not_found for no such job.
  virtual JobCancel cancel_job_entries(std::int64_t job_id) = 0;
  /// cancel_job_entries(job_id).vias: the hosts whose entries changed.
  std::vector<std::string> cancel_job(std::int64_t job_id) { return cancel_job_entries(job_id).vias; }
  /// Failed entries of the job wait again for a new attempt, ready now. Returns how many and
  /// the direct children to wake.
  virtual std::pair<std::int64_t, std::vector<std::string>> retry_failed(std::int64_t job_id) = 0;

  // --- routing down the tree
  /// Entries of hosts reached through relay `via` (not the relay's own) whose current state
  /// the relay has not acknowledged, oldest first.
  virtual std::vector<RoutedEntry> entries_to_push(const std::string& via, int limit) = 0;
  /// The relay stored these entries in these states; entries changed since are pushed again.
  virtual void mark_pushed(const std::string& via,
                           const std::vector<std::pair<std::int64_t, EntryState>>& acks) = 0;
  /// At a relay: records entries received from the parent as local jobs and entries (new ones
  /// waiting; a cancel cancels the local entry if it can be). Returns the hosts whose work changed.
  virtual std::vector<std::string> import_entries(const std::vector<RoutedEntry>& entries) = 0;

  // --- reporting up the tree (at a relay)
  virtual std::vector<PendingHost> hosts_to_report(int limit) = 0;
  virtual void hosts_reported(const std::vector<std::pair<std::string, std::int64_t>>& done) = 0;
  /// States of entries received from the parent that changed since last forwarded.
  virtual std::vector<PendingReport> reports_to_forward(int limit) = 0;
  /// (local entry id, version) pairs the parent acknowledged.
  virtual void reports_forwarded(const std::vector<std::pair<std::int64_t, std::int64_t>>& done) = 0;

  // --- transfers
  /// Suspends (waiting or transferring → suspended) or resumes (suspended → waiting) the entries
  /// of one job (`job_id` ≠ 0) or of the hosts in `host_ids` (a relay and its subtree). Entries
  /// travel down again to relays. Throws not_found for an unknown job.
  virtual TransferChange suspend_transfers(std::int64_t job_id, const std::vector<std::string>& host_ids,
                                           bool suspend) = 0;
  /// The job's payload travels unsplit from now on (`distribctl job complete-now`); its open
  /// entries travel down again so relays learn it. Throws not_found for an unknown job.
  virtual TransferChange clear_split(std::int64_t job_id) = 0;
  /// The state of a host's entry and its job's split, for an agent between two segments.
  virtual std::optional<TransferStatus> transfer_status(const std::string& host_id,
                                                        std::int64_t entry_id) = 0;

  // --- scheduling (the manager's scheduler calls these every second or so)
  /// Entries of jobs whose expiry fell in (after, upto] that can still expire become expired
  /// (after = 0 at start covers every past expiry). Returns the direct children to wake.
  virtual std::vector<std::string> expire_entries(std::int64_t after, std::int64_t upto) = 0;
  /// Direct children with open entries that became ready in (after, upto].
  virtual std::vector<std::string> vias_ready_between(std::int64_t after, std::int64_t upto) = 0;
  /// Jobs with install timing `window` that still have open entries.
  virtual std::vector<Job> open_window_jobs() = 0;
  /// Direct children with open entries of the job.
  virtual std::vector<std::string> vias_with_open_entries(std::int64_t job_id) = 0;
  /// Jobs whose rollout is running.
  virtual std::vector<Job> running_rollouts() = 0;
  virtual std::vector<WaveCounts> wave_counts(std::int64_t job_id) = 0;
  /// Releases wave `wave` (ready now); the rollout completes when it is the last. Returns the
  /// direct children to wake.
  virtual std::vector<std::string> release_wave(std::int64_t job_id, int wave) = 0;
  /// Stops the rollout: entries of waves not released are cancelled with `reason`.
  virtual void stop_rollout(std::int64_t job_id, const std::string& reason) = 0;

  // --- inventory
  /// Replaces the host's items under the report's scope with the report's, records what changed
  /// (volatile values are stored, never recorded) and when. Throws Error(not_found) when the host
  /// is not registered here.
  virtual InventoryIngest ingest_inventory(const InventoryReport& report, std::int64_t received_at) = 0;
  /// Several reports in one transaction (group commit: one commit for many agents). A report
  /// of a host that is not registered gets its reason in `error` and changes nothing; the
  /// others are stored. Results are in the order of `reports`.
  virtual std::vector<InventoryIngest> ingest_inventory_batch(const std::vector<InventoryReport>& reports,
                                                              std::int64_t received_at) = 0;
  virtual std::optional<HostInventory> find_inventory(const std::string& host_id) = 0;
  /// Newest first.
  virtual std::vector<InventoryChange> inventory_history(const std::string& host_id, int limit) = 0;
  /// Stored values of `key` (exact) or of every key starting with `key` (prefix).
  virtual std::vector<InventoryValue> inventory_values(const std::string& key, bool prefix) = 0;
  /// Hosts that have reported an inventory.
  virtual std::vector<std::string> inventoried_hosts() = 0;
  /// Creates or replaces a field definition.
  virtual void put_inventory_field(const InventoryField& field) = 0;
  virtual std::vector<InventoryField> list_inventory_fields() = 0;
  virtual bool delete_inventory_field(const std::string& name) = 0;

  // --- remote collection
  /// Records (or replaces) a file a host sent for a collect-files job.
  virtual void record_collected_file(const CollectedFile& file) = 0;
  virtual std::vector<CollectedFile> collected_files(std::int64_t job_id) = 0;

  // --- active/standby (db-lease coordinator; fencing)
  /// Takes lease `name` for `node` when nobody holds it, it expired at `now_ms`, or `node` holds
  /// it already (then it is extended). A change of holder increments the token and is recorded as
  /// a takeover. Returns the lease as it stands after the call.
  virtual LeaseRecord acquire_lease(const std::string& name, const std::string& node, std::int64_t now_ms,
                                    std::int64_t ttl_ms) = 0;
  /// Extends the lease while `node` holds it with `token` and it has not expired; false otherwise.
  virtual bool renew_lease(const std::string& name, const std::string& node, std::int64_t token,
                           std::int64_t now_ms, std::int64_t ttl_ms) = 0;
  /// Gives the lease up at once (an orderly stop) when `node` holds it with `token`.
  virtual void release_lease(const std::string& name, const std::string& node, std::int64_t token,
                             std::int64_t now_ms) = 0;
  virtual std::optional<LeaseRecord> read_lease(const std::string& name) = 0;
  /// Newest first.
  virtual std::vector<Takeover> takeovers(const std::string& name, int limit) = 0;
  /// Records that `node` became active with `token` (a coordinator outside the database, such as
  /// etcd, issued it): the lease row takes the token when it is greater than the one stored, with
  /// no expiry of its own. Returns false when a greater token is stored already (a newer holder).
  virtual bool raise_fence(const std::string& name, const std::string& node, std::int64_t token,
                           std::int64_t now_ms) = 0;
  /// From now on every write transaction first checks that lease `name` is still held with
  /// `token` (and unexpired); otherwise it fails with Error(ErrorKind::conflict, "fenced: ...")
  /// and changes nothing. token 0 turns the check off.
  virtual void set_fencing(const std::string& name, std::int64_t token) = 0;

  // --- events (the durable outbox)
  /// Events with id > `after_id`, oldest first.
  virtual std::vector<Event> events_after(std::int64_t after_id, int limit) = 0;
  /// Events with id < `before_id` (0: all), newest first.
  virtual std::vector<Event> events_before(std::int64_t before_id, int limit) = 0;
  /// The id of the last event `sink` has taken; -1 when the sink has no position yet (never ran).
  virtual std::int64_t event_cursor(const std::string& sink) = 0;
  virtual void set_event_cursor(const std::string& sink, std::int64_t last_id) = 0;
  /// Deletes events older than `before_ms` that every sink has taken (id <= `upto_id`); returns
  /// how many. Sinks' positions are the caller's to know (they are configuration).
  virtual std::int64_t prune_events(std::int64_t before_ms, std::int64_t upto_id) = 0;
  /// Records events that no other change carries (most are written by the change itself).
  virtual void record_events(const std::vector<Event>& events) = 0;
  /// The id of the newest event (0: none).
  virtual std::int64_t last_event_id() = 0;
  /// Called (on the writing thread, after the commit) whenever a transaction wrote events; it
  /// must be quick and thread-safe (wake a thread). Set it before the store is used concurrently.
  virtual void set_event_listener(std::function<void()> listener) = 0;

  // --- audit trail of administrative actions
  virtual void append_audit(const std::vector<AuditRecord>& records) = 0;
  /// Newest first; `before_id` > 0 pages backwards.
  virtual std::vector<AuditRecord> audit_records(int limit, std::int64_t before_id = 0) = 0;

  // --- what the store costs (Prometheus /metrics)
  struct Stats {
    std::uint64_t calls = 0;         ///< store calls completed (reads and writes)
    std::uint64_t total_micros = 0;  ///< their summed duration
    std::uint64_t buckets[6] = {};   ///< calls taking <= 1, 5, 25, 100, 500 ms, and longer
    std::uint64_t outages = 0;       ///< connections lost and re-established
  };
  virtual Stats stats() const = 0;
  /// Jobs, open jobs and entries by state, for /metrics.
  struct Counts {
    std::int64_t hosts = 0, jobs = 0, open_jobs = 0;
    std::map<std::string, std::int64_t> entries_by_state;
  };
  virtual Counts counts() = 0;

  // --- moving a whole database between backends (distribd --export-db / --import-db)
  /// Writes every table as JSON lines (a header, then per table its columns, its rows and a
  /// trailer with the count and checksum). Reads in one transaction: a consistent snapshot.
  virtual DataSummary export_data(std::ostream& out, const DataProgress& progress) = 0;
  /// Loads an export into this database, which must hold no data, in one transaction: on any
  /// error (a corrupted line, a checksum or count that does not match, an export of a newer
  /// schema, a database that is not empty) nothing is kept. Returns what the file declared,
  /// which `summarize()` of this database then matches.
  virtual DataSummary import_data(std::istream& in, const DataProgress& progress) = 0;
  /// Counts and checksums of every table as stored now.
  virtual DataSummary summarize() = 0;
};

/// Maps a backend name to a factory (the common `Registry`: a name registered twice and an unknown
/// name are refused, the latter listing the known ones). Implementations are registered where the
/// program is composed; `register_builtin_stores` adds the ones compiled into libdistrib.
class StoreRegistry : public Registry<Store, StoreSettings> {
 public:
  StoreRegistry() : Registry("database backend") {}
  /// The backend `settings.backend` names, opened with `settings`.
  std::unique_ptr<Store> open(const StoreSettings& settings) const {
    return make(settings.backend, settings);
  }
};

/// Registers "sqlite" (the embedded database), "postgresql" (libpq) and "odbc" (a driver and
/// a dialect: sqlserver, oracle, postgresql, sqlite).
void register_builtin_stores(StoreRegistry& registry);

/// Checks the settings of the built-in backends without connecting (distribd --check-config):
/// a PostgreSQL connection string's keys, an ODBC string's form, driver and dialect. Throws
/// Error(invalid_argument) naming the part that is wrong; returns warnings (an ODBC driver that
/// is not installed on this machine).
std::vector<std::string> check_store_settings(const StoreSettings& settings);

/// Highest schema version this build knows.
int latest_schema_version() noexcept;

}  // namespace distrib
