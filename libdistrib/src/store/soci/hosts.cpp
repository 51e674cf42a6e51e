// SociHosts: host registration, approval, last contacts, keys, silence.
#include "store/soci/soci_store.h"

namespace distrib::store {

namespace {
// The keys a host is found by (hosts_with_key): its name lower-cased and one row per address.
void write_host_keys(soci::session& sql, const std::string& host_id, const std::string& name,
                     const std::vector<std::string>& addresses, bool replace) {
  const auto key = normalise_host_key(HostKeyMode::name, name);
  sql << "UPDATE hosts SET name_key = :k WHERE host_id = :i", soci::use(key), soci::use(host_id);
  if (replace) sql << "DELETE FROM host_addresses WHERE host_id = :i", soci::use(host_id);
  std::vector<std::string> distinct = addresses;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::string address;
  soci::statement st = (sql.prepare << "INSERT INTO host_addresses (address, host_id) VALUES (:a, :i)",
                        soci::use(address), soci::use(host_id));
  for (const auto& a : distinct) {
    address = a;
    st.execute(true);
  }
}
}  // namespace

void rebuild_host_keys(soci::session& sql) {
  std::vector<std::tuple<std::string, std::string, std::string>> hosts;
  soci::rowset<soci::row> rs = (sql.prepare << "SELECT host_id, name, addresses FROM hosts");
  for (const auto& r : rs) hosts.emplace_back(get_str(r, 0), get_str(r, 1), get_str(r, 2));
  sql << "DELETE FROM host_addresses";
  for (const auto& [id, name, addresses] : hosts)
    write_host_keys(sql, id, name, split_addresses(addresses), false);
}

auto SociHosts::upsert_host(const Host& h, bool report_upward) -> HostChange {
  return core_.write([&](soci::session& sql) {
    HostChange out;
    std::optional<Host> old = select_host(sql, h.host_id);
    const auto addresses = join_addresses(h.addresses);
    const std::string role(to_string(h.role));
    const std::string via = h.via.empty() ? h.host_id : h.via;
    const ll now = fs::now_unix();
    const ll seen = std::max<ll>(h.last_seen ? h.last_seen : now, old ? old->last_seen : 0);
    if (!old) {
      const ll registered = h.registered_at ? h.registered_at : now;
      const int approved = h.approved ? 1 : 0;
      sql << "INSERT INTO hosts (host_id, name, addresses, os, role, parent, agent_version, "
             "registered_at, last_seen, via, approved, up_version) VALUES (:i, :n, :a, :o, :r, "
             ":p, :v, :g, :s, :w, :ap, 1)",
          soci::use(h.host_id), soci::use(h.name), soci::use(addresses), soci::use(h.os), soci::use(role),
          soci::use(h.parent), soci::use(h.agent_version), soci::use(registered), soci::use(seen),
          soci::use(via), soci::use(approved);
      write_host_keys(sql, h.host_id, h.name, h.addresses, false);
      core_.emit(sql, "host.registered", Severity::info, 0, h.host_id, h.name,
                 std::string(to_string(h.role)) + " " + h.name + " registered" +
                     (h.addresses.empty() ? std::string() : " from " + h.addresses.front()));
      out.created = out.changed = true;
      return out;
    }
    out.previous_via = old->via;
    Host updated = h;
    updated.via = via;
    out.changed = host_differs(*old, updated);
    if (out.changed) {
      std::string what;
      if (old->name != h.name) what += "renamed from " + old->name;
      if (old->addresses != h.addresses)
        what += std::string(what.empty() ? "" : ", ") + "address " + join_addresses(old->addresses) + " -> " +
                addresses;
      if (old->via != via) what += std::string(what.empty() ? "" : ", ") + "moved below " + via;
      if (!what.empty())
        core_.emit(sql, "host.changed", Severity::info, 0, h.host_id, h.name, "host " + h.name + " " + what);
    }
    const int bump = out.changed || report_upward ? 1 : 0;
    sql << "UPDATE hosts SET name = :n, addresses = :a, os = :o, role = :r, parent = :p, "
           "agent_version = :v, last_seen = :s, via = :w, up_version = up_version + :b "
           "WHERE host_id = :i",
        soci::use(h.name), soci::use(addresses), soci::use(h.os), soci::use(role), soci::use(h.parent),
        soci::use(h.agent_version), soci::use(seen), soci::use(via), soci::use(bump), soci::use(h.host_id);
    if (old->name != h.name || old->addresses != h.addresses)
      write_host_keys(sql, h.host_id, h.name, h.addresses, true);
    return out;
  });
}

auto SociHosts::approve_hosts(const std::vector<std::string>& host_ids) -> int {
  return core_.write([&](soci::session& sql) {
    int changed = 0;
    for (const auto& id : host_ids) {
      soci::statement st = (sql.prepare << "UPDATE hosts SET approved = 1, up_version = "
                                           "up_version + 1 WHERE host_id = :h AND approved = 0",
                            soci::use(id));
      st.execute(true);
      changed += static_cast<int>(st.get_affected_rows());
    }
    return changed;
  });
}

void SociHosts::remove_host(const std::string& host_id) {
  core_.write([&](soci::session& sql) {
    sql << "DELETE FROM host_addresses WHERE host_id = :h", soci::use(host_id);
    sql << "DELETE FROM hosts WHERE host_id = :h", soci::use(host_id);
  });
}

void SociHosts::touch_hosts(const std::vector<std::pair<std::string, std::int64_t>>& seen) {
  if (seen.empty()) return;
  core_.write([&](soci::session& sql) {
    std::string id;
    ll when = 0;
    soci::statement st = (sql.prepare << kTouchHostSql, soci::use(when), soci::use(id), soci::use(when));
    for (const auto& [h, t] : seen) {
      id = h;
      when = t;
      st.execute(true);
    }
  });
}

auto SociHosts::find_host(const std::string& host_id) -> std::optional<Host> {
  return core_.guarded([&](soci::session& sql) { return select_host(sql, host_id); });
}

auto SociHosts::hosts_with_key(HostKeyMode mode, const std::string& key) -> std::vector<Host> {
  if (mode == HostKeyMode::host_id) return {};
  return core_.guarded([&](soci::session& sql) {
    std::vector<Host> out;
    const std::string value = normalise_host_key(mode, key);
    // Through an index (hosts_name_key, the key of host_addresses): every registration asks.
    soci::rowset<soci::row> rs =
        (sql.prepare << (mode == HostKeyMode::name ? kHostsByNameSql : kHostsByAddressSql), soci::use(value));
    for (const auto& r : rs) out.push_back(host_from_row(r));
    return out;
  });
}

auto SociHosts::list_hosts() -> std::vector<Host> {
  return core_.guarded([&](soci::session& sql) -> std::vector<Host> {
    std::vector<Host> out;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT " << kHostColumns << " FROM hosts ORDER BY name, host_id");
    for (const auto& r : rs) out.push_back(host_from_row(r));
    return out;
  });
}

auto SociHosts::select_host(soci::session& sql, const std::string& host_id) -> std::optional<Host> {
  soci::rowset<soci::row> rs = (sql.prepare << kHostByIdSql, soci::use(host_id));
  for (const auto& r : rs) return host_from_row(r);
  return std::nullopt;
}

auto SociHosts::mark_silent_hosts(std::int64_t cutoff) -> int {
  // A read decides whether a write is needed (called every few seconds).
  const ll c = cutoff;
  const bool any = core_.guarded([&](soci::session& sql) {
    int n = 0;
    sql << "SELECT COUNT(*) FROM hosts WHERE (silent = 0 AND last_seen < :c) OR (silent = 1 AND last_seen >= "
           ":c2)",
        soci::into(n), soci::use(c), soci::use(c);
    return n > 0;
  });
  if (!any) return 0;
  return core_.write([&](soci::session& sql) {
    struct Row {
      std::string id, name, role;
      ll seen;
      int silent;
    };
    std::vector<Row> rows;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT host_id, name, role, last_seen, silent FROM hosts WHERE "
                        "(silent = 0 AND last_seen < :c) OR (silent = 1 AND last_seen >= :c2)",
         soci::use(c), soci::use(c));
    for (const auto& r : rs)
      rows.push_back(
          {get_str(r, 0), get_str(r, 1), get_str(r, 2), get_i64(r, 3), static_cast<int>(get_i64(r, 4))});
    for (const auto& r : rows) {
      const int now_silent = r.silent ? 0 : 1;
      sql << "UPDATE hosts SET silent = :s WHERE host_id = :h", soci::use(now_silent), soci::use(r.id);
      if (now_silent)
        core_.emit(sql, "host.silent", Severity::warning, 0, r.id, r.name,
                   r.role + " " + r.name + " has been silent since " + format_rfc3339_ms(r.seen * 1000));
      else
        core_.emit(sql, "host.returned", Severity::info, 0, r.id, r.name,
                   r.role + " " + r.name + " is in contact again");
    }
    return static_cast<int>(rows.size());
  });
}

}  // namespace distrib::store
