// SociRouting: entries travelling down the tree to relays and states reported back up.
#include "store/soci/soci_store.h"

namespace distrib::store {

auto SociRouting::vias_with_entries_to_push(const std::vector<std::string>& vias)
    -> std::vector<std::string> {
  if (vias.empty()) return {};
  if (vias.size() > 1000) throw Error(ErrorKind::invalid_argument, "at most 1,000 hosts in one query");
  return core_.guarded([&](soci::session& sql) {
    std::vector<std::string> out;
    const ll now = fs::now_unix();
    soci::rowset<soci::row> rs =
        (sql.prepare << vias_with_entries_to_push_sql(host_id_list(vias)), soci::use(now));
    for (const auto& r : rs) out.push_back(get_str(r, 0));
    return out;
  });
}

auto SociRouting::entries_to_push(const std::string& via, int limit) -> std::vector<RoutedEntry> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<RoutedEntry> out;
    const ll now = fs::now_unix();
    soci::rowset<soci::row> rs =
        (sql.prepare << kEntriesToPushSql << core_.dialect().limit(std::max(1, limit)), soci::use(via),
         soci::use(via), soci::use(via), soci::use(now));
    for (const auto& r : rs) {
      RoutedEntry x;
      x.entry.id = get_i64(r, 0);
      x.entry.job_id = x.job.id = get_i64(r, 1);
      x.entry.host_id = get_str(r, 2);
      x.entry.state = parse_entry_state(get_str(r, 3));
      x.entry.attempt = static_cast<std::int32_t>(get_i64(r, 4));
      x.job.type = parse_job_type(get_str(r, 5));
      x.job.package_name = get_str(r, 6);
      x.job.package_version = get_str(r, 7);
      x.job.created_at = get_i64(r, 8);
      x.job.cancel_requested = get_i64(r, 9) != 0;
      auto& sc = x.job.schedule;
      sc.expires_at = get_i64(r, 10);
      sc.timing = parse_install_timing(get_str(r, 11));
      if (const auto w = get_str(r, 12); !w.empty()) sc.window = parse_daily_window(w);
      sc.max_retries = static_cast<int>(get_i64(r, 13));
      sc.retry_installs = get_i64(r, 14) != 0;
      sc.retry_backoff_seconds = static_cast<int>(get_i64(r, 15));
      x.job.split.size = static_cast<std::uint64_t>(get_i64(r, 16));
      x.job.split.interval_seconds = static_cast<int>(get_i64(r, 17));
      read_params(get_str(r, 18), x.job);
      x.entry.signed_order = get_str(r, 19);
      out.push_back(std::move(x));
    }
    return out;
  });
}

void SociRouting::mark_pushed(const std::string& via,
                              const std::vector<std::pair<std::int64_t, EntryState>>& acks) {
  if (acks.empty()) return;
  core_.write([&](soci::session& sql) {
    ll id = 0;
    std::string state;
    soci::statement st = (sql.prepare << "UPDATE job_entries SET pushed_to = :v WHERE id = :id "
                                         "AND state = :s",
                          soci::use(via), soci::use(id), soci::use(state));
    for (const auto& [entry, s] : acks) {
      id = entry;
      state = std::string(to_string(s));
      st.execute(true);
    }
  });
}

auto SociRouting::import_entries(const std::vector<RoutedEntry>& entries) -> std::vector<std::string> {
  return core_.write([&](soci::session& sql) {
    std::set<std::string> vias;
    std::map<ll, ll> local_jobs;  // upstream job id → local id
    for (const auto& x : entries) {
      const ll up_entry = x.entry.id;
      ll local_id = 0;
      int local_attempt = 1;
      std::string local_state;
      soci::indicator ind = soci::i_null;
      sql << "SELECT id, state, attempt FROM job_entries WHERE upstream_id = :u", soci::into(local_id, ind),
          soci::into(local_state), soci::into(local_attempt), soci::use(up_entry);
      const bool known = sql.got_data() && ind == soci::i_ok;
      const ll now = fs::now_unix();
      if (known) {
        const auto current = parse_entry_state(local_state);
        if (x.entry.attempt > local_attempt && x.entry.state == EntryState::waiting) {
          // The operator asked the parent to retry: a new attempt starts here.
          const int a = x.entry.attempt;
          sql << "UPDATE job_entries SET state = 'waiting', attempt = :a, ready_at = 0, message = "
                 "'retry requested', exit_code = NULL, output_tail = '', pushed_to = '', "
                 "up_version = 0, updated_at = :u, signed_order = :o WHERE id = :id",
              soci::use(a), soci::use(now), soci::use(x.entry.signed_order), soci::use(local_id);
        } else if (x.entry.state == EntryState::suspended &&
                   (current == EntryState::waiting || current == EntryState::transferring)) {
          sql << "UPDATE job_entries SET state = 'suspended', message = 'suspended by operator', "
                 "pushed_to = '', updated_at = :u WHERE id = :id",
              soci::use(now), soci::use(local_id);
        } else if (x.entry.state != EntryState::suspended && current == EntryState::suspended &&
                   !is_final(x.entry.state)) {
          sql << "UPDATE job_entries SET state = 'waiting', message = 'resumed by operator', "
                 "pushed_to = '', updated_at = :u WHERE id = :id",
              soci::use(now), soci::use(local_id);
        } else if ((x.entry.state == EntryState::cancelled || x.entry.state == EntryState::expired) &&
                   can_transition(current, x.entry.state)) {
          const std::string st(to_string(x.entry.state));
          const std::string why = x.entry.state == EntryState::cancelled ? "cancelled by operator"
                                                                         : "expired before it could finish";
          sql << "UPDATE job_entries SET state = :s, message = :m, pushed_to = '', updated_at = :u "
                 "WHERE id = :id",
              soci::use(st), soci::use(why), soci::use(now), soci::use(local_id);
        } else if (!update_split(sql, local_id, x.job.split)) {
          continue;
        }
      } else {
        if (is_final(x.entry.state)) continue;  // never seen here and already over
        auto [it, fresh] = local_jobs.try_emplace(x.job.id, 0);
        if (fresh) {
          const ll up_job = x.job.id;
          ll found = 0;
          soci::indicator jind = soci::i_null;
          sql << "SELECT id FROM jobs WHERE upstream_id = :u", soci::into(found, jind), soci::use(up_job);
          if (sql.got_data() && jind == soci::i_ok) {
            it->second = found;
          } else {
            Job job = x.job;
            job.id = 0;
            job.upstream_id = x.job.id;
            job.key_mode = "host-id";
            job.created_by = "parent";
            it->second = core_.insert_job(sql, job, {}).id;
          }
        }
        const ll job_id = it->second;
        const int attempt = x.entry.attempt;
        const std::string initial = x.entry.state == EntryState::suspended ? "suspended" : "waiting";
        sql << "INSERT INTO job_entries (job_id, host_id, state, attempt, last_seq, message, "
               "output_tail, updated_at, upstream_id, signed_order) VALUES (:j, :h, :s, :a, 0, '', '', "
               ":u, :up, :o)",
            soci::use(job_id), soci::use(x.entry.host_id), soci::use(initial), soci::use(attempt),
            soci::use(now), soci::use(up_entry), soci::use(x.entry.signed_order);
      }
      std::string via;
      soci::indicator vind = soci::i_null;
      sql << "SELECT via FROM hosts WHERE host_id = :h", soci::into(via, vind), soci::use(x.entry.host_id);
      vias.insert(sql.got_data() && vind == soci::i_ok ? via : x.entry.host_id);
    }
    return std::vector<std::string>(vias.begin(), vias.end());
  });
}

auto SociRouting::update_split(soci::session& sql, ll local_entry, const SplitSpec& split) -> bool {
  const ll size = static_cast<ll>(split.size);
  const int interval = split.interval_seconds;
  soci::statement st =
      (sql.prepare << "UPDATE jobs SET split_size = :s, split_interval = :i WHERE "
                      "id = (SELECT job_id FROM job_entries WHERE id = :e) AND "
                      "(split_size <> :s2 OR split_interval <> :i2)",
       soci::use(size), soci::use(interval), soci::use(local_entry), soci::use(size), soci::use(interval));
  st.execute(true);
  return st.get_affected_rows() > 0;
}

auto SociRouting::hosts_to_report(int limit) -> std::vector<PendingHost> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<PendingHost> out;
    soci::rowset<soci::row> rs = (sql.prepare << "SELECT " << kHostColumns
                                              << ", up_version FROM hosts WHERE up_version > 0 "
                                                 "ORDER BY host_id"
                                              << core_.dialect().limit(std::max(1, limit)));
    for (const auto& r : rs) out.push_back({host_from_row(r), get_i64(r, 11)});
    return out;
  });
}

void SociRouting::hosts_reported(const std::vector<std::pair<std::string, std::int64_t>>& done) {
  if (done.empty()) return;
  core_.write([&](soci::session& sql) {
    std::string id;
    ll version = 0;
    soci::statement st = (sql.prepare << "UPDATE hosts SET up_version = 0 WHERE host_id = :h "
                                         "AND up_version = :v",
                          soci::use(id), soci::use(version));
    for (const auto& [h, v] : done) {
      id = h;
      version = v;
      st.execute(true);
    }
  });
}

auto SociRouting::reports_to_forward(int limit) -> std::vector<PendingReport> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<PendingReport> out;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT id, upstream_id, attempt, last_seq, state, exit_code, message, "
                        "output_tail, up_version, seg_done, seg_total, bytes_received, "
                        "bad_chunks FROM job_entries WHERE up_version > 0 AND "
                        "upstream_id <> 0 ORDER BY id"
                     << core_.dialect().limit(std::max(1, limit)));
    for (const auto& r : rs) {
      PendingReport p;
      p.local_id = get_i64(r, 0);
      p.report.entry_id = get_i64(r, 1);
      p.report.attempt = static_cast<std::int32_t>(get_i64(r, 2));
      p.report.seq = get_i64(r, 3);
      p.report.state = parse_entry_state(get_str(r, 4));
      if (auto x = get_opt_i64(r, 5)) p.report.exit_code = static_cast<int>(*x);
      p.report.message = get_str(r, 6);
      p.report.output_tail = get_str(r, 7);
      p.version = get_i64(r, 8);
      p.report.progress.segments_done = get_i64(r, 9);
      p.report.progress.segments_total = get_i64(r, 10);
      p.report.progress.bytes_received = get_i64(r, 11);
      p.report.progress.bad_chunks = get_i64(r, 12);
      out.push_back(std::move(p));
    }
    return out;
  });
}

void SociRouting::reports_forwarded(const std::vector<std::pair<std::int64_t, std::int64_t>>& done) {
  if (done.empty()) return;
  core_.write([&](soci::session& sql) {
    ll id = 0, version = 0;
    soci::statement st = (sql.prepare << "UPDATE job_entries SET up_version = 0 WHERE id = :id "
                                         "AND up_version = :v",
                          soci::use(id), soci::use(version));
    for (const auto& [e, v] : done) {
      id = e;
      version = v;
      st.execute(true);
    }
  });
}

}  // namespace distrib::store
