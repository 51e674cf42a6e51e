// SociStore: The event outbox, sink cursors, retention and the audit trail.
#include "store/soci/soci_store.h"

namespace distrib::store {

void SociStore::emit(soci::session& sql, const std::string& type, Severity severity, ll job_id,
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

void SociStore::emit_job_end(soci::session& sql, ll job_id) {
  ll open = 0, failed = 0, total = 0;
  // One open entry is enough to know (index job_entries_job_state): no count per report.
  sql << std::string("SELECT job_id FROM job_entries WHERE job_id = :j AND state IN ") + kOpen +
             " ORDER BY job_id" + dialect_.limit(1),
      soci::into(open), soci::use(job_id);
  if (sql.got_data()) return;
  sql << "SELECT COUNT(*), SUM(CASE WHEN state = 'succeeded' THEN 0 ELSE 1 END) FROM job_entries WHERE "
         "job_id = :j",
      soci::into(total), soci::into(failed), soci::use(job_id);
  std::string name, version;
  sql << "SELECT package_name, package_version FROM jobs WHERE id = :j", soci::into(name),
      soci::into(version), soci::use(job_id);
  const auto subject = name.empty() ? std::string() : name + " " + version;
  if (failed == 0)
    emit(sql, "job.completed", Severity::info, job_id, "", subject,
         "job " + std::to_string(job_id) + " completed: " + std::to_string(total) + " of " +
             std::to_string(total) + " succeeded");
  else
    emit(sql, "job.failed", Severity::error, job_id, "", subject,
         "job " + std::to_string(job_id) + " ended with " + std::to_string(failed) + " of " +
             std::to_string(total) + " not succeeded");
}

auto SociStore::select_events(const char* where_order, ll bound, int limit) -> std::vector<Event> {
  return guarded([&](soci::session& sql) {
    std::vector<Event> out;
    soci::rowset<soci::row> rs =
        (sql.prepare << std::string(
                            "SELECT id, type, severity, at_ms, job_id, host_id, subject, message FROM events "
                            "WHERE ") +
                            where_order + dialect_.limit(std::max(1, limit)),
         soci::use(bound));
    for (const auto& r : rs)
      out.push_back({get_i64(r, 0), get_str(r, 1), parse_severity(get_str(r, 2)), get_i64(r, 3),
                     get_i64(r, 4), get_str(r, 5), get_str(r, 6), get_str(r, 7)});
    return out;
  });
}

auto SociStore::events_after(std::int64_t after_id, int limit) -> std::vector<Event> {
  return select_events("id > :a ORDER BY id", after_id, limit);
}

auto SociStore::events_before(std::int64_t before_id, int limit) -> std::vector<Event> {
  return select_events("id < :b ORDER BY id DESC", before_id > 0 ? before_id : std::numeric_limits<ll>::max(),
                       limit);
}

auto SociStore::event_cursor(const std::string& sink) -> std::int64_t {
  return guarded([&](soci::session& sql) {
    ll id = 0;
    soci::indicator ind = soci::i_null;
    sql << "SELECT last_id FROM event_cursors WHERE sink = :s", soci::into(id, ind), soci::use(sink);
    return sql.got_data() && ind == soci::i_ok ? static_cast<std::int64_t>(id) : std::int64_t{-1};
  });
}

void SociStore::set_event_cursor(const std::string& sink, std::int64_t last_id) {
  write([&](soci::session& sql) {
    const ll id = last_id;
    sql << dialect_.upsert("event_cursors", {"sink"}, {"last_id"}), soci::use(sink), soci::use(id);
  });
}

void SociStore::record_events(const std::vector<Event>& events) {
  write([&](soci::session& sql) {
    for (const auto& e : events) emit(sql, e.type, e.severity, e.job_id, e.host_id, e.subject, e.message);
  });
}

auto SociStore::prune_events(std::int64_t before_ms, std::int64_t upto_id) -> std::int64_t {
  const ll before = before_ms, upto = upto_id;
  // Read first: most calls find nothing to delete and need no write transaction.
  const bool any = guarded([&](soci::session& sql) {
    ll n = 0;
    sql << "SELECT COUNT(*) FROM events WHERE at_ms < :b AND id <= :u", soci::into(n), soci::use(before),
        soci::use(upto);
    return n > 0;
  });
  if (!any) return 0;
  return write([&](soci::session& sql) {
    soci::statement st = (sql.prepare << "DELETE FROM events WHERE at_ms < :b AND id <= :u",
                          soci::use(before), soci::use(upto));
    st.execute(true);
    return static_cast<std::int64_t>(st.get_affected_rows());
  });
}

auto SociStore::last_event_id() -> std::int64_t {
  return guarded([&](soci::session& sql) {
    ll id = 0;
    soci::indicator ind = soci::i_null;
    sql << "SELECT MAX(id) FROM events", soci::into(id, ind);
    return ind == soci::i_ok ? static_cast<std::int64_t>(id) : std::int64_t{0};
  });
}

void SociStore::set_event_listener(std::function<void()> listener) {
  std::lock_guard lock(listener_mutex_);
  listener_ = std::move(listener);
}

void SociStore::append_audit(const std::vector<AuditRecord>& records) {
  if (records.empty()) return;
  write_unfenced([&](soci::session& sql) {
    for (const auto& a : records) {
      const ll at = a.at_ms;
      const int status = a.status;
      sql << "INSERT INTO audit_log (at_ms, actor, remote, action, target, status, result) VALUES (:a, :w, "
             ":r, :x, "
             ":t, :s, :m)",
          soci::use(at), soci::use(a.actor), soci::use(a.remote), soci::use(a.action), soci::use(a.target),
          soci::use(status), soci::use(a.result);
    }
  });
}

auto SociStore::audit_records(int limit, std::int64_t before_id) -> std::vector<AuditRecord> {
  return guarded([&](soci::session& sql) {
    std::vector<AuditRecord> out;
    const ll before = before_id > 0 ? before_id : std::numeric_limits<ll>::max();
    soci::rowset<soci::row> rs = (sql.prepare << "SELECT id, at_ms, actor, remote, action, target, status, "
                                                 "result FROM audit_log WHERE id < :b "
                                                 "ORDER BY id DESC" +
                                                     dialect_.limit(std::max(1, limit)),
                                  soci::use(before));
    for (const auto& r : rs)
      out.push_back({get_i64(r, 0), get_i64(r, 1), get_str(r, 2), get_str(r, 3), get_str(r, 4), get_str(r, 5),
                     static_cast<int>(get_i64(r, 6)), get_str(r, 7)});
    return out;
  });
}

}  // namespace distrib::store
