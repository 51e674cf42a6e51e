#pragma once
// Inventory items interned. Every distinct (key, value) pair is stored once, in
// inventory_catalogue under an integer id, and a host's stable items are the sorted ids of its
// pairs, written as text in its one inventory_hosts row (system and software sets apart), with
// its volatile values (free space, uptime) beside them as a JSON object. Hosts of a fleet share
// most of their pairs (the same packages at the same versions), so a host costs a few bytes per
// item instead of a row per item with its key and value, and a first report writes one row.
//
// ItemCatalogue keeps the pairs this process has seen (pair → id and back); what a transaction
// finds or adds is staged and remembered only once it committed. Ids are given by this process
// (the largest stored id plus one, read in the transaction that adds pairs): only the active
// manager writes. A store opened anew (a promotion) starts with an empty cache.
#include <distrib/error.h>
#include <distrib/model/inventory.h>

#include "store/soci/rows.h"

#include <soci/soci.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace distrib::store {

using ItemId = std::uint32_t;
using ItemSet = std::vector<ItemId>;  // ascending, each id once

/// The text form of a set: ascending deltas, each in 5-bit groups, low group first, written as
/// one character per group: [0-9a-v] for the last group of a number, [w-zA-Z_-] when more follow.
/// A host's ~860 ids take about 1 KB.
std::string encode_item_set(const ItemSet& ids);
/// Throws Error(internal) for text encode_item_set did not write.
ItemSet decode_item_set(std::string_view text);
/// Calls `fn(id)` for each id of an encoded set, in order, without building the set.
template <class Fn>
void for_each_item(std::string_view text, Fn&& fn);

/// The catalogue's lookup key of a pair: a stable 64-bit FNV-1a of key, NUL, value.
std::int64_t pair_hash(std::string_view key, std::string_view value) noexcept;

class ItemCatalogue {
 public:
  struct Pair {
    std::string key, value;
  };
  /// What one transaction found and added; handed to remember() after it committed.
  struct Staged {
    std::unordered_map<std::string, ItemId> ids;  // key NUL value → id
    std::unordered_map<ItemId, Pair> pairs;
    std::int64_t next_id = 0;  // 0: not read yet
  };

  /// `unnest_arrays`: new pairs are inserted from arrays in one statement (PostgreSQL).
  explicit ItemCatalogue(bool unnest_arrays = false) : unnest_(unnest_arrays) {}

  /// Ids of the pairs (in their order), adding the ones not stored yet, in the caller's
  /// transaction.
  std::vector<ItemId> intern(soci::session& sql, Staged& st,
                             const std::vector<std::pair<std::string_view, std::string_view>>& pairs);
  /// Key and value of each id (cache, then the staged, then the database). Ids not stored are
  /// left out.
  std::unordered_map<ItemId, Pair> resolve(soci::session& sql, const Staged& st, const ItemSet& ids);
  /// After the transaction committed: its pairs are known from now on.
  void remember(Staged&& st);
  /// Forgets everything (after pairs were removed from the database).
  void clear();
  std::size_t cached() const;

 private:
  static std::string joined(std::string_view key, std::string_view value);
  void add_locked(std::string&& joined_pair, ItemId id);

  const bool unnest_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, ItemId> ids_;           // key NUL value → id
  std::unordered_map<ItemId, const std::string*> pairs_;  // id → its key in ids_
};

/// The interned form of inventory_items rows (before schema 12): every host's items become its
/// sets and volatile values, the rows are deleted. Run by the migration to schema 12 and after
/// importing an export made before it.
void intern_inventory(soci::session& sql);

/// Volatile values as stored (a JSON object of strings; empty text: none).
InventoryItems parse_volatile(std::string_view json_text);
std::string serialize_volatile(const InventoryItems& items);

template <class Fn>
void for_each_item(std::string_view text, Fn&& fn) {
  ItemId value = 0, delta = 0;
  unsigned shift = 0;
  for (char c : text) {
    unsigned d;
    if (c >= '0' && c <= '9')
      d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'z')
      d = static_cast<unsigned>(c - 'a') + 10;
    else if (c >= 'A' && c <= 'Z')
      d = static_cast<unsigned>(c - 'A') + 36;
    else if (c == '-')
      d = 62;
    else if (c == '_')
      d = 63;
    else
      throw Error(ErrorKind::internal, "a stored inventory item set is malformed");
    if (shift > 30) throw Error(ErrorKind::internal, "a stored inventory item set is malformed");
    delta |= static_cast<ItemId>(d & 31u) << shift;
    if (d < 32) {
      value += delta;
      fn(value);
      delta = 0;
      shift = 0;
    } else {
      shift += 5;
    }
  }
  if (shift != 0) throw Error(ErrorKind::internal, "a stored inventory item set is cut short");
}

}  // namespace distrib::store
