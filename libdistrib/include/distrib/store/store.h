#pragma once
// Persistence interfaces of the manager. Every durable fact lives here; the manager's in-memory
// structures are caches rebuilt from the store at start.
//
// `Store` is the union of one interface per facility, each in its own header:
//   host_store.h       HostStore       hosts: registration, approval, last contacts, silence
//   package_store.h    PackageStore    package records (manifests)
//   group_store.h      GroupStore      host groups and ID groups with their standing jobs
//   job_store.h        JobStore        jobs, entries, agents' reports, cancel and retry
//   routing_store.h    RoutingStore    entries pushed down to relays; what a relay reports up
//   schedule_store.h   ScheduleStore   suspended and split transfers, expiry, windows, rollouts
//   inventory_store.h  InventoryStore  inventories, their history and fields; collected files
//   event_store.h      EventStore      the event outbox with sinks' positions; the audit trail
//   lease_store.h      LeaseStore      the active manager's lease, takeovers, write fencing
//   enrolment_store.h  EnrolmentStore  hosts' enrolments, certificates, revocations, tokens
//   data_store.h       DataStore       schema version, figures, whole-database export and import
// A component that needs one facility may take that interface; `Store&` serves every one. The
// facility interfaces are virtual bases, so an implementation may implement each in a class of
// its own and compose them (SociStore does).
//
// Contract for every implementation, every facility:
//  - Calls block (disk, network to a database server) and must not run on network threads; the
//    manager runs them on its store thread pool.
//  - Calls are thread-safe: an implementation owns a connection pool.
//  - Failures throw distrib::Error: ErrorKind::unavailable when the database cannot be reached or
//    is busy beyond its timeout (retrying later may work), conflict / not_found for domain
//    refusals, internal otherwise. A call that throws changed nothing (each is one transaction).
#include <distrib/model/cluster.h>
#include <distrib/model/enrolment.h>
#include <distrib/model/event.h>
#include <distrib/model/group.h>
#include <distrib/model/host.h>
#include <distrib/model/inventory.h>
#include <distrib/model/job.h>
#include <distrib/model/package.h>
#include <distrib/model/relay.h>
#include <distrib/model/report.h>
#include <distrib/registry.h>
#include <distrib/store/data_store.h>
#include <distrib/store/enrolment_store.h>
#include <distrib/store/event_store.h>
#include <distrib/store/group_store.h>
#include <distrib/store/host_store.h>
#include <distrib/store/inventory_store.h>
#include <distrib/store/job_store.h>
#include <distrib/store/lease_store.h>
#include <distrib/store/package_store.h>
#include <distrib/store/routing_store.h>
#include <distrib/store/schedule_store.h>

#include <memory>
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

/// The whole store: every facility of one database.
class Store : public virtual HostStore,
              public virtual PackageStore,
              public virtual GroupStore,
              public virtual JobStore,
              public virtual RoutingStore,
              public virtual ScheduleStore,
              public virtual InventoryStore,
              public virtual EventStore,
              public virtual LeaseStore,
              public virtual EnrolmentStore,
              public virtual DataStore {
 public:
  ~Store() override = default;
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
