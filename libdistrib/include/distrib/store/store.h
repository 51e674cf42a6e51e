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
  /// Inserts the host or updates it by host_id (registered_at is kept from the first insert).
  virtual void upsert_host(const Host& host) = 0;
  virtual std::optional<Host> find_host(const std::string& host_id) = 0;
  virtual std::vector<Host> list_hosts() = 0;

  // --- packages
  /// Registers a package. Returns false when the same name and version with the same payload
  /// digest already exists (idempotent); throws Error(conflict) when it exists with other content.
  virtual bool insert_package(const Manifest& manifest) = 0;
  virtual std::optional<Manifest> find_package(const std::string& name,
                                               const std::string& version) = 0;
  virtual std::vector<PackageSummary> list_packages() = 0;

  // --- jobs
  /// Creates the job and one waiting entry per host, atomically. Returns the job with its id.
  virtual Job create_job(const Job& job, const std::vector<std::string>& host_ids) = 0;
  virtual std::optional<Job> find_job(std::int64_t job_id) = 0;
  virtual std::vector<JobListing> list_jobs(int limit) = 0;
  virtual std::vector<JobEntry> job_entries(std::int64_t job_id) = 0;
  /// Entries of the host that are not in a final state, oldest first.
  virtual std::vector<JobEntry> open_entries_for_host(const std::string& host_id) = 0;
  /// Hosts that have at least one non-final entry (rebuilds the manager's work cache).
  virtual std::vector<std::string> hosts_with_open_entries() = 0;
  /// Applies an agent's report to the entry it names if it belongs to `host_id`.
  virtual ReportOutcome apply_report(const std::string& host_id, const EntryReport& report) = 0;
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
