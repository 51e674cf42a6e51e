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
#include <distrib/model/host.h>
#include <distrib/model/job.h>
#include <distrib/model/package.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace distrib {

/// Which database and where. Defaults are the embedded database.
struct StoreSettings {
  std::string backend = "sqlite";  ///< registry name of the implementation
  std::string path;                ///< sqlite: database file
  std::string connection;          ///< server backends: connection string
  int pool_size = 4;
  int busy_timeout_seconds = 10;
};

/// A state report from an agent about one entry. (entry, attempt, seq) makes it idempotent.
struct EntryReport {
  std::int64_t entry_id = 0;
  std::int32_t attempt = 1;
  std::int64_t seq = 0;  ///< strictly increasing per agent
  EntryState state = EntryState::waiting;
  std::optional<int> exit_code;
  std::string message;
  std::string output_tail;
};

/// What happened to a report.
struct ReportOutcome {
  enum class Kind { applied, duplicate, refused, unknown_entry } kind = Kind::applied;
  EntryState current = EntryState::waiting;  ///< the entry's state after the call
};
std::string_view to_string(ReportOutcome::Kind kind) noexcept;

/// What registering a host changed.
struct HostChange {
  bool created = false;
  bool changed = false;      ///< created, or any attribute other than last_seen differs
  std::string previous_via;  ///< the host's `via` before the call (empty when created)
};

/// An entry on its way down the tree to the relay that will run it, with its job.
struct RoutedEntry {
  JobEntry entry;  ///< id, job_id, host_id, state and attempt at the sending manager
  Job job;
};

/// At a relay: something still to be told to the parent, with the change counter it was read at
/// (clearing it only succeeds if nothing changed since).
struct PendingHost {
  Host host;
  std::int64_t version = 0;
};
struct PendingReport {
  EntryReport report;  ///< entry_id is the parent's id of the entry
  std::int64_t local_id = 0;
  std::int64_t version = 0;
};

/// A job with its entry counts, for listings.
struct JobListing {
  Job job;
  JobProgress progress;
};

class Store {
public:
  virtual ~Store() = default;

  /// Schema version the database is at after migrations.
  virtual int schema_version() = 0;

  // --- hosts
  /// Inserts the host or updates it by host_id. registered_at and approved are kept from the
  /// first insert. A change other than last_seen marks the host for reporting upward, and so
  /// does `report_upward` (a host registering again may have been elsewhere meanwhile).
  virtual HostChange upsert_host(const Host& host, bool report_upward = false) = 0;
  virtual std::optional<Host> find_host(const std::string& host_id) = 0;
  virtual std::vector<Host> list_hosts() = 0;
  /// Approves hosts waiting for approval; returns how many changed.
  virtual int approve_hosts(const std::vector<std::string>& host_ids) = 0;
  /// Forgets a host (it moved to another relay); its entries stay for the record.
  virtual void remove_host(const std::string& host_id) = 0;
  /// Raises last_seen of the hosts given (host id, unix seconds); unknown hosts are ignored.
  virtual void touch_hosts(const std::vector<std::pair<std::string, std::int64_t>>& seen) = 0;

  // --- packages
  /// Registers a package. Returns false when the same name and version with the same payload
  /// digest already exists (idempotent); throws Error(conflict) when it exists with other content.
  virtual bool insert_package(const Manifest& manifest) = 0;
  virtual std::optional<Manifest> find_package(const std::string& name,
                                               const std::string& version) = 0;
  virtual std::vector<PackageSummary> list_packages() = 0;
  /// Records that the package was used now (relay cache LRU).
  virtual void touch_package(const std::string& name, const std::string& version, std::int64_t when) = 0;
  /// Removes a package record. Returns false when it does not exist; throws Error(conflict) when
  /// an entry that is not final still needs it.
  virtual bool delete_package(const std::string& name, const std::string& version) = 0;

  // --- jobs
  /// Creates the job and one waiting entry per host, atomically. Returns the job with its id.
  virtual Job create_job(const Job& job, const std::vector<std::string>& host_ids) = 0;
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
  /// Marks the job cancel-requested and moves its cancellable entries to cancelled. Returns the
  /// hosts whose entries changed.
  virtual std::vector<std::string> cancel_job(std::int64_t job_id) = 0;
};

/// Maps a backend name to a factory. Implementations are registered where the program is
/// composed; `register_builtin_stores` adds the ones compiled into libdistrib.
class StoreRegistry {
public:
  using Factory = std::function<std::unique_ptr<Store>(const StoreSettings&)>;
  /// Throws Error(invalid_argument) when `name` is already registered.
  void add(const std::string& name, Factory factory);
  /// Throws Error(invalid_argument) listing the known names when `settings.backend` is unknown.
  std::unique_ptr<Store> open(const StoreSettings& settings) const;
  std::vector<std::string> names() const;

private:
  std::map<std::string, Factory> factories_;
};

/// Registers "sqlite" (the embedded database).
void register_builtin_stores(StoreRegistry& registry);

/// Highest schema version this build knows.
int latest_schema_version() noexcept;

}  // namespace distrib
