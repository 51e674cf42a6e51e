// SociSchedule: suspended and resumed transfers, split changes, and what the scheduler asks: expiries,
// entries becoming ready, open windows, rollout waves.
#include "store/soci/soci_store.h"

namespace distrib::store {

void SociSchedule::require_job(soci::session& sql, ll id) {
  int exists = 0;
  sql << "SELECT COUNT(*) FROM jobs WHERE id = :id", soci::into(exists), soci::use(id);
  if (!exists) throw Error(ErrorKind::not_found, "job " + std::to_string(id) + " does not exist");
}

auto SociSchedule::suspend_transfers(std::int64_t job_id, const std::vector<std::string>& host_ids,
                                     bool suspend) -> TransferChange {
  return core_.write([&](soci::session& sql) {
    const ll id = job_id, now = fs::now_unix();
    if (id != 0) require_job(sql, id);
    const std::string from = suspend ? "('waiting', 'transferring')" : "('suspended')";
    const std::string to = suspend ? "suspended" : "waiting";
    const std::string why = suspend ? "suspended by operator" : "resumed by operator";
    // Scope: one job, or every entry of the given hosts.
    const std::string scope = id != 0 ? "e.job_id = :p" : "e.host_id = :p";
    std::vector<ll> ids;
    std::set<std::string> vias;
    auto collect = [&](const auto& param) {
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT e.id, COALESCE(h.via, e.host_id) FROM job_entries e LEFT JOIN hosts h "
                          "ON h.host_id = e.host_id WHERE "
                       << scope << " AND e.state IN " << from,
           soci::use(param));
      for (const auto& r : rs) {
        ids.push_back(get_i64(r, 0));
        vias.insert(get_str(r, 1));
      }
    };
    if (id != 0)
      collect(id);
    else
      for (const auto& h : host_ids) collect(h);
    {
      TransferChange out;
      ll entry = 0;
      soci::statement st = (sql.prepare << "UPDATE job_entries SET state = :s, message = :m, pushed_to = '', "
                                           "updated_at = :u WHERE id = :id",
                            soci::use(to), soci::use(why), soci::use(now), soci::use(entry));
      for (auto e : ids) {
        entry = e;
        st.execute(true);
      }
      out.entries = static_cast<std::int64_t>(ids.size());
      out.vias.assign(vias.begin(), vias.end());
      return out;
    }
  });
}

auto SociSchedule::clear_split(std::int64_t job_id) -> TransferChange {
  return core_.write([&](soci::session& sql) {
    const ll id = job_id;
    require_job(sql, id);
    sql << "UPDATE jobs SET split_size = 0, split_interval = 0 WHERE id = :id", soci::use(id);
    TransferChange out;
    out.vias =
        core_.distinct_vias(sql, std::string("e.job_id = :j AND e.state IN ") + kOpen + " AND 0 = :z", id, 0);
    soci::statement st = (sql.prepare << "UPDATE job_entries SET pushed_to = '' WHERE job_id = :j "
                                         "AND state IN "
                                      << kOpen,
                          soci::use(id));
    st.execute(true);
    out.entries = static_cast<std::int64_t>(st.get_affected_rows());
    return out;
  });
}

auto SociSchedule::transfer_status(const std::string& host_id, std::int64_t entry_id)
    -> std::optional<TransferStatus> {
  return core_.guarded([&](soci::session& sql) -> std::optional<TransferStatus> {
    const ll id = entry_id;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT e.state, e.attempt, j.split_size, j.split_interval FROM job_entries "
                        "e JOIN jobs j ON j.id = e.job_id WHERE e.id = :id AND e.host_id = :h",
         soci::use(id), soci::use(host_id));
    for (const auto& r : rs) {
      TransferStatus t;
      t.state = parse_entry_state(get_str(r, 0));
      t.attempt = static_cast<std::int32_t>(get_i64(r, 1));
      t.split.size = static_cast<std::uint64_t>(get_i64(r, 2));
      t.split.interval_seconds = static_cast<int>(get_i64(r, 3));
      return t;
    }
    return std::nullopt;
  });
}

auto SociSchedule::expire_entries(std::int64_t after, std::int64_t upto) -> std::vector<std::string> {
  // Called every second: a read decides whether a write transaction is needed at all.
  const bool any = core_.guarded([&](soci::session& sql) {
    int n = 0;
    const ll a = after, u = upto;
    sql << "SELECT COUNT(*) FROM jobs WHERE expires_at > :a AND expires_at <= :u", soci::into(n),
        soci::use(a), soci::use(u);
    return n > 0;
  });
  if (!any) return {};
  return core_.write([&](soci::session& sql) {
    const ll a = after, u = upto;
    auto vias = core_.distinct_vias(sql,
                                    std::string("e.state IN ") + kCancellable +
                                        " AND e.job_id IN (SELECT id FROM jobs WHERE expires_at > :a AND "
                                        "expires_at <= :u)",
                                    a, u);
    if (vias.empty()) return vias;
    struct Expiring {
      ll job;
      std::string host_id, name;
    };
    std::vector<Expiring> expiring;
    {
      soci::rowset<soci::row> rs =
          (sql.prepare
               << "SELECT e.job_id, e.host_id, h.name FROM job_entries e LEFT JOIN hosts h ON h.host_id = "
                  "e.host_id WHERE e.state IN "
               << kCancellable
               << " AND e.job_id IN (SELECT id FROM jobs WHERE expires_at > :a AND expires_at <= :u)",
           soci::use(a), soci::use(u));
      for (const auto& r : rs) expiring.push_back({get_i64(r, 0), get_str(r, 1), get_str(r, 2)});
    }
    sql << "UPDATE job_entries SET state = 'expired', message = 'expired before it could finish', "
           "pushed_to = '', updated_at = :n, up_version = CASE WHEN upstream_id <> 0 THEN up_version "
           "+ 1 ELSE 0 END WHERE state IN "
        << kCancellable << " AND job_id IN (SELECT id FROM jobs WHERE expires_at > :a AND expires_at <= :u)",
        soci::use(u), soci::use(a), soci::use(u);
    std::set<ll> jobs;
    for (const auto& x : expiring) {
      const auto who = x.name.empty() ? x.host_id : x.name;
      core_.emit(sql, "entry.expired", Severity::warning, x.job, x.host_id, who,
                 "job " + std::to_string(x.job) + " on " + who + ": expired before it could finish");
      jobs.insert(x.job);
    }
    for (const auto j : jobs) core_.emit_job_end(sql, j);
    return vias;
  });
}

auto SociSchedule::vias_ready_between(std::int64_t after, std::int64_t upto) -> std::vector<std::string> {
  return core_.guarded([&](soci::session& sql) {
    return core_.distinct_vias(
        sql, std::string("e.ready_at > :a AND e.ready_at <= :u AND e.state IN ") + kOpen, after, upto);
  });
}

auto SociSchedule::open_window_jobs() -> std::vector<Job> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<Job> out;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT " << kJobColumns
                     << " FROM jobs WHERE timing = 'window' AND EXISTS (SELECT 1 FROM job_entries e "
                        "WHERE e.job_id = jobs.id AND e.state IN "
                     << kOpen << ")");
    for (const auto& r : rs) out.push_back(job_from_row(r));
    return out;
  });
}

auto SociSchedule::vias_with_open_entries(std::int64_t job_id) -> std::vector<std::string> {
  return core_.guarded([&](soci::session& sql) {
    return core_.distinct_vias(sql, std::string("e.job_id = :j AND 0 = :z AND e.state IN ") + kOpen, job_id,
                               0);
  });
}

auto SociSchedule::running_rollouts() -> std::vector<Job> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<Job> out;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT " << kJobColumns << " FROM jobs WHERE rollout_state = 'running' ORDER BY id");
    for (const auto& r : rs) out.push_back(job_from_row(r));
    return out;
  });
}

auto SociSchedule::wave_counts(std::int64_t job_id) -> std::vector<WaveCounts> {
  return core_.guarded([&](soci::session& sql) {
    std::map<int, WaveCounts> by;
    const ll id = job_id;
    soci::rowset<soci::row> rs =
        (sql.prepare
             << "SELECT wave, state, COUNT(*) FROM job_entries WHERE job_id = :j GROUP BY wave, state",
         soci::use(id));
    for (const auto& r : rs) {
      const int wave = static_cast<int>(get_i64(r, 0));
      const auto state = parse_entry_state(get_str(r, 1));
      const auto n = get_i64(r, 2);
      auto& w = by[wave];
      w.wave = wave;
      w.total += n;
      if (is_success(state)) w.succeeded += n;
      if (state == EntryState::failed || state == EntryState::expired) w.failed += n;
      if (is_final(state)) w.final_count += n;
    }
    std::vector<WaveCounts> out;
    for (auto& [k, v] : by) out.push_back(v);
    return out;
  });
}

auto SociSchedule::release_wave(std::int64_t job_id, int wave) -> std::vector<std::string> {
  return core_.write([&](soci::session& sql) {
    const ll id = job_id, now = fs::now_unix();
    std::string waves_text;
    ll start = 0;
    sql << "SELECT waves, start_at FROM jobs WHERE id = :j", soci::into(waves_text), soci::into(start),
        soci::use(id);
    const auto waves = waves_text.empty() ? std::vector<int>{} : parse_waves(waves_text);
    const ll ready = std::max(now, start);
    sql << "UPDATE job_entries SET ready_at = :r WHERE job_id = :j AND wave = :w AND ready_at >= :h",
        soci::use(ready), soci::use(id), soci::use(wave), soci::use(static_cast<ll>(kHeldUntilReleased));
    const std::string state = wave >= static_cast<int>(waves.size()) ? "completed" : "running";
    sql << "UPDATE jobs SET current_wave = :w, rollout_state = :s WHERE id = :j", soci::use(wave),
        soci::use(state), soci::use(id);
    return core_.distinct_vias(sql, "e.job_id = :j AND e.wave = :w AND e.state = 'waiting'", id, wave);
  });
}

void SociSchedule::stop_rollout(std::int64_t job_id, const std::string& reason) {
  core_.write([&](soci::session& sql) {
    const ll id = job_id, now = fs::now_unix();
    const std::string why = "rollout stopped: " + reason;
    sql << "UPDATE job_entries SET state = 'cancelled', message = :m, updated_at = :u WHERE job_id = "
           ":j AND state = 'waiting' AND ready_at >= :h",
        soci::use(why), soci::use(now), soci::use(id), soci::use(static_cast<ll>(kHeldUntilReleased));
    sql << "UPDATE jobs SET rollout_state = 'stopped', rollout_message = :m WHERE id = :j", soci::use(reason),
        soci::use(id);
  });
}

}  // namespace distrib::store
