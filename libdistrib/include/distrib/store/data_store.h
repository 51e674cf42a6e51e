#pragma once
// The database as a whole: its schema version, what calls cost, counts for /metrics, and moving
// every table between backends (distribd --export-db / --import-db).
// Part of the Store interface (store.h), whose contract every call follows: blocking,
// thread-safe, one transaction per call, failures thrown as distrib::Error.
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

namespace distrib {

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

/// Schema, figures and whole-database moves.
class DataStore {
 public:
  virtual ~DataStore() = default;

  // --- schema
  /// Schema version the database is at after migrations.
  virtual int schema_version() = 0;
  /// Schema version the database was at when opened, before migrations (0: a new database).
  virtual int version_at_open() { return schema_version(); }

  // --- figures for Prometheus /metrics: what store calls cost, and what is stored
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

  // --- how the database serves the hot paths
  struct QueryPlan {
    std::string name;        ///< what the query is for ("hosts by name (registration conflicts)")
    std::string plan;        ///< the database's plan, one line per step
    bool full_scan = false;  ///< a step reads a whole table: no index serves the query
  };
  /// The plan of every query run for each registration, poll and wake-up, as this database
  /// makes it (empty where the database offers no plan through this store: SQL Server, Oracle).
  virtual std::vector<QueryPlan> query_plans() { return {}; }
};

}  // namespace distrib
