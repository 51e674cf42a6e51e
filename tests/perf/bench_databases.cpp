// The store on each database path, side by side: embedded SQLite, SQLite through ODBC,
// PostgreSQL natively (libpq) and PostgreSQL through ODBC (psqlODBC). For each:
//   1. Job expansion: HOSTS hosts join one ID group; one install job to the group is created
//      (members read, one entry per host written, one transaction): entries/s.
//   2. Inventory ingest: INV_HOSTS first reports modelled on this machine's inventory (every dpkg
//      package, disks, interfaces: ~870 items), stored through ingest_inventory_batch 64 at a time
//      as the manager's ingest thread does, then the periodic report (only volatile values
//      differ): reports/s.
// Baseline, measured in the same run on the same database and connection type: the same number
// of rows inserted raw through SOCI (a prepared INSERT, rows bound in bulk, one transaction per
// batch) into tables of the same columns and indexes. Ratio = distrib speed ÷ raw speed.
// PostgreSQL is a private server on loopback (tests/support/postgres.sh, fsync off, as in tests).
//
// usage: bench_databases [HOSTS=10000] [INV_HOSTS=200]
#include "bench_common.h"
#include "harness.h"

#include <distrib/model/group.h>
#include <distrib/model/host.h>
#include <distrib/services/inventory.h>
#include <distrib/store/store.h>

#include "store/dialect.h"

#include <soci/odbc/soci-odbc.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>

using namespace distrib;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Path {
  std::string label;
  StoreSettings settings;
  const soci::backend_factory* factory;
  std::string soci_connection;
  const store::Dialect* dialect;
};

Path make_path(const std::string& kind, const test::TempDir& tmp, int n) {
  Path p;
  p.label = kind;
  const auto file = (tmp / (kind + std::to_string(n) + ".db")).string();
  if (kind == "sqlite") {
    p.settings.backend = "sqlite";
    p.settings.path = file;
    p.factory = soci::factory_sqlite3();
    p.soci_connection = "db=" + file;
    p.dialect = &store::sqlite_dialect();
  } else if (kind == "odbc-sqlite") {
    p.settings.backend = "odbc";
    p.settings.connection = "DRIVER={SQLite3};Database=" + file + ";";
    p.factory = soci::factory_odbc();
    p.soci_connection = p.settings.connection;
    p.dialect = &store::sqlite_dialect();
  } else {
    const auto db = test::pg_create_database((kind == "postgresql" ? "bench_n_" : "bench_o_") +
                                             std::to_string(::getpid()) + "_" + std::to_string(n));
    p.settings.backend = kind == "postgresql" ? "postgresql" : "odbc";
    p.settings.connection = kind == "postgresql" ? test::pg_connection(db) : test::pg_odbc_connection(db);
    p.factory = kind == "postgresql" ? soci::factory_postgresql() : soci::factory_odbc();
    p.soci_connection = p.settings.connection;
    p.dialect = &store::postgresql_dialect();
  }
  return p;
}

Manifest fake_manifest() {
  Manifest m;
  m.name = "app";
  m.version = "1";
  m.payload_digest = std::string(64, 'a');
  m.payload_size = 1;
  return m;
}

void exec_all(soci::session& sql, const std::string& statement, const store::Dialect& d) {
  for (const auto& s : store::render(statement, d)) sql << s;
}

// Raw inserts of `hosts` job entries (same columns and indexes as job_entries): rows/s.
double raw_entries(const Path& p, const std::vector<std::string>& ids) {
  soci::session sql(*p.factory, p.soci_connection);
  for (const auto& s : p.dialect->connection_setup) sql << s;
  exec_all(sql,
           "CREATE TABLE raw_entries (id ${PK}, job_id BIGINT NOT NULL, host_id VARCHAR(36) NOT NULL, state "
           "VARCHAR(16) NOT NULL, attempt INTEGER NOT NULL, last_seq BIGINT NOT NULL, message ${TEXT}, "
           "output_tail "
           "${TEXT}, updated_at BIGINT NOT NULL, wave INTEGER NOT NULL, ready_at BIGINT NOT NULL)",
           *p.dialect);
  sql << "CREATE INDEX raw_entries_job_host ON raw_entries (job_id, host_id)";
  sql << "CREATE INDEX raw_entries_host ON raw_entries (host_id, state)";
  sql << "CREATE INDEX raw_entries_ready ON raw_entries (ready_at)";
  const auto t0 = Clock::now();
  soci::transaction tr(sql);
  std::vector<std::string> batch;
  std::vector<long long> job, now;
  for (std::size_t i = 0; i < ids.size(); i += 1000) {
    batch.assign(ids.begin() + static_cast<std::ptrdiff_t>(i),
                 ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), i + 1000)));
    job.assign(batch.size(), 1);
    now.assign(batch.size(), 1700000000);
    sql << "INSERT INTO raw_entries (job_id, host_id, state, attempt, last_seq, message, output_tail, "
           "updated_at, "
           "wave, ready_at) VALUES (:j, :h, 'waiting', 1, 0, '', '', :u, 0, 0)",
        soci::use(job), soci::use(batch), soci::use(now);
  }
  tr.commit();
  return static_cast<double>(ids.size()) / since(t0);
}

// Raw inserts of every report's items (same columns and indexes as inventory_items), 64
// reports per transaction: reports/s.
double raw_items(const Path& p, const std::vector<std::string>& ids, const InventoryItems& items) {
  soci::session sql(*p.factory, p.soci_connection);
  for (const auto& s : p.dialect->connection_setup) sql << s;
  exec_all(sql,
           "CREATE TABLE raw_items (host_id VARCHAR(36) NOT NULL, item_key VARCHAR(255) NOT NULL, item_value "
           "${TEXT} NOT NULL, PRIMARY KEY (host_id, item_key))",
           *p.dialect);
  sql << "CREATE INDEX raw_items_key ON raw_items (item_key)";
  std::vector<std::string> keys, values, hosts;
  for (const auto& [k, v] : items) {
    keys.push_back(k);
    values.push_back(v);
  }
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < ids.size(); i += 64) {
    soci::transaction tr(sql);
    for (std::size_t h = i; h < std::min(ids.size(), i + 64); ++h) {
      hosts.assign(keys.size(), ids[h]);
      sql << "INSERT INTO raw_items (host_id, item_key, item_value) VALUES (:h, :k, :v)", soci::use(hosts),
          soci::use(keys), soci::use(values);
    }
    tr.commit();
  }
  return static_cast<double>(ids.size()) / since(t0);
}

// Registers `n` hosts named PREFIX0, PREFIX1, ...; returns their ids.
std::vector<std::string> register_hosts(Store& store, std::size_t n, const std::string& prefix) {
  std::vector<std::string> ids(n);
  for (std::size_t i = 0; i < n; ++i) {
    Host h;
    h.host_id = ids[i] = make_host_id();
    h.name = prefix + std::to_string(i);
    store.upsert_host(h);
  }
  return ids;
}

struct Figures {
  double entries_per_s = 0, raw_rows_per_s = 0;
  double first_per_s = 0, periodic_per_s = 0, raw_reports_per_s = 0;
};

Figures measure(const std::string& kind, std::size_t hosts, std::size_t inv_hosts,
                const InventoryItems& items) {
  test::TempDir tmp;
  Figures f;
  StoreRegistry reg;
  register_builtin_stores(reg);
  {  // job expansion
    auto p = make_path(kind, tmp, 1);
    auto store = reg.open(p.settings);
    const auto ids = register_hosts(*store, hosts, "pc");
    IdGroup g;
    g.name = "everyone";
    g.owner = make_host_id();
    store->create_id_group(g);
    store->join_id_group("everyone", ids, JoinMethod::admin);
    store->insert_package(fake_manifest());
    Job job;
    job.package_name = "app";
    job.package_version = "1";
    job.destinations = {"id:everyone"};
    job.id_groups = {"everyone"};
    job.key_mode = "name";
    const auto t0 = Clock::now();
    const auto created = store->create_job(job, {});
    f.entries_per_s = static_cast<double>(created.entries) / since(t0);
    if (created.entries != static_cast<std::int64_t>(hosts))
      throw std::runtime_error("expansion lost entries");
    f.raw_rows_per_s = raw_entries(p, ids);
  }
  {  // inventory ingest
    auto p = make_path(kind, tmp, 2);
    auto store = reg.open(p.settings);
    const auto ids = register_hosts(*store, inv_hosts, "inv");
    auto round = [&](int n) {
      const auto t0 = Clock::now();
      for (std::size_t i = 0; i < ids.size(); i += 64) {
        std::vector<InventoryReport> batch;
        for (std::size_t h = i; h < std::min(ids.size(), i + 64); ++h) {
          InventoryReport r{ids[h], InventoryScope::full, 1700000000 + n, items};
          r.items["system.uptime_seconds"] = std::to_string(1000 + n);  // volatile
          batch.push_back(std::move(r));
        }
        for (const auto& res : store->ingest_inventory_batch(batch, 1700000000 + n))
          if (!res.error.empty()) throw std::runtime_error("ingest: " + res.error);
      }
      return static_cast<double>(ids.size()) / since(t0);
    };
    f.first_per_s = round(1);
    f.periodic_per_s = round(2);
    f.raw_reports_per_s = raw_items(p, ids, items);
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t hosts = argc > 1 ? std::stoul(argv[1]) : 10000;
  const std::size_t inv_hosts = argc > 2 ? std::stoul(argv[2]) : 200;
  std::printf("machine: %s\n", bench::machine().c_str());
  const std::string pg_dir = "/tmp/distrib-bench-pg-" + std::to_string(::getpid());
  try {
    if (!test::pg_script({"start", pg_dir, "54390"}))
      throw std::runtime_error("cannot start PostgreSQL (postgres.sh)");
    ::setenv("DISTRIB_TEST_PG_DIR", pg_dir.c_str(), 1);
    std::vector<std::string> errors;
    auto collectors = platform_collectors();
    std::vector<InventoryCollector*> raw;
    for (auto& c : collectors) raw.push_back(c.get());
    const auto model = run_collectors(raw, InventoryScope::full, errors);
    std::printf(
        "job expansion: %zu hosts in one ID group, one job; inventory: %zu hosts, %zu items per report\n",
        hosts, inv_hosts, model.size());
    std::printf("%-16s %12s %12s %6s | %10s %10s %10s %6s\n", "DATABASE", "ENTRIES/S", "RAW ROWS/S", "RATIO",
                "FIRST/S", "PERIODIC/S", "RAW RPT/S", "RATIO");
    for (const std::string kind : {"sqlite", "odbc-sqlite", "postgresql", "odbc-postgresql"}) {
      const auto f = measure(kind, hosts, inv_hosts, model);
      std::printf("%-16s %12.0f %12.0f %6.2f | %10.1f %10.1f %10.1f %6.2f\n", kind.c_str(), f.entries_per_s,
                  f.raw_rows_per_s, f.entries_per_s / f.raw_rows_per_s, f.first_per_s, f.periodic_per_s,
                  f.raw_reports_per_s, f.first_per_s / f.raw_reports_per_s);
      std::fflush(stdout);
    }
    std::printf("RATIO: distrib ÷ raw inserts on the same database (entries; first inventory reports)\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_databases: %s\n", e.what());
    test::pg_script({"destroy", pg_dir});
    return 1;
  }
  test::pg_script({"destroy", pg_dir});
  return 0;
}
