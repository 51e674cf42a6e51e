// SociEnrolment: hosts' enrolments (requests, decisions, certificates, revocations) and the
// enrolment tokens.
#include "store/soci/soci_store.h"

namespace distrib::store {
namespace {

constexpr const char* kEnrolmentColumns =
    "host_id, name, role, address, via, fingerprint, request_pem, state, certificate_pem, serial, not_after, "
    "requested_at, decided_at, decided_by, token_id";

Enrolment enrolment_from_row(const soci::row& r) {
  Enrolment e;
  e.host_id = get_str(r, 0);
  e.name = get_str(r, 1);
  e.role = get_str(r, 2);
  e.address = get_str(r, 3);
  e.via = get_str(r, 4);
  e.fingerprint = get_str(r, 5);
  e.request_pem = get_str(r, 6);
  e.state = parse_enrolment_state(get_str(r, 7));
  e.certificate_pem = get_str(r, 8);
  e.serial = static_cast<std::uint64_t>(get_i64(r, 9));
  e.not_after = get_i64(r, 10);
  e.requested_at = get_i64(r, 11);
  e.decided_at = get_i64(r, 12);
  e.decided_by = get_str(r, 13);
  e.token_id = get_str(r, 14);
  return e;
}

constexpr const char* kTokenColumns =
    "id, secret_hash, created_at, expires_at, uses_left, group_name, created_by, revoked";

EnrolToken token_from_row(const soci::row& r) {
  EnrolToken t;
  t.id = get_str(r, 0);
  t.secret_hash = get_str(r, 1);
  t.created_at = get_i64(r, 2);
  t.expires_at = get_i64(r, 3);
  t.uses_left = static_cast<int>(get_i64(r, 4));
  t.group = get_str(r, 5);
  t.created_by = get_str(r, 6);
  t.revoked = get_i64(r, 7) != 0;
  return t;
}

// Rows changed by `st`, executed.
long long execute_counted(soci::statement& st) {
  st.execute(true);
  return st.get_affected_rows();
}

}  // namespace

auto SociEnrolment::select_enrolments(soci::session& sql, const char* column,
                                      const std::optional<std::string>& value, bool lock)
    -> std::vector<Enrolment> {
  std::vector<Enrolment> out;
  const std::string v = value.value_or(std::string());
  const int all = value ? 0 : 1;
  soci::rowset<soci::row> rs =
      (sql.prepare << std::string("SELECT ") + kEnrolmentColumns + " FROM enrolments WHERE " + column +
                          " = :v OR 1 = :a ORDER BY requested_at, host_id" +
                          (lock ? core_.dialect().lock_rows : std::string()),
       soci::use(v), soci::use(all));
  for (const auto& r : rs) out.push_back(enrolment_from_row(r));
  return out;
}

auto SociEnrolment::select_enrolment(soci::session& sql, const std::string& host_id, bool lock)
    -> std::optional<Enrolment> {
  auto v = select_enrolments(sql, "host_id", host_id, lock);
  if (v.empty()) return std::nullopt;
  return std::move(v.front());
}

auto SociEnrolment::request_enrolment(const Enrolment& e) -> Enrolment {
  return core_.write([&](soci::session& sql) {
    const auto cur = select_enrolment(sql, e.host_id, true);
    if (cur && cur->state != EnrolmentState::pending && cur->fingerprint == e.fingerprint) return *cur;
    if (cur && cur->state == EnrolmentState::accepted)
      throw Error(ErrorKind::conflict,
                  "host " + cur->name + " (" + e.host_id + ") is enrolled with another key; revoke it first");
    // A new request: whatever was decided on an earlier one (rejected, revoked, or a pending
    // request replaced) goes; a revoked certificate stays in revoked_certificates.
    Enrolment out;
    out.host_id = e.host_id;
    out.name = e.name;
    out.role = e.role;
    out.address = e.address;
    out.via = e.via;
    out.fingerprint = e.fingerprint;
    out.request_pem = e.request_pem;
    out.state = EnrolmentState::pending;
    out.requested_at = e.requested_at ? e.requested_at : fs::now_unix();
    if (cur) sql << "DELETE FROM enrolments WHERE host_id = :h", soci::use(e.host_id);
    const std::string state(to_string(out.state));
    const ll zero = 0, requested = out.requested_at;
    const std::string none;
    sql << std::string("INSERT INTO enrolments (") + kEnrolmentColumns +
               ") VALUES (:h, :n, :r, :ad, :v, :f, :rq, :s, :c, :sn, :na, :ra, :da, :db, :t)",
        soci::use(out.host_id), soci::use(out.name), soci::use(out.role), soci::use(out.address),
        soci::use(out.via), soci::use(out.fingerprint), soci::use(out.request_pem), soci::use(state),
        soci::use(none), soci::use(zero), soci::use(zero), soci::use(requested), soci::use(zero),
        soci::use(none), soci::use(none);
    return out;
  });
}

auto SociEnrolment::find_enrolment(const std::string& host_id) -> std::optional<Enrolment> {
  return core_.guarded([&](soci::session& sql) { return select_enrolment(sql, host_id, false); });
}

auto SociEnrolment::list_enrolments(std::optional<EnrolmentState> state) -> std::vector<Enrolment> {
  return core_.guarded([&](soci::session& sql) {
    return select_enrolments(sql, "state",
                             state ? std::optional<std::string>(to_string(*state)) : std::nullopt);
  });
}

auto SociEnrolment::decide_enrolment(const Enrolment& d) -> bool {
  const bool accept = d.state == EnrolmentState::accepted;
  if (!accept && d.state != EnrolmentState::rejected)
    throw Error(ErrorKind::invalid_argument, "an enrolment of host " + d.host_id + " cannot be decided as " +
                                                 std::string(to_string(d.state)) +
                                                 " (expected accepted or rejected)");
  return core_.write([&](soci::session& sql) {
    const std::string state(to_string(d.state)), pending(to_string(EnrolmentState::pending));
    const std::string certificate = accept ? d.certificate_pem : std::string();
    const ll serial = accept ? static_cast<ll>(d.serial) : 0, not_after = accept ? d.not_after : 0;
    const ll decided_at = d.decided_at ? d.decided_at : fs::now_unix();
    soci::statement st =
        (sql.prepare << "UPDATE enrolments SET state = :s, certificate_pem = :c, serial = :sn, not_after = "
                        ":na, decided_at = :da, decided_by = :db, token_id = :t WHERE host_id = :h AND "
                        "state = :p AND fingerprint = :f",
         soci::use(state), soci::use(certificate), soci::use(serial), soci::use(not_after),
         soci::use(decided_at), soci::use(d.decided_by), soci::use(d.token_id), soci::use(d.host_id),
         soci::use(pending), soci::use(d.fingerprint));
    return execute_counted(st) == 1;
  });
}

auto SociEnrolment::renew_certificate(const std::string& host_id, const std::string& fingerprint,
                                      const std::string& request_pem, const std::string& certificate_pem,
                                      std::uint64_t serial, std::int64_t not_after) -> bool {
  return core_.write([&](soci::session& sql) {
    const std::string accepted(to_string(EnrolmentState::accepted));
    const ll sn = static_cast<ll>(serial), na = not_after;
    soci::statement st =
        (sql.prepare << "UPDATE enrolments SET fingerprint = :f, request_pem = :rq, certificate_pem = :c, "
                        "serial = :sn, not_after = :na WHERE host_id = :h AND state = :s",
         soci::use(fingerprint), soci::use(request_pem), soci::use(certificate_pem), soci::use(sn),
         soci::use(na), soci::use(host_id), soci::use(accepted));
    return execute_counted(st) == 1;
  });
}

auto SociEnrolment::revoke_enrolment(const std::string& host_id, std::int64_t at, const std::string& by)
    -> bool {
  return core_.write([&](soci::session& sql) {
    const auto cur = select_enrolment(sql, host_id, true);
    if (!cur || cur->state != EnrolmentState::accepted) return false;
    const std::string revoked(to_string(EnrolmentState::revoked));
    const ll when = at, serial = static_cast<ll>(cur->serial), not_after = cur->not_after;
    sql << "UPDATE enrolments SET state = :s, decided_at = :da, decided_by = :db WHERE host_id = :h",
        soci::use(revoked), soci::use(when), soci::use(by), soci::use(host_id);
    int listed = 0;
    sql << "SELECT COUNT(*) FROM revoked_certificates WHERE serial = :sn", soci::into(listed),
        soci::use(serial);
    if (!listed)
      sql << "INSERT INTO revoked_certificates (serial, host_id, not_after, revoked_at, revoked_by) VALUES "
             "(:sn, :h, :na, :a, :b)",
          soci::use(serial), soci::use(host_id), soci::use(not_after), soci::use(when), soci::use(by);
    return true;
  });
}

auto SociEnrolment::revoked_serials() -> std::vector<std::uint64_t> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<std::uint64_t> out;
    soci::rowset<soci::row> rs = (sql.prepare << "SELECT serial FROM revoked_certificates");
    for (const auto& r : rs) out.push_back(static_cast<std::uint64_t>(get_i64(r, 0)));
    std::sort(out.begin(), out.end());
    return out;
  });
}

auto SociEnrolment::select_tokens(soci::session& sql, const std::string* secret_hash, bool lock)
    -> std::vector<EnrolToken> {
  std::vector<EnrolToken> out;
  const std::string hash = secret_hash ? *secret_hash : std::string();
  const int all = secret_hash ? 0 : 1;
  soci::rowset<soci::row> rs =
      (sql.prepare << std::string("SELECT ") + kTokenColumns +
                          " FROM enrol_tokens WHERE secret_hash = :h OR 1 = :a ORDER BY created_at, id" +
                          (lock ? core_.dialect().lock_rows : std::string()),
       soci::use(hash), soci::use(all));
  for (const auto& r : rs) out.push_back(token_from_row(r));
  return out;
}

void SociEnrolment::create_enrol_token(const EnrolToken& t) {
  core_.write([&](soci::session& sql) {
    int exists = 0;
    sql << "SELECT COUNT(*) FROM enrol_tokens WHERE id = :i", soci::into(exists), soci::use(t.id);
    if (exists) throw Error(ErrorKind::conflict, "enrolment token \"" + t.id + "\" already exists");
    sql << "SELECT COUNT(*) FROM enrol_tokens WHERE secret_hash = :h", soci::into(exists),
        soci::use(t.secret_hash);
    if (exists)
      throw Error(ErrorKind::conflict,
                  "an enrolment token with the secret of \"" + t.id + "\" exists already; make a new secret");
    const ll created = t.created_at ? t.created_at : fs::now_unix(), expires = t.expires_at;
    const int uses = t.uses_left, revoked = t.revoked ? 1 : 0;
    sql << std::string("INSERT INTO enrol_tokens (") + kTokenColumns +
               ") VALUES (:i, :h, :c, :e, :u, :g, :b, :r)",
        soci::use(t.id), soci::use(t.secret_hash), soci::use(created), soci::use(expires), soci::use(uses),
        soci::use(t.group), soci::use(t.created_by), soci::use(revoked);
  });
}

auto SociEnrolment::use_enrol_token(const std::string& secret_hash, std::int64_t now)
    -> std::optional<EnrolToken> {
  return core_.write([&](soci::session& sql) -> std::optional<EnrolToken> {
    const auto found = select_tokens(sql, &secret_hash, true);
    if (found.empty()) return std::nullopt;
    const auto& t = found.front();
    if (t.revoked || (t.expires_at != 0 && t.expires_at <= now) || t.uses_left == 0 || t.uses_left < -1)
      return std::nullopt;
    if (t.uses_left > 0) {
      soci::statement st =
          (sql.prepare << "UPDATE enrol_tokens SET uses_left = uses_left - 1 WHERE id = :i AND "
                          "uses_left > 0",
           soci::use(t.id));
      if (execute_counted(st) != 1) return std::nullopt;
    }
    return t;
  });
}

auto SociEnrolment::list_enrol_tokens() -> std::vector<EnrolToken> {
  return core_.guarded([&](soci::session& sql) { return select_tokens(sql, nullptr); });
}

auto SociEnrolment::revoke_enrol_token(const std::string& id) -> bool {
  return core_.write([&](soci::session& sql) {
    soci::statement st =
        (sql.prepare << "UPDATE enrol_tokens SET revoked = 1 WHERE id = :i AND revoked = 0", soci::use(id));
    return execute_counted(st) == 1;
  });
}

}  // namespace distrib::store
