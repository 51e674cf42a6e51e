// SociEvents: the event outbox, sink cursors, retention and the audit trail.
#include "store/soci/soci_store.h"

namespace distrib::store {

auto SociEvents::select_events(const char* where_order, ll bound, int limit) -> std::vector<Event> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<Event> out;
    soci::rowset<soci::row> rs =
        (sql.prepare << std::string(
                            "SELECT id, type, severity, at_ms, job_id, host_id, subject, message FROM events "
                            "WHERE ") +
                            where_order + core_.dialect().limit(std::max(1, limit)),
         soci::use(bound));
    for (const auto& r : rs)
      out.push_back({get_i64(r, 0), get_str(r, 1), parse_severity(get_str(r, 2)), get_i64(r, 3),
                     get_i64(r, 4), get_str(r, 5), get_str(r, 6), get_str(r, 7)});
    return out;
  });
}

auto SociEvents::events_after(std::int64_t after_id, int limit) -> std::vector<Event> {
  return select_events("id > :a ORDER BY id", after_id, limit);
}

auto SociEvents::events_before(std::int64_t before_id, int limit) -> std::vector<Event> {
  return select_events("id < :b ORDER BY id DESC", before_id > 0 ? before_id : std::numeric_limits<ll>::max(),
                       limit);
}

auto SociEvents::event_cursor(const std::string& sink) -> std::int64_t {
  return core_.guarded([&](soci::session& sql) {
    ll id = 0;
    soci::indicator ind = soci::i_null;
    sql << "SELECT last_id FROM event_cursors WHERE sink = :s", soci::into(id, ind), soci::use(sink);
    return sql.got_data() && ind == soci::i_ok ? static_cast<std::int64_t>(id) : std::int64_t{-1};
  });
}

void SociEvents::set_event_cursor(const std::string& sink, std::int64_t last_id) {
  core_.write([&](soci::session& sql) {
    const ll id = last_id;
    sql << core_.dialect().upsert("event_cursors", {"sink"}, {"last_id"}), soci::use(sink), soci::use(id);
  });
}

void SociEvents::record_events(const std::vector<Event>& events) {
  core_.write([&](soci::session& sql) {
    for (const auto& e : events)
      core_.emit(sql, e.type, e.severity, e.job_id, e.host_id, e.subject, e.message);
  });
}

auto SociEvents::prune_events(std::int64_t before_ms, std::int64_t upto_id) -> std::int64_t {
  const ll before = before_ms, upto = upto_id;
  // Read first: most calls find nothing to delete and need no write transaction.
  const bool any = core_.guarded([&](soci::session& sql) {
    ll n = 0;
    sql << "SELECT COUNT(*) FROM events WHERE at_ms < :b AND id <= :u", soci::into(n), soci::use(before),
        soci::use(upto);
    return n > 0;
  });
  if (!any) return 0;
  return core_.write([&](soci::session& sql) {
    soci::statement st = (sql.prepare << "DELETE FROM events WHERE at_ms < :b AND id <= :u",
                          soci::use(before), soci::use(upto));
    st.execute(true);
    return static_cast<std::int64_t>(st.get_affected_rows());
  });
}

auto SociEvents::last_event_id() -> std::int64_t {
  return core_.guarded([&](soci::session& sql) {
    ll id = 0;
    soci::indicator ind = soci::i_null;
    sql << "SELECT MAX(id) FROM events", soci::into(id, ind);
    return ind == soci::i_ok ? static_cast<std::int64_t>(id) : std::int64_t{0};
  });
}

void SociEvents::set_event_listener(std::function<void()> listener) {
  core_.set_event_listener(std::move(listener));
}

// Fenced like every other write: a node outside its tenure records nothing (its records wait in
// the AuditTrail and are logged in full when it stops).
void SociEvents::append_audit(const std::vector<AuditRecord>& records) {
  if (records.empty()) return;
  core_.write([&](soci::session& sql) {
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

auto SociEvents::audit_records(int limit, std::int64_t before_id) -> std::vector<AuditRecord> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<AuditRecord> out;
    const ll before = before_id > 0 ? before_id : std::numeric_limits<ll>::max();
    soci::rowset<soci::row> rs = (sql.prepare << "SELECT id, at_ms, actor, remote, action, target, status, "
                                                 "result FROM audit_log WHERE id < :b "
                                                 "ORDER BY id DESC" +
                                                     core_.dialect().limit(std::max(1, limit)),
                                  soci::use(before));
    for (const auto& r : rs)
      out.push_back({get_i64(r, 0), get_i64(r, 1), get_str(r, 2), get_str(r, 3), get_str(r, 4), get_str(r, 5),
                     static_cast<int>(get_i64(r, 6)), get_str(r, 7)});
    return out;
  });
}

}  // namespace distrib::store
