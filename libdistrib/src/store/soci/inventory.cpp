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
  for (const auto& rep : reports) {
    if (rep.stable_elided)
      digests.emplace_back(rep.system_digest, rep.software_digest);
    else
      digests.emplace_back(
          rep.scope != InventoryScope::software ? inventory_digest(rep.items, InventoryScope::system) : "",
          rep.scope != InventoryScope::system ? inventory_digest(rep.items, InventoryScope::software) : "");
  }
  ItemCatalogue::Staged staged;
  auto out = core_.write([&](soci::session& sql) {
    staged = {};  // a transaction run again after a reconnection starts over
    std::vector<InventoryIngest> results;
    for (std::size_t i = 0; i < reports.size(); ++i)
      results.push_back(
          ingest_one(sql, staged, reports[i], digests[i].first, digests[i].second, received_at));
    return results;
  });
  catalogue_.remember(std::move(staged));
  return out;
}

namespace {
const char* const kSetColumn[] = {"system_items", "software_items"};
InventoryScope part_scope(int part) {
  return part == 0 ? InventoryScope::system : InventoryScope::software;
}
}  // namespace

auto SociInventory::ingest_one(soci::session& sql, ItemCatalogue::Staged& st, const InventoryReport& rep,
                               const std::string& dsys, const std::string& dsoft, std::int64_t received_at)
    -> InventoryIngest {
  const bool sys = rep.scope != InventoryScope::software, soft = rep.scope != InventoryScope::system;
  InventoryIngest out;
  out.items = rep.items.size();
  // The digests first: a report of nothing new needs no more (through ODBC, reading the text
  // columns of the row costs more than the rest of the report).
  std::string old_sys, old_soft, old_sets[2], old_volatile;
  soci::indicator i1 = soci::i_null, i2 = soci::i_null;
  sql << "SELECT system_digest, software_digest FROM inventory_hosts WHERE host_id = :h",
      soci::into(old_sys, i1), soci::into(old_soft, i2), soci::use(rep.host_id);
  const bool exists = sql.got_data();
  if (i1 != soci::i_ok) old_sys.clear();
  if (i2 != soci::i_ok) old_soft.clear();
  auto read_sets = [&](bool sets) {
    soci::rowset<soci::row> rs = (sql.prepare << std::string("SELECT volatile_items") +
                                                     (sets ? ", system_items, software_items" : "") +
                                                     " FROM inventory_hosts WHERE host_id = :h",
                                  soci::use(rep.host_id));
    for (const auto& r : rs) {
      old_volatile = get_str(r, 0);
      if (sets) {
        old_sets[0] = get_str(r, 1);
        old_sets[1] = get_str(r, 2);
      }
    }
  };
  if (!exists) {  // a host with an inventory is registered; others are checked
    int known = 0;
    sql << "SELECT COUNT(*) FROM hosts WHERE host_id = :h", soci::into(known), soci::use(rep.host_id);
    if (!known) {
      out.error = "host " + rep.host_id + " is not registered here; it must register first";
      return out;
    }
  }
  const bool same = exists && (!sys || old_sys == dsys) && (!soft || old_soft == dsoft);
  out.system_digest = sys ? dsys : old_sys;
  out.software_digest = soft ? dsoft : old_soft;
  if (rep.stable_elided && !same) {
    // The digests name items this database does not hold: nothing is stored.
    out.digest_unknown = true;
    out.system_digest = old_sys;
    out.software_digest = old_soft;
    return out;
  }
  out.first = !exists;
  const ll collected = rep.collected_at ? rep.collected_at : received_at, received = received_at;
  // Volatile values: the report's replace those of its scope (a full report's replace them all).
  if (exists && (!same || rep.scope != InventoryScope::full)) read_sets(!same);
  auto vol = parse_volatile(old_volatile);
  std::erase_if(vol, [&](const auto& kv) { return in_scope(rep.scope, kv.first); });
  for (const auto& [k, v] : rep.items)
    if (is_volatile_key(k)) vol[k] = v;
  const auto vol_text = serialize_volatile(vol);
  if (same) {
    // Nothing but volatile values can differ: those are replaced, nothing is recorded.
    out.unchanged = true;
    sql << "UPDATE inventory_hosts SET collected_at = :c, reported_at = :r, volatile_items = :v WHERE "
           "host_id = :h",
        soci::use(collected), soci::use(received), soci::use(vol_text), soci::use(rep.host_id);
    return out;
  }
  std::string new_sets[2] = {old_sets[0], old_sets[1]};
  for (int part = 0; part < 2; ++part) {
    if (!(part == 0 ? sys : soft)) continue;
    const auto scope = part_scope(part);
    std::vector<std::pair<std::string_view, std::string_view>> pairs;
    for (const auto& [k, v] : rep.items)
      if (in_scope(scope, k) && !is_volatile_key(k)) pairs.emplace_back(k, v);
    auto ids = catalogue_.intern(sql, st, pairs);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    new_sets[part] = encode_item_set(ids);
    if (!exists || new_sets[part] == old_sets[part]) continue;
    // What changed: the pairs of the ids that left and came, compared by key.
    const auto old_ids = decode_item_set(old_sets[part]);
    ItemSet gone, came;
    std::set_difference(old_ids.begin(), old_ids.end(), ids.begin(), ids.end(), std::back_inserter(gone));
    std::set_difference(ids.begin(), ids.end(), old_ids.begin(), old_ids.end(), std::back_inserter(came));
    ItemSet both = gone;
    both.insert(both.end(), came.begin(), came.end());
    const auto pairs_of = catalogue_.resolve(sql, st, both);
    InventoryItems before, after;
    for (const auto id : gone)
      if (auto it = pairs_of.find(id); it != pairs_of.end()) before.emplace(it->second.key, it->second.value);
    for (const auto id : came)
      if (auto it = pairs_of.find(id); it != pairs_of.end()) after.emplace(it->second.key, it->second.value);
    for (auto& c : diff_inventory(before, after, scope)) out.changes.push_back(std::move(c));
  }
  std::sort(out.changes.begin(), out.changes.end(),
            [](const InventoryChange& a, const InventoryChange& b) { return a.key < b.key; });
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
           "VALUES (:h, :a, :c, :k, :o, :n)",
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
  if (!exists)
    sql << "INSERT INTO inventory_hosts (host_id, collected_at, reported_at, system_digest, software_digest, "
           "system_items, software_items, volatile_items) VALUES (:h, :c, :r, :s, :w, :si, :wi, :v)",
        soci::use(rep.host_id), soci::use(collected), soci::use(received), soci::use(out.system_digest),
        soci::use(out.software_digest), soci::use(new_sets[0]), soci::use(new_sets[1]), soci::use(vol_text);
  else
    sql << "UPDATE inventory_hosts SET collected_at = :c, reported_at = :r, system_digest = :s, "
           "software_digest = :w, system_items = :si, software_items = :wi, volatile_items = :v WHERE "
           "host_id = :h",
        soci::use(collected), soci::use(received), soci::use(out.system_digest),
        soci::use(out.software_digest), soci::use(new_sets[0]), soci::use(new_sets[1]), soci::use(vol_text),
        soci::use(rep.host_id);
  return out;
}

auto SociInventory::find_inventory(const std::string& host_id) -> std::optional<HostInventory> {
  return core_.guarded([&](soci::session& sql) -> std::optional<HostInventory> {
    HostInventory out;
    out.host_id = host_id;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT collected_at, reported_at, system_items, software_items, volatile_items FROM "
                        "inventory_hosts WHERE host_id = :h",
         soci::use(host_id));
    auto it = rs.begin();
    if (it == rs.end()) return std::nullopt;
    const auto& r = *it;
    out.collected_at = get_i64(r, 0);
    out.reported_at = get_i64(r, 1);
    ItemSet ids = decode_item_set(get_str(r, 2));
    const auto soft = decode_item_set(get_str(r, 3));
    ids.insert(ids.end(), soft.begin(), soft.end());
    out.items = parse_volatile(get_str(r, 4));
    for (auto& [id, pair] : catalogue_.resolve(sql, {}, ids))
      out.items.emplace(std::move(pair.key), std::move(pair.value));
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

// The sets a key can be in: software.* in the software set, system.* and user.* in the system set,
// a shorter prefix in either.
template <class Fn>
void SociInventory::scan_item_sets(soci::session& sql, const std::string& key, bool with_volatile, Fn&& fn) {
  const bool soft = !key.starts_with("system.") && !key.starts_with("user.");
  const bool sys = !key.starts_with("software.");
  soci::rowset<soci::row> rs = sql.prepare << "SELECT host_id, " +
                                                  std::string(with_volatile ? "volatile_items" : "''") +
                                                  ", " + (sys ? "system_items" : "''") + ", " +
                                                  (soft ? "software_items" : "''") + " FROM inventory_hosts";
  for (const auto& r : rs) fn(get_str(r, 0), get_str(r, 1), get_str(r, 2), get_str(r, 3));
}

namespace {
// The catalogue's pairs under a key: `SELECT id, item_key, item_value` with the condition.
soci::rowset<soci::row> pairs_under(soci::session& sql, const std::string& key, bool prefix,
                                    const std::string& upper) {
  if (prefix)
    return (
        sql.prepare << "SELECT id, item_key, item_value FROM inventory_catalogue WHERE item_key >= :a AND "
                       "item_key < :b",
        soci::use(key), soci::use(upper));
  return (sql.prepare << "SELECT id, item_key, item_value FROM inventory_catalogue WHERE item_key = :a",
          soci::use(key));
}
bool key_under(std::string_view k, const std::string& key, bool prefix) {
  return prefix ? k.starts_with(key) : k == key;
}
// Bits by item id.
struct IdBits {
  std::vector<std::uint64_t> words;
  void set(ItemId id) {
    if (id / 64 >= words.size()) words.resize(id / 64 + 1, 0);
    words[id / 64] |= 1ull << (id % 64);
  }
  bool test(ItemId id) const { return id / 64 < words.size() && (words[id / 64] >> (id % 64) & 1u); }
  bool empty() const { return words.empty(); }
};
}  // namespace

auto SociInventory::inventory_values(const std::string& key, bool prefix) -> std::vector<InventoryValue> {
  return values_under(key, prefix, nullptr);
}

auto SociInventory::inventory_values_of(const std::string& key, bool prefix,
                                        const std::vector<std::string>& hosts)
    -> std::vector<InventoryValue> {
  return values_under(key, prefix, &hosts);
}

auto SociInventory::values_under(const std::string& key, bool prefix, const std::vector<std::string>* hosts)
    -> std::vector<InventoryValue> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<InventoryValue> out;
    // Keys are UTF-8: U+10FFFF sorts after every key that starts with the prefix.
    const std::string upper = key + "\xf4\x8f\xbf\xbf";
    std::unordered_map<ItemId, ItemCatalogue::Pair> pairs;
    IdBits bits;
    for (const auto& r : pairs_under(sql, key, prefix, upper)) {
      const auto id = static_cast<ItemId>(get_i64(r, 0));
      bits.set(id);
      pairs.emplace(id, ItemCatalogue::Pair{get_str(r, 1), get_str(r, 2)});
    }
    const bool with_volatile = prefix || is_volatile_key(key);
    if ((pairs.empty() && !with_volatile) || (hosts && hosts->empty())) return out;
    scan_item_sets(
        sql, key, with_volatile,
        [&](const std::string& host, const std::string& vol, const std::string& a, const std::string& b) {
          if (hosts && !std::binary_search(hosts->begin(), hosts->end(), host)) return;
          for (const auto* text : {&a, &b})
            if (!bits.empty())
              for_each_item(*text, [&](ItemId id) {
                if (bits.test(id)) {
                  const auto& p = pairs.at(id);
                  out.push_back({host, p.key, p.value});
                }
              });
          if (!vol.empty())
            for (auto& [k, v] : parse_volatile(vol))
              if (key_under(k, key, prefix)) out.push_back({host, k, std::move(v)});
        });
    return out;
  });
}

auto SociInventory::match_inventory(
    const std::string& key, bool prefix, const std::function<bool(std::string_view key)>& key_ok,
    const std::function<bool(std::string_view key, std::string_view value)>& value_ok) -> ItemMatch {
  return core_.guarded([&](soci::session& sql) {
    ItemMatch out;
    const std::string upper = key + "\xf4\x8f\xbf\xbf";
    // Each distinct pair is judged once; hosts are then told apart by the ids they hold.
    IdBits have, ok;
    for (const auto& r : pairs_under(sql, key, prefix, upper)) {
      const auto id = static_cast<ItemId>(get_i64(r, 0));
      const auto k = get_str(r, 1);
      if (!key_ok(k)) continue;
      have.set(id);
      if (value_ok(k, get_str(r, 2))) ok.set(id);
    }
    const bool with_volatile = prefix || is_volatile_key(key);
    if (have.empty() && !with_volatile) return out;
    scan_item_sets(
        sql, key, with_volatile,
        [&](const std::string& host, const std::string& vol, const std::string& a, const std::string& b) {
          bool has = false, accepted = false;
          for (const auto* text : {&a, &b})
            if (!have.empty() && !accepted)
              for_each_item(*text, [&](ItemId id) {
                if (have.test(id)) {
                  has = true;
                  if (ok.test(id)) accepted = true;
                }
              });
          if (!accepted && !vol.empty())
            for (const auto& [k, v] : parse_volatile(vol))
              if (key_under(k, key, prefix) && key_ok(k)) {
                has = true;
                if (value_ok(k, v)) accepted = true;
              }
          if (has) out.having.push_back(host);
          if (accepted) out.accepted.push_back(host);
        });
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
