// SociJobs: jobs and their entries: creation, listings, reports through the entry state machine,
// cancel, retry.
#include "store/soci/soci_store.h"

namespace distrib::store {

auto SociJobs::create_job(const Job& job, const std::vector<std::string>& host_ids) -> JobCreated {
  return core_.write([&](soci::session& sql) {
    std::vector<std::string> ids;
    std::unordered_set<std::string> seen;
    ids.reserve(host_ids.size());
    for (const auto& h : host_ids)
      if (seen.insert(h).second) ids.push_back(h);
    const std::string role = targets_agents(job.type) ? "agent" : "relay";
    for (const auto& g : job.id_groups) {
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT m.host_id FROM id_group_members m JOIN hosts h ON h.host_id = "
                          "m.host_id WHERE m.group_name = :g AND h.approved = 1 AND h.role = :r "
                          "ORDER BY m.joined_at, m.host_id",
           soci::use(g), soci::use(role));
      for (const auto& r : rs) {
        auto id = get_str(r, 0);
        if (seen.insert(id).second) ids.push_back(std::move(id));
      }
    }
    std::vector<int> waves;
    if (!job.rollout.waves.empty()) {
      // Drawn at random, not in registration order.
      std::mt19937_64 rng(std::random_device{}());
      std::shuffle(ids.begin(), ids.end(), rng);
      waves = assign_waves(ids.size(), job.rollout.waves);
    }
    JobCreated out;
    out.job = core_.insert_job(sql, job, ids, waves);
    out.entries = static_cast<std::int64_t>(ids.size());
    core_.emit(sql, "job.created", Severity::info, out.job.id, "",
               job.package_name.empty() ? std::string() : job.package_name + " " + job.package_version,
               "job " + std::to_string(out.job.id) + " created: " + std::string(to_string(job.type)) +
                   " to " + std::to_string(ids.size()) + " host(s)" +
                   (job.created_by.empty() ? std::string() : " by " + job.created_by));
    for (const auto& g : job.id_groups)
      sql << "INSERT INTO job_id_groups (group_name, job_id) VALUES (:g, :j)", soci::use(g),
          soci::use(static_cast<ll>(out.job.id));
    const ll id = out.job.id, now = fs::now_unix();
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT DISTINCT COALESCE(h.via, e.host_id) FROM job_entries e LEFT JOIN "
                        "hosts h ON h.host_id = e.host_id WHERE e.job_id = :j AND e.ready_at <= :n",
         soci::use(id), soci::use(now));
    for (const auto& r : rs) out.vias.push_back(get_str(r, 0));
    return out;
  });
}

auto SociJobs::find_job(std::int64_t job_id) -> std::optional<Job> {
  return core_.guarded([&](soci::session& sql) -> std::optional<Job> {
    const ll id = job_id;
    soci::rowset<soci::row> rs = (sql.prepare << kJobByIdSql, soci::use(id));
    for (const auto& r : rs) return job_from_row(r);
    return std::nullopt;
  });
}

auto SociJobs::list_jobs(int limit) -> std::vector<JobListing> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<JobListing> out;
    soci::rowset<soci::row> rs = (sql.prepare << "SELECT " << kJobColumns << " FROM jobs ORDER BY id DESC"
                                              << core_.dialect().limit(std::max(1, limit)));
    for (const auto& r : rs) out.push_back({job_from_row(r), {}});
    if (out.empty()) return out;
    const ll min_id = out.back().job.id;
    soci::rowset<soci::row> counts =
        (sql.prepare << "SELECT job_id, state, COUNT(*) FROM job_entries WHERE job_id >= :m "
                        "GROUP BY job_id, state",
         soci::use(min_id));
    for (const auto& r : counts) {
      const auto job_id = get_i64(r, 0);
      const auto state = parse_entry_state(get_str(r, 1));
      const auto n = get_i64(r, 2);
      for (auto& l : out) {
        if (l.job.id != job_id) continue;
        l.progress.by_state[static_cast<int>(state)] += n;
        l.progress.total += n;
        if (is_final(state)) l.progress.final_count += n;
      }
    }
    return out;
  });
}

auto SociJobs::job_entries(std::int64_t job_id) -> std::vector<JobEntry> {
  return core_.guarded([&](soci::session& sql) {
    const ll id = job_id;
    std::vector<JobEntry> out;
    soci::rowset<soci::row> rs = (sql.prepare << "SELECT " << kEntryColumns << kEntryFrom
                                              << "WHERE e.job_id = :j ORDER BY h.name, e.id",
                                  soci::use(id));
    for (const auto& r : rs) out.push_back(entry_from_row(r));
    return out;
  });
}

auto SociJobs::open_entries_for_host(const std::string& host_id) -> std::vector<JobEntry> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<JobEntry> out;
    soci::rowset<soci::row> rs = (sql.prepare << kOpenEntriesForHostSql, soci::use(host_id));
    for (const auto& r : rs) out.push_back(entry_from_row(r));
    return out;
  });
}

auto SociJobs::open_entries_for_hosts(const std::vector<std::string>& host_ids) -> std::vector<JobEntry> {
  if (host_ids.empty()) return {};
  if (host_ids.size() > 1000) throw Error(ErrorKind::invalid_argument, "at most 1,000 hosts in one query");
  return core_.guarded([&](soci::session& sql) {
    std::vector<JobEntry> out;
    soci::rowset<soci::row> rs = (sql.prepare << open_entries_for_hosts_sql(host_id_list(host_ids)));
    for (const auto& r : rs) out.push_back(entry_from_row(r));
    return out;
  });
}

auto SociJobs::children_with_work() -> std::vector<std::string> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<std::string> out;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT DISTINCT h.via FROM job_entries e JOIN hosts h ON h.host_id = "
                        "e.host_id WHERE (e.host_id = h.via AND e.state IN "
                     << kOpen << ") OR (e.host_id <> h.via AND e.pushed_to <> h.via)");
    for (const auto& r : rs) out.push_back(get_str(r, 0));
    return out;
  });
}

auto SociJobs::apply_report(const std::string& reporter, const EntryReport& rep, bool forwarded)
    -> ReportOutcome {
  return core_.write([&](soci::session& sql) {
    ReportOutcome out;
    const ll id = rep.entry_id;
    std::string owner, state_text, via;
    int attempt = 0, max_retries = 0, retry_installs = 0, backoff = 30;
    ll last_seq = 0, seg_done = 0, seg_total = 0, bytes_received = 0, bad_chunks = 0;
    soci::indicator ind = soci::i_null, via_ind = soci::i_null;
    ll job_id = 0;
    std::string host_name;
    soci::indicator name_ind = soci::i_null;
    sql << "SELECT e.host_id, e.state, e.attempt, e.last_seq, h.via, j.max_retries, "
           "j.retry_installs, j.retry_backoff, e.seg_done, e.seg_total, e.bytes_received, "
           "e.bad_chunks, e.job_id, h.name FROM job_entries e JOIN jobs j ON j.id = e.job_id "
           "LEFT JOIN hosts h ON h.host_id = e.host_id WHERE e.id = :id",
        soci::into(owner, ind), soci::into(state_text), soci::into(attempt), soci::into(last_seq),
        soci::into(via, via_ind), soci::into(max_retries), soci::into(retry_installs), soci::into(backoff),
        soci::into(seg_done), soci::into(seg_total), soci::into(bytes_received), soci::into(bad_chunks),
        soci::into(job_id), soci::into(host_name, name_ind), soci::use(id);
    if (name_ind != soci::i_ok) host_name.clear();
    if (via_ind != soci::i_ok) via.clear();
    const bool ours = forwarded ? (sql.got_data() && via == reporter && owner != reporter)
                                : (sql.got_data() && owner == reporter);
    if (!ours) {
      out.kind = ReportOutcome::Kind::unknown_entry;
      return out;
    }
    const auto current = parse_entry_state(state_text);
    out.current = current;
    // A relay that retried an entry reports its new attempt: it restarts the entry here too,
    // unless the entry was ended here (cancelled, expired).
    const bool new_attempt =
        forwarded && rep.attempt > attempt && (!is_final(current) || current == EntryState::failed);
    if ((rep.attempt != attempt && !new_attempt) || rep.seq <= last_seq) {
      out.kind = ReportOutcome::Kind::duplicate;
      return out;
    }
    const bool allowed =
        new_attempt || (forwarded ? can_reach(current, rep.state) : can_transition(current, rep.state));
    if (rep.state != current && !allowed) {
      out.kind = ReportOutcome::Kind::refused;
      return out;
    }
    const ll seq = rep.seq;
    const ll now = fs::now_unix();
    int exit_code = rep.exit_code.value_or(0);
    soci::indicator exit_ind = rep.exit_code ? soci::i_ok : soci::i_null;
    // A transfer failure (or, when the job asks, a failed install) is retried with backoff by
    // the server the agent reports to; a relay's forwarded failure means it gave up.
    const bool transfer_failure = current != EntryState::installing;
    if (!forwarded && rep.state == EntryState::failed && attempt <= max_retries &&
        (transfer_failure || retry_installs)) {
      JobSchedule sc;
      sc.retry_backoff_seconds = backoff;
      const int next = attempt + 1;
      const ll retry_at = now + retry_delay(sc, next);
      const std::string message = "attempt " + std::to_string(attempt) + " failed (" + rep.message +
                                  "); attempt " + std::to_string(next) + " of " +
                                  std::to_string(max_retries + 1) + " in " + std::to_string(retry_at - now) +
                                  " s";
      sql << "UPDATE job_entries SET state = 'waiting', attempt = :a, last_seq = :q, exit_code = "
             ":x, message = :m, output_tail = :o, updated_at = :u, ready_at = :r, pushed_to = '', "
             "seg_done = 0, seg_total = 0, bytes_received = 0, bad_chunks = 0, "
             "up_version = CASE WHEN upstream_id <> 0 THEN up_version + 1 ELSE 0 END WHERE id = :id",
          soci::use(next), soci::use(seq), soci::use(exit_code, exit_ind), soci::use(message),
          soci::use(rep.output_tail), soci::use(now), soci::use(retry_at), soci::use(id);
      core_.emit(sql, "entry.retrying", Severity::warning, job_id, owner, host_name, message);
      out.kind = ReportOutcome::Kind::applied;
      out.current = EntryState::waiting;
      out.retried = true;
      out.retry_at = retry_at;
      return out;
    }
    const std::string state(to_string(rep.state));
    const int new_attempt_no = new_attempt ? rep.attempt : attempt;
    // A report without progress keeps the progress the entry has.
    if (!rep.progress.empty()) {
      seg_done = rep.progress.segments_done;
      seg_total = rep.progress.segments_total;
      bytes_received = rep.progress.bytes_received;
      bad_chunks = rep.progress.bad_chunks;
    }
    sql << "UPDATE job_entries SET state = :s, attempt = :a, last_seq = :q, exit_code = :x, "
           "message = :m, output_tail = :o, updated_at = :u, seg_done = :sd, seg_total = :st, "
           "bytes_received = :br, bad_chunks = :bc, up_version = CASE WHEN upstream_id "
           "<> 0 THEN up_version + 1 ELSE 0 END WHERE id = :id",
        soci::use(state), soci::use(new_attempt_no), soci::use(seq), soci::use(exit_code, exit_ind),
        soci::use(rep.message), soci::use(rep.output_tail), soci::use(now), soci::use(seg_done),
        soci::use(seg_total), soci::use(bytes_received), soci::use(bad_chunks), soci::use(id);
    if (rep.state != current && (is_success(rep.state) || rep.state == EntryState::failed)) {
      const bool ok = is_success(rep.state);
      const char* type = rep.state == EntryState::not_applicable ? "entry.not_applicable"
                         : ok                                    ? "entry.succeeded"
                                                                 : "entry.failed";
      core_.emit(sql, type, ok ? Severity::info : Severity::warning, job_id, owner, host_name,
                 "job " + std::to_string(job_id) + " on " + (host_name.empty() ? owner : host_name) + ": " +
                     state +
                     (rep.message.empty() ? std::string() : " (" + SociCore::first_line(rep.message) + ")"));
      core_.emit_job_end(sql, job_id);
    }
    out.kind = ReportOutcome::Kind::applied;
    out.current = rep.state;
    return out;
  });
}

auto SociJobs::cancel_job_entries(std::int64_t job_id) -> JobCancel {
  return core_.write([&](soci::session& sql) {
    const ll id = job_id;
    int exists = 0;
    sql << "SELECT COUNT(*) FROM jobs WHERE id = :id", soci::into(exists), soci::use(id);
    if (exists == 0) throw Error(ErrorKind::not_found, "job " + std::to_string(job_id) + " does not exist");
    JobCancel out;
    ll cancelled = 0;
    sql << "SELECT COUNT(*) FROM job_entries WHERE job_id = :id AND state IN " << kCancellable,
        soci::into(cancelled), soci::use(id);
    out.cancelled = cancelled;
    auto& hosts = out.vias;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT DISTINCT COALESCE(h.via, e.host_id) FROM job_entries e LEFT "
                        "JOIN hosts h ON h.host_id = e.host_id WHERE e.job_id = :id AND "
                        "e.state IN "
                     << kCancellable,
         soci::use(id));
    for (const auto& r : rs) hosts.push_back(get_str(r, 0));
    const ll now = fs::now_unix();
    sql << "UPDATE jobs SET cancel_requested = 1, rollout_state = CASE WHEN rollout_state = "
           "'running' THEN 'stopped' ELSE rollout_state END, rollout_message = CASE WHEN "
           "rollout_state = 'running' THEN 'cancelled by operator' ELSE rollout_message END "
           "WHERE id = :id",
        soci::use(id);
    sql << "UPDATE job_entries SET state = 'cancelled', message = 'cancelled by operator', "
           "pushed_to = '', updated_at = :u WHERE job_id = :id AND state IN "
        << kCancellable,
        soci::use(now), soci::use(id);
    core_.emit(sql, "job.cancelled", Severity::warning, id, "", "",
               "job " + std::to_string(id) + " cancelled by operator");
    return out;
  });
}

auto SociJobs::retry_failed(std::int64_t job_id) -> std::pair<std::int64_t, std::vector<std::string>> {
  return core_.write([&](soci::session& sql) {
    const ll id = job_id, now = fs::now_unix();
    int exists = 0;
    sql << "SELECT COUNT(*) FROM jobs WHERE id = :id", soci::into(exists), soci::use(id);
    if (!exists) throw Error(ErrorKind::not_found, "job " + std::to_string(job_id) + " does not exist");
    auto vias = core_.distinct_vias(sql, "e.job_id = :j AND e.state = 'failed' AND 0 = :z", id, 0);
    soci::statement st =
        (sql.prepare << "UPDATE job_entries SET state = 'waiting', attempt = attempt + 1, ready_at = :n, "
                        "message = 'retry requested by operator', exit_code = NULL, output_tail = '', "
                        "seg_done = 0, seg_total = 0, bytes_received = 0, bad_chunks = 0, "
                        "pushed_to = '', updated_at = :u WHERE job_id = :j AND state = 'failed'",
         soci::use(now), soci::use(now), soci::use(id));
    st.execute(true);
    return std::make_pair(static_cast<std::int64_t>(st.get_affected_rows()), vias);
  });
}

}  // namespace distrib::store
