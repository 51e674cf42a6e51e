// Inventory items interned: the set encoding, the catalogue of pairs and its cache, and the
// conversion of per-item rows (item_catalogue.h).
#include "store/soci/item_catalogue.h"

#include <distrib/model/inventory.h>

#include <boost/json.hpp>

#include <algorithm>
#include <map>

namespace distrib::store {

namespace {
constexpr char kDigits[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
// Past this many pairs the cache starts over (about 150 bytes each).
constexpr std::size_t kCacheMax = 400000;
// Hashes and ids asked per statement (Oracle takes at most 1,000 values in a list).
constexpr std::size_t kInList = 500;

template <class T>
std::string in_list(const std::vector<T>& values, std::size_t from, std::size_t to) {
  std::string s;
  for (std::size_t i = from; i < to; ++i) s += (i > from ? "," : "") + std::to_string(values[i]);
  return s;
}
}  // namespace

std::string encode_item_set(const ItemSet& ids) {
  std::string out;
  out.reserve(ids.size() * 2);
  ItemId prev = 0;
  for (const auto id : ids) {
    auto delta = id - prev;
    prev = id;
    while (delta >= 32) {
      out += kDigits[32 + (delta & 31u)];
      delta >>= 5;
    }
    out += kDigits[delta];
  }
  return out;
}

ItemSet decode_item_set(std::string_view text) {
  ItemSet out;
  out.reserve(text.size());
  for_each_item(text, [&](ItemId id) { out.push_back(id); });
  return out;
}

std::int64_t pair_hash(std::string_view key, std::string_view value) noexcept {
  std::uint64_t h = 1469598103934665603ull;
  auto add = [&](std::string_view s) {
    for (char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ull;
    }
  };
  add(key);
  h ^= 0;
  h *= 1099511628211ull;
  add(value);
  return static_cast<std::int64_t>(h);
}

std::string ItemCatalogue::joined(std::string_view key, std::string_view value) {
  std::string s;
  s.reserve(key.size() + 1 + value.size());
  s.append(key);
  s.push_back('\0');
  s.append(value);
  return s;
}

auto ItemCatalogue::intern(soci::session& sql, Staged& st,
                           const std::vector<std::pair<std::string_view, std::string_view>>& pairs)
    -> std::vector<ItemId> {
  std::vector<ItemId> out(pairs.size(), 0);
  std::vector<std::size_t> missing;
  std::vector<std::string> joins(pairs.size());
  {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      joins[i] = joined(pairs[i].first, pairs[i].second);
      if (auto it = ids_.find(joins[i]); it != ids_.end())
        out[i] = it->second;
      else if (auto s = st.ids.find(joins[i]); s != st.ids.end())
        out[i] = s->second;
      else
        missing.push_back(i);
    }
  }
  if (missing.empty()) return out;
  // Stored already (by another process, or before this cache started)?
  std::vector<std::int64_t> hashes;
  for (auto i : missing) hashes.push_back(pair_hash(pairs[i].first, pairs[i].second));
  std::vector<std::int64_t> sorted = hashes;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  for (std::size_t from = 0; from < sorted.size(); from += kInList) {
    const auto to = std::min(sorted.size(), from + kInList);
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT id, item_key, item_value FROM inventory_catalogue WHERE pair_hash IN (" +
                            in_list(sorted, from, to) + ")");
    for (const auto& r : rs) {
      const auto id = static_cast<ItemId>(get_i64(r, 0));
      auto key = get_str(r, 1), value = get_str(r, 2);
      st.ids.emplace(joined(key, value), id);
      st.pairs.emplace(id, Pair{std::move(key), std::move(value)});
    }
  }
  std::vector<ll> new_ids, new_hashes;
  std::vector<std::string> new_keys, new_values;
  for (std::size_t m = 0; m < missing.size(); ++m) {
    const auto i = missing[m];
    if (auto s = st.ids.find(joins[i]); s != st.ids.end()) {
      out[i] = s->second;
      continue;
    }
    if (st.next_id == 0) {
      ll top = 0;
      soci::indicator ind = soci::i_ok;
      sql << "SELECT MAX(id) FROM inventory_catalogue", soci::into(top, ind);
      st.next_id = (ind == soci::i_null ? 0 : top) + 1;
    }
    const auto id = static_cast<ItemId>(st.next_id++);
    out[i] = id;
    st.ids.emplace(joins[i], id);
    st.pairs.emplace(id, Pair{std::string(pairs[i].first), std::string(pairs[i].second)});
    new_ids.push_back(id);
    new_hashes.push_back(hashes[m]);
    new_keys.emplace_back(pairs[i].first);
    new_values.emplace_back(pairs[i].second);
  }
  if (new_ids.empty()) return out;
  if (unnest_) {
    const auto ids = pg_int_array(new_ids.begin(), new_ids.end()),
               hashes_text = pg_int_array(new_hashes.begin(), new_hashes.end()),
               keys = pg_text_array(new_keys.begin(), new_keys.end()),
               values = pg_text_array(new_values.begin(), new_values.end());
    sql << "INSERT INTO inventory_catalogue (id, pair_hash, item_key, item_value) SELECT t.i, t.h, t.k, t.v "
           "FROM "
           "unnest(CAST(:i AS BIGINT[]), CAST(:h AS BIGINT[]), CAST(:k AS VARCHAR(255)[]), CAST(:v AS "
           "TEXT[])) "
           "AS t(i, h, k, v)",
        soci::use(ids), soci::use(hashes_text), soci::use(keys), soci::use(values);
  } else {
    sql << "INSERT INTO inventory_catalogue (id, pair_hash, item_key, item_value) VALUES (:i, :h, :k, :v)",
        soci::use(new_ids), soci::use(new_hashes), soci::use(new_keys), soci::use(new_values);
  }
  return out;
}

auto ItemCatalogue::resolve(soci::session& sql, const Staged& st, const ItemSet& ids)
    -> std::unordered_map<ItemId, Pair> {
  std::unordered_map<ItemId, Pair> out;
  std::vector<ItemId> missing;
  {
    std::lock_guard lock(mutex_);
    for (const auto id : ids) {
      if (auto it = pairs_.find(id); it != pairs_.end()) {
        const auto& j = *it->second;
        const auto nul = j.find('\0');
        out.emplace(id, Pair{j.substr(0, nul), j.substr(nul + 1)});
      } else if (auto s = st.pairs.find(id); s != st.pairs.end()) {
        out.emplace(id, s->second);
      } else {
        missing.push_back(id);
      }
    }
  }
  for (std::size_t from = 0; from < missing.size(); from += kInList) {
    const auto to = std::min(missing.size(), from + kInList);
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT id, item_key, item_value FROM inventory_catalogue WHERE id IN (" +
                            in_list(missing, from, to) + ")");
    for (const auto& r : rs)
      out.emplace(static_cast<ItemId>(get_i64(r, 0)), Pair{get_str(r, 1), get_str(r, 2)});
  }
  return out;
}

void ItemCatalogue::add_locked(std::string&& joined_pair, ItemId id) {
  auto [it, added] = ids_.emplace(std::move(joined_pair), id);
  if (added) pairs_[id] = &it->first;
}

void ItemCatalogue::remember(Staged&& st) {
  std::lock_guard lock(mutex_);
  if (ids_.size() + st.ids.size() > kCacheMax) {
    ids_.clear();
    pairs_.clear();
  }
  for (auto& [j, id] : st.ids) add_locked(std::string(j), id);
}

void ItemCatalogue::clear() {
  std::lock_guard lock(mutex_);
  ids_.clear();
  pairs_.clear();
}

std::size_t ItemCatalogue::cached() const {
  std::lock_guard lock(mutex_);
  return ids_.size();
}

InventoryItems parse_volatile(std::string_view json_text) {
  InventoryItems out;
  if (json_text.empty()) return out;
  boost::system::error_code ec;
  auto v = boost::json::parse(json_text, ec);
  if (ec || !v.is_object())
    throw Error(ErrorKind::internal, "a host's stored volatile inventory is malformed");
  for (const auto& kv : v.as_object())
    if (kv.value().is_string()) out.emplace(std::string(kv.key()), std::string(kv.value().as_string()));
  return out;
}

std::string serialize_volatile(const InventoryItems& items) {
  if (items.empty()) return {};
  boost::json::object o;
  for (const auto& [k, v] : items) o[k] = v;
  return boost::json::serialize(o);
}

void intern_inventory(soci::session& sql) {
  std::vector<std::string> hosts;
  {
    soci::rowset<soci::row> rs = sql.prepare << "SELECT host_id FROM inventory_hosts";
    for (const auto& r : rs) hosts.push_back(get_str(r, 0));
  }
  ItemCatalogue catalogue;
  ItemCatalogue::Staged st;
  for (const auto& host : hosts) {
    InventoryItems items;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT item_key, item_value FROM inventory_items WHERE host_id = :h",
         soci::use(host));
    for (const auto& r : rs) items.emplace(get_str(r, 0), get_str(r, 1));
    InventoryItems vol;
    std::vector<std::pair<std::string_view, std::string_view>> sys, soft;
    for (const auto& [k, v] : items) {
      if (is_volatile_key(k))
        vol.emplace(k, v);
      else
        (in_scope(InventoryScope::software, k) ? soft : sys).emplace_back(k, v);
    }
    auto set_of = [&](const auto& pairs) {
      auto ids = catalogue.intern(sql, st, pairs);
      std::sort(ids.begin(), ids.end());
      ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
      return encode_item_set(ids);
    };
    const auto sys_text = set_of(sys), soft_text = set_of(soft), vol_text = serialize_volatile(vol);
    sql << "UPDATE inventory_hosts SET system_items = :s, software_items = :w, volatile_items = :v WHERE "
           "host_id = :h",
        soci::use(sys_text), soci::use(soft_text), soci::use(vol_text), soci::use(host);
  }
  sql << "DELETE FROM inventory_items";
}

}  // namespace distrib::store
