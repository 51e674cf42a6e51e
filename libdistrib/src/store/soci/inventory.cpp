// SociInventory: inventory reports, history, values, user fields, and collected files.
#include "store/soci/soci_store.h"

namespace distrib::store {

auto SociInventory::ingest_inventory(const InventoryReport& rep, std::int64_t received_at)
    -> InventoryIngest {
  auto out = ingest_inventory_batch({rep}, received_at).front();
  if (!out.error.empty()) throw Error(ErrorKind::not_found, out.error);
  return out;
}

auto SociInventory::ingest_inventory_batch(const std::vector<InventoryReport>& reports,
                                           std::int64_t received_at) -> std::vector<InventoryIngest> {
  // Digests are computed before the write lock is taken.
  std::vector<std::pair<std::string, std::string>> digests;
  for (const auto& rep : reports)
    digests.emplace_back(
        rep.scope != InventoryScope::software ? inventory_digest(rep.items, InventoryScope::system) : "",
        rep.scope != InventoryScope::system ? inventory_digest(rep.items, InventoryScope::software) : "");
  return core_.write([&](soci::session& sql) {
    std::vector<InventoryIngest> out;
    for (std::size_t i = 0; i < reports.size(); ++i)
      out.push_back(ingest_one(sql, reports[i], digests[i].first, digests[i].second, received_at));
    return out;
  });
}

auto SociInventory::ingest_one(soci::session& sql, const InventoryReport& rep, const std::string& dsys,
                               const std::string& dsoft, std::int64_t received_at) -> InventoryIngest {
  const bool sys = rep.scope != InventoryScope::software, soft = rep.scope != InventoryScope::system;
  {
    InventoryIngest out;
    out.items = rep.items.size();
    std::string old_sys, old_soft;
    soci::indicator i1 = soci::i_null, i2 = soci::i_null;
    sql << "SELECT system_digest, software_digest FROM inventory_hosts WHERE host_id = :h",
        soci::into(old_sys, i1), soci::into(old_soft, i2), soci::use(rep.host_id);
    const bool exists = sql.got_data();
    if (!exists) {  // a host with an inventory is registered; others are checked
      int known = 0;
      sql << "SELECT COUNT(*) FROM hosts WHERE host_id = :h", soci::into(known), soci::use(rep.host_id);
      if (!known) {
        out.error = "host " + rep.host_id + " is not registered here; it must register first";
        return out;
      }
    }
    out.first = !exists;
    const ll collected = rep.collected_at ? rep.collected_at : received_at, received = received_at;
    std::vector<std::string> del_keys, ins_keys, ins_values;
    if (exists && (!sys || old_sys == dsys) && (!soft || old_soft == dsoft)) {
      // Nothing but volatile values can differ: those are replaced, nothing is recorded.
      out.unchanged = true;
      for (const auto& [k, v] : rep.items)
        if (is_volatile_key(k)) {
          ins_keys.push_back(k);
          ins_values.push_back(v);
        }
      del_keys = ins_keys;
    } else {
      InventoryItems current;
      if (exists) {
        soci::rowset<soci::row> rs =
            (sql.prepare << "SELECT item_key, item_value FROM inventory_items WHERE host_id = :h",
             soci::use(rep.host_id));
        for (const auto& r : rs)
          if (auto k = get_str(r, 0); in_scope(rep.scope, k)) current.emplace(std::move(k), get_str(r, 1));
        out.changes = diff_inventory(current, rep.items, rep.scope);
      }
      for (const auto& [k, v] : current)
        if (auto it = rep.items.find(k); it == rep.items.end() || it->second != v) del_keys.push_back(k);
      for (const auto& [k, v] : rep.items)
        if (auto it = current.find(k); it == current.end() || it->second != v) {
          ins_keys.push_back(k);
          ins_values.push_back(v);
        }
    }
    if (!del_keys.empty()) {
      std::vector<std::string> hosts(del_keys.size(), rep.host_id);
      sql << "DELETE FROM inventory_items WHERE host_id = :h AND item_key = :k", soci::use(hosts),
          soci::use(del_keys);
    }
    if (!ins_keys.empty()) {
      std::vector<std::string> hosts(ins_keys.size(), rep.host_id);
      sql << "INSERT INTO inventory_items (host_id, item_key, item_value) VALUES (:h, :k, :v)",
          soci::use(hosts), soci::use(ins_keys), soci::use(ins_values);
    }
    std::vector<std::string> h_kind, h_key, h_old, h_new;
    if (out.first) {
      h_kind.emplace_back("added");
      h_key.emplace_back("*");
      h_old.emplace_back();
      h_new.push_back("first inventory (" + std::string(to_string(rep.scope)) +
                      "): " + std::to_string(rep.items.size()) + " items");
    }
    for (auto& c : out.changes) {
      c.at = received;
      h_kind.emplace_back(to_string(c.kind));
      h_key.push_back(c.key);
      h_old.push_back(c.old_value);
      h_new.push_back(c.new_value);
    }
    if (!h_key.empty()) {
      std::vector<std::string> hosts(h_key.size(), rep.host_id);
      std::vector<ll> at(h_key.size(), received);
      sql << "INSERT INTO inventory_history (host_id, at, change_kind, item_key, old_value, new_value) "
             "VALUES "
             "(:h, :a, :c, :k, :o, :n)",
          soci::use(hosts), soci::use(at), soci::use(h_kind), soci::use(h_key), soci::use(h_old),
          soci::use(h_new);
    }
    if (!out.changes.empty()) {
      std::string sample;
      for (std::size_t k = 0; k < out.changes.size() && k < 3; ++k)
        sample += (k ? ", " : "") + std::string(to_string(out.changes[k].kind)) + " " + out.changes[k].key;
      core_.emit(sql, "inventory.changed", Severity::info, 0, rep.host_id, "",
                 std::to_string(out.changes.size()) + " inventory change(s): " + sample +
                     (out.changes.size() > 3 ? ", ..." : ""));
    }
    const std::string new_sys = sys ? dsys : old_sys, new_soft = soft ? dsoft : old_soft;
    if (!exists)
      sql << "INSERT INTO inventory_hosts (host_id, collected_at, reported_at, system_digest, "
             "software_digest) "
             "VALUES (:h, :c, :r, :s, :w)",
          soci::use(rep.host_id), soci::use(collected), soci::use(received), soci::use(new_sys),
          soci::use(new_soft);
    else
      sql << "UPDATE inventory_hosts SET collected_at = :c, reported_at = :r, system_digest = :s, "
             "software_digest = :w "
             "WHERE host_id = :h",
          soci::use(collected), soci::use(received), soci::use(new_sys), soci::use(new_soft),
          soci::use(rep.host_id);
    return out;
  }
}

auto SociInventory::find_inventory(const std::string& host_id) -> std::optional<HostInventory> {
  return core_.guarded([&](soci::session& sql) -> std::optional<HostInventory> {
    HostInventory out;
    out.host_id = host_id;
    ll collected = 0, reported = 0;
    sql << "SELECT collected_at, reported_at FROM inventory_hosts WHERE host_id = :h", soci::into(collected),
        soci::into(reported), soci::use(host_id);
    if (!sql.got_data()) return std::nullopt;
    out.collected_at = collected;
    out.reported_at = reported;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT item_key, item_value FROM inventory_items WHERE host_id = :h",
         soci::use(host_id));
    for (const auto& r : rs) out.items.emplace(get_str(r, 0), get_str(r, 1));
    return out;
  });
}

auto SociInventory::inventory_history(const std::string& host_id, int limit) -> std::vector<InventoryChange> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<InventoryChange> out;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT at, change_kind, item_key, old_value, new_value FROM inventory_history WHERE "
                        "host_id = :h ORDER BY id DESC" +
                            core_.dialect().limit(std::max(1, limit)),
         soci::use(host_id));
    for (const auto& r : rs)
      out.push_back({parse_inventory_change_kind(get_str(r, 1)), get_str(r, 2), get_str(r, 3), get_str(r, 4),
                     get_i64(r, 0)});
    return out;
  });
}

auto SociInventory::inventory_values(const std::string& key, bool prefix) -> std::vector<InventoryValue> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<InventoryValue> out;
    // Keys are UTF-8: U+10FFFF sorts after every key that starts with the prefix.
    const std::string upper = key + "\xf4\x8f\xbf\xbf";
    soci::rowset<soci::row> rs =
        prefix
            ? (sql.prepare
                   << "SELECT host_id, item_key, item_value FROM inventory_items WHERE item_key >= :a "
                      "AND item_key < :b",
               soci::use(key), soci::use(upper))
            : (sql.prepare << "SELECT host_id, item_key, item_value FROM inventory_items WHERE item_key = :a",
               soci::use(key));
    for (const auto& r : rs) out.push_back({get_str(r, 0), get_str(r, 1), get_str(r, 2)});
    return out;
  });
}

auto SociInventory::inventoried_hosts() -> std::vector<std::string> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<std::string> out;
    soci::rowset<soci::row> rs = sql.prepare << "SELECT host_id FROM inventory_hosts";
    for (const auto& r : rs) out.push_back(get_str(r, 0));
    return out;
  });
}

void SociInventory::put_inventory_field(const InventoryField& f) {
  core_.write([&](soci::session& sql) {
    const std::string type(to_string(f.type));
    const auto allowed = join_addresses(f.allowed);
    sql << core_.dialect().upsert("inventory_fields", {"name"}, {"field_type", "allowed", "description"}),
        soci::use(f.name), soci::use(type), soci::use(allowed), soci::use(f.description);
  });
}

auto SociInventory::list_inventory_fields() -> std::vector<InventoryField> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<InventoryField> out;
    soci::rowset<soci::row> rs =
        sql.prepare << "SELECT name, field_type, allowed, description FROM inventory_fields ORDER BY name";
    for (const auto& r : rs)
      out.push_back({get_str(r, 0), parse_inventory_field_type(get_str(r, 1)), split_addresses(get_str(r, 2)),
                     get_str(r, 3)});
    return out;
  });
}

auto SociInventory::delete_inventory_field(const std::string& name) -> bool {
  return core_.write([&](soci::session& sql) {
    soci::statement st = (sql.prepare << "DELETE FROM inventory_fields WHERE name = :n", soci::use(name));
    st.execute(true);
    return st.get_affected_rows() > 0;
  });
}

void SociInventory::record_collected_file(const CollectedFile& f) {
  core_.write([&](soci::session& sql) {
    const ll job = f.job_id, size = f.size, at = f.stored_at ? f.stored_at : fs::now_unix();
    sql << core_.dialect().upsert("collected_files", {"job_id", "host_id", "path"},
                                  {"byte_size", "sha256", "stored_at"}),
        soci::use(job), soci::use(f.host_id), soci::use(f.path), soci::use(size), soci::use(f.sha256),
        soci::use(at);
  });
}

auto SociInventory::collected_files(std::int64_t job_id) -> std::vector<CollectedFile> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<CollectedFile> out;
    const ll job = job_id;
    soci::rowset<soci::row> rs =
        (sql.prepare
             << "SELECT c.host_id, h.name, c.path, c.byte_size, c.sha256, c.stored_at FROM collected_files c "
                "LEFT JOIN hosts h ON h.host_id = c.host_id WHERE c.job_id = :j ORDER BY h.name, c.path",
         soci::use(job));
    for (const auto& r : rs)
      out.push_back(
          {job_id, get_str(r, 0), get_str(r, 1), get_str(r, 2), get_i64(r, 3), get_str(r, 4), get_i64(r, 5)});
    return out;
  });
}

}  // namespace distrib::store
