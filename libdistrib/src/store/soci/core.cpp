// SociCore: sessions, the write path's fencing, reconnection, migrations at open, call statistics,
// and the statements several facilities run inside their own transactions (events, a job's rows,
// the direct children to wake).
#include "store/soci/core.h"
#include "store/soci/item_catalogue.h"

#include <cctype>
#include <sstream>

namespace distrib::store {

SociCore::SociCore(const Dialect& dialect, const soci::backend_factory& backend,
                   const std::string& connection, const StoreSettings& settings)
    : dialect_(dialect),
      pool_(static_cast<std::size_t>(std::max(1, settings.pool_size))),
      backend_(backend),
      connection_(connection),
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

auto SociCore::stats() const -> DataStore::Stats {
  DataStore::Stats st;
  st.calls = calls_.load();
  st.total_micros = total_micros_.load();
  for (int i = 0; i < 6; ++i) st.buckets[i] = buckets_[i].load();
  st.outages = outages_.load();
  return st;
}

void SociCore::set_fencing(const std::string& name, ll token) {
  std::lock_guard lock(fence_mutex_);
  fence_name_ = name;
  fence_token_ = token;
}

void SociCore::set_event_listener(std::function<void()> listener) {
  std::lock_guard lock(listener_mutex_);
  listener_ = std::move(listener);
}

void SociCore::count_call(std::chrono::steady_clock::time_point t0) noexcept {
  const auto us = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
  ++calls_;
  total_micros_ += us;
  static constexpr std::uint64_t kLimits[] = {1000, 5000, 25000, 100000, 500000};
  std::size_t b = 0;
  while (b < 5 && us > kLimits[b]) ++b;
  ++buckets_[b];
}

void SociCore::recovered() {
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

bool SociCore::disk_full(const std::string& what) {
  std::string lower(what);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* words : {"database or disk is full", "no space left", "could not extend file", "disk full",
                            "could not allocate space", "unable to extend"})
    if (lower.find(words) != std::string::npos) return true;
  return false;
}

auto SociCore::connection_lost(soci::session& sql, const soci::soci_error& e) -> bool {
  if (e.get_error_category() == soci::soci_error::connection_error) return true;
  try {
    return sql.get_backend() == nullptr || !sql.is_connected();
  } catch (...) {
    return true;
  }
}

void SociCore::open_lease_session(soci::session& sql) {
  if (lease_session_open_) return;
  sql.open(backend_, connection_);
  for (const auto& stmt : dialect_.connection_setup) sql << stmt;
  lease_session_open_ = true;
}

void SociCore::reconnect(soci::session& sql) {
  sql.reconnect();
  for (const auto& stmt : dialect_.connection_setup) sql << stmt;
}

auto SociCore::read_version(soci::session& sql) -> int {
  int v = 0;
  soci::indicator ind = soci::i_null;
  sql << "SELECT MAX(version) FROM schema_version", soci::into(v, ind);
  return ind == soci::i_ok ? v : 0;
}

void SociCore::migrate() {
  guarded([&](soci::session& sql) {
    std::lock_guard lock(write_gate_);
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
      if (m.version == kHostKeysVersion) rebuild_host_keys(sql);
      if (m.version == kInternedInventoryVersion) intern_inventory(sql);
      const ll now = fs::now_unix();
      sql << "INSERT INTO schema_version (version, applied_at) VALUES (:v, :t)", soci::use(m.version),
          soci::use(now);
      tr.commit();
    }
    return 0;
  });
}

void SociCore::emit(soci::session& sql, const std::string& type, Severity severity, ll job_id,
                    const std::string& host_id, const std::string& subject, const std::string& message) {
  const std::string sev(to_string(severity));
  const ll at = fs::now_unix_ms();
  sql << "INSERT INTO events (type, severity, at_ms, job_id, host_id, subject, message) VALUES (:t, :s, :a, "
         ":j, :h, "
         ":u, :m)",
      soci::use(type), soci::use(sev), soci::use(at), soci::use(job_id), soci::use(host_id),
      soci::use(subject), soci::use(message);
  ++tl_events_written;
}

void SociCore::emit_job_end(soci::session& sql, ll job_id) {
  ll open = 0, failed = 0, total = 0;
  // One open entry is enough to know (index job_entries_job_state): no count per report.
  sql << std::string("SELECT job_id FROM job_entries WHERE job_id = :j AND state IN ") + kOpen +
             " ORDER BY job_id" + dialect_.limit(1),
      soci::into(open), soci::use(job_id);
  if (sql.got_data()) return;
  sql << "SELECT COUNT(*), SUM(CASE WHEN state IN ('succeeded', 'not_applicable') THEN 0 ELSE 1 END) FROM "
         "job_entries WHERE "
         "job_id = :j",
      soci::into(total), soci::into(failed), soci::use(job_id);
  std::string name, version;
  sql << "SELECT package_name, package_version FROM jobs WHERE id = :j", soci::into(name),
      soci::into(version), soci::use(job_id);
  const auto subject = name.empty() ? std::string() : name + " " + version;
  if (failed == 0)
    emit(sql, "job.completed", Severity::info, job_id, "", subject,
         "job " + std::to_string(job_id) + " completed: " + std::to_string(total) + " of " +
             std::to_string(total) + " succeeded or not applicable");
  else
    emit(sql, "job.failed", Severity::error, job_id, "", subject,
         "job " + std::to_string(job_id) + " ended with " + std::to_string(failed) + " of " +
             std::to_string(total) + " not succeeded");
}

auto SociCore::insert_job(soci::session& sql, const Job& job, const std::vector<std::string>& host_ids,
                          const std::vector<int>& waves) -> Job {
  Job out = job;
  out.created_at = job.created_at ? job.created_at : fs::now_unix();
  const bool rollout = !job.rollout.waves.empty();
  out.rollout_state = rollout ? RolloutState::running : RolloutState::none;
  out.current_wave = rollout ? 1 : 0;
  const std::string type(to_string(job.type));
  const auto dests = join_addresses(job.destinations);
  const ll created = out.created_at;
  const int cancel = 0;
  const ll upstream = job.upstream_id;
  const auto& sc = job.schedule;
  const ll start = sc.start_at, expires = sc.expires_at;
  const std::string timing(to_string(sc.timing));
  const std::string window = sc.timing == InstallTiming::window ? to_string(sc.window) : std::string();
  const int retries = sc.max_retries, retry_installs = sc.retry_installs ? 1 : 0,
            backoff = sc.retry_backoff_seconds;
  const std::string wave_text = join_waves(job.rollout.waves);
  const int success = job.rollout.success_threshold, errors = job.rollout.error_threshold;
  const std::string rstate(to_string(out.rollout_state));
  const int current = out.current_wave;
  const std::string groups = join_addresses(job.id_groups);
  const ll split_size = static_cast<ll>(job.split.size);
  const int split_interval = job.split.interval_seconds;
  boost::json::object param_object;
  if (job.type == JobType::collect_files) param_object["collect"] = json::to_json(job.collect);
  if (job.force) param_object["force"] = true;
  const std::string params = param_object.empty() ? std::string() : boost::json::serialize(param_object);
  sql << "INSERT INTO jobs (type, package_name, package_version, destinations, key_mode, "
         "created_by, created_at, cancel_requested, upstream_id, start_at, expires_at, timing, "
         "window_spec, max_retries, retry_installs, retry_backoff, waves, success_threshold, "
         "error_threshold, rollout_state, current_wave, rollout_message, id_groups, split_size, "
         "split_interval, params) VALUES (:t, "
         ":n, :v, :d, :k, :b, :c, :x, :u, :sa, :ea, :ti, :wi, :mr, :ri, :rb, :wv, :st, :et, :rs, "
         ":cw, '', :ig, :ss, :si, :pa)",
      soci::use(type), soci::use(job.package_name), soci::use(job.package_version), soci::use(dests),
      soci::use(job.key_mode), soci::use(job.created_by), soci::use(created), soci::use(cancel),
      soci::use(upstream), soci::use(start), soci::use(expires), soci::use(timing), soci::use(window),
      soci::use(retries), soci::use(retry_installs), soci::use(backoff), soci::use(wave_text),
      soci::use(success), soci::use(errors), soci::use(rstate), soci::use(current), soci::use(groups),
      soci::use(split_size), soci::use(split_interval), soci::use(params);
  ll id = 0;
  sql << dialect_.last_id_query("jobs"), soci::into(id);
  out.id = id;
  if (host_ids.empty()) return out;
  if (dialect_.name == "postgresql") {
    // One statement per 50,000 entries: the columns that differ travel as arrays (rows.h).
    for (std::size_t i = 0; i < host_ids.size(); i += 50000) {
      const std::size_t end = std::min(host_ids.size(), i + 50000);
      std::vector<ll> wave_nos, readies;
      for (std::size_t k = i; k < end; ++k) {
        const int wave = waves.empty() ? 0 : waves[k];
        wave_nos.push_back(wave);
        readies.push_back(wave > 1 ? kHeldUntilReleased : start);
      }
      const auto host_array = pg_text_array(host_ids.begin() + static_cast<std::ptrdiff_t>(i),
                                            host_ids.begin() + static_cast<std::ptrdiff_t>(end));
      const auto wave_array = pg_int_array(wave_nos.begin(), wave_nos.end());
      const auto ready_array = pg_int_array(readies.begin(), readies.end());
      sql << "INSERT INTO job_entries (job_id, host_id, state, attempt, last_seq, message, output_tail, "
             "updated_at, wave, ready_at) SELECT :j, t.h, 'waiting', 1, 0, '', '', :u, t.w, t.r FROM "
             "unnest(CAST(:hs AS VARCHAR(36)[]), CAST(:ws AS INTEGER[]), CAST(:rs AS BIGINT[])) AS t(h, w, "
             "r)",
          soci::use(id), soci::use(created), soci::use(host_array), soci::use(wave_array),
          soci::use(ready_array);
    }
    return out;
  }
  // Bound in bulk, 1,000 rows per execution: drivers with array binding (ODBC) send them in
  // one round trip.
  std::vector<std::string> hosts;
  std::vector<ll> jobs, times, readies;
  std::vector<int> wave_nos;
  for (std::size_t i = 0; i < host_ids.size(); i += 1000) {
    const std::size_t end = std::min(host_ids.size(), i + 1000);
    hosts.assign(host_ids.begin() + static_cast<std::ptrdiff_t>(i),
                 host_ids.begin() + static_cast<std::ptrdiff_t>(end));
    jobs.assign(hosts.size(), id);
    times.assign(hosts.size(), created);
    wave_nos.clear();
    readies.clear();
    for (std::size_t k = i; k < end; ++k) {
      const int wave = waves.empty() ? 0 : waves[k];
      wave_nos.push_back(wave);
      readies.push_back(wave > 1 ? kHeldUntilReleased : start);
    }
    sql << "INSERT INTO job_entries (job_id, host_id, state, attempt, last_seq, message, output_tail, "
           "updated_at, "
           "wave, ready_at) VALUES (:j, :h, 'waiting', 1, 0, '', '', :u, :w, :r)",
        soci::use(jobs), soci::use(hosts), soci::use(times), soci::use(wave_nos), soci::use(readies);
  }
  return out;
}

auto SociCore::distinct_vias(soci::session& sql, const std::string& where, ll a, ll b)
    -> std::vector<std::string> {
  std::vector<std::string> out;
  soci::rowset<soci::row> rs =
      (sql.prepare << "SELECT DISTINCT COALESCE(h.via, e.host_id) FROM job_entries e LEFT JOIN hosts h "
                      "ON h.host_id = e.host_id WHERE "
                   << where,
       soci::use(a), soci::use(b));
  for (const auto& r : rs) out.push_back(get_str(r, 0));
  return out;
}

auto SociCore::select_lease(soci::session& sql, const std::string& name, LeaseLock lock)
    -> std::optional<LeaseRecord> {
  const std::string& suffix = lock == LeaseLock::share       ? dialect_.share_rows
                              : lock == LeaseLock::exclusive ? dialect_.lock_rows
                                                             : std::string();
  soci::rowset<soci::row> rs =
      (sql.prepare << "SELECT name, holder, token, expires_at, since FROM cluster_lease WHERE name = :n" +
                          suffix,
       soci::use(name));
  for (const auto& r : rs) return lease_from_row(r);
  return std::nullopt;
}

void SociCore::check_fence(soci::session& sql) {
  std::string name;
  ll token = 0;
  {
    std::lock_guard lock(fence_mutex_);
    name = fence_name_;
    token = fence_token_;
  }
  if (token == 0) return;
  // Held until this transaction ends in key-share mode: writers and renewals do not wait for
  // each other, and a takeover (which locks the row exclusively first) waits for it, so no write
  // of the old holder can commit after the new one took the lease.
  const auto cur = select_lease(sql, name, LeaseLock::share);
  const ll now = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  if (!cur || cur->token != token || cur->expires_at_ms <= now)
    throw Error(
        ErrorKind::conflict,
        "fenced: this node no longer holds the active lease (token " + std::to_string(token) +
            (cur ? ", current " + std::to_string(cur->token) + " held by " + cur->holder : std::string()) +
            "); nothing was written");
}

}  // namespace distrib::store
