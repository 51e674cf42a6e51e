// SociStore: Sessions, reconnection, migrations at open, call statistics.
#include "store/soci/soci_store.h"

namespace distrib::store {

auto SociStore::schema_version() -> int {
  return guarded([&](soci::session& sql) { return read_version(sql); });
}

auto SociStore::counts() -> Counts {
  return guarded([&](soci::session& sql) {
    Counts c;
    ll n = 0;
    sql << "SELECT COUNT(*) FROM hosts", soci::into(n);
    c.hosts = n;
    sql << "SELECT COUNT(*) FROM jobs", soci::into(n);
    c.jobs = n;
    sql << std::string("SELECT COUNT(DISTINCT job_id) FROM job_entries WHERE state IN ") + kOpen,
        soci::into(n);
    c.open_jobs = n;
    soci::rowset<soci::row> rs = (sql.prepare << "SELECT state, COUNT(*) FROM job_entries GROUP BY state");
    for (const auto& r : rs) c.entries_by_state[get_str(r, 0)] = get_i64(r, 1);
    return c;
  });
}

auto SociStore::stats() const -> Stats {
  Stats st;
  st.calls = calls_.load();
  st.total_micros = total_micros_.load();
  for (int i = 0; i < 6; ++i) st.buckets[i] = buckets_[i].load();
  st.outages = outages_.load();
  return st;
}

void SociStore::count_call(std::chrono::steady_clock::time_point t0) noexcept {
  const auto us = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
  ++calls_;
  total_micros_ += us;
  static constexpr std::uint64_t kLimits[] = {1000, 5000, 25000, 100000, 500000};
  std::size_t b = 0;
  while (b < 5 && us > kLimits[b]) ++b;
  ++buckets_[b];
}

void SociStore::recovered() {
  if (outage_.exchange(false)) {
    spdlog::info("the {} database is reachable again", dialect_.name);
    // A stale pooled connection re-established at once (idle timeout, a server restart
    // already over) is no outage worth telling: only one that lasted.
    const ll since = outage_since_ms_.load(), until = fs::now_unix_ms();
    if (until - since < kOutageEventMs) return;
    std::lock_guard lock(outage_mutex_);
    ended_outage_ = std::make_pair(since, until);
  }
}

auto SociStore::connection_lost(soci::session& sql, const soci::soci_error& e) -> bool {
  if (e.get_error_category() == soci::soci_error::connection_error) return true;
  try {
    return sql.get_backend() == nullptr || !sql.is_connected();
  } catch (...) {
    return true;
  }
}

void SociStore::reconnect(soci::session& sql) {
  sql.reconnect();
  for (const auto& stmt : dialect_.connection_setup) sql << stmt;
}

auto SociStore::read_version(soci::session& sql) -> int {
  int v = 0;
  soci::indicator ind = soci::i_null;
  sql << "SELECT MAX(version) FROM schema_version", soci::into(v, ind);
  return ind == soci::i_ok ? v : 0;
}

void SociStore::migrate() {
  guarded([&](soci::session& sql) {
    std::lock_guard lock(write_mutex_);
    try {
      // Created only when absent: an account without the right to create tables can run a
      // database a DBA migrated.
      try {
        read_version(sql);
      } catch (const soci::soci_error&) {
        sql << dialect_.create_version_table;
      }
    } catch (const soci::soci_error& e) {
      throw Error(ErrorKind::unavailable,
                  "cannot use the " + dialect_.name + " database: " + first_line(e.what()));
    }
    const int current = read_version(sql);
    version_at_open_ = current;
    if (current > latest_schema_version())
      throw Error(ErrorKind::invalid_argument, "database schema version " + std::to_string(current) +
                                                   " is newer than this distribd understands (" +
                                                   std::to_string(latest_schema_version()) +
                                                   "); upgrade distribd");
    for (const auto& m : migrations()) {
      if (m.version <= current) continue;
      soci::transaction tr(sql);
      for (const auto& s : m.statements)
        for (const auto& r : render(s, dialect_)) sql << r;
      const ll now = fs::now_unix();
      sql << "INSERT INTO schema_version (version, applied_at) VALUES (:v, :t)", soci::use(m.version),
          soci::use(now);
      tr.commit();
    }
    return 0;
  });
}

}  // namespace distrib::store
