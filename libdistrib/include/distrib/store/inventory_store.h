#pragma once
// Hosts' inventories with their history, the administrator's inventory fields, and the files
// collect-files jobs brought back.
// Part of the Store interface (store.h), whose contract every call follows: blocking,
// thread-safe, one transaction per call, failures thrown as distrib::Error.
#include <distrib/model/inventory.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace distrib {

/// What hosts reported about themselves, and what they sent on request.
class InventoryStore {
 public:
  virtual ~InventoryStore() = default;

  // --- inventory
  /// Replaces the host's items under the report's scope with the report's, records what changed
  /// (volatile values are stored, never recorded) and when. Throws Error(not_found) when the host
  /// is not registered here.
  virtual InventoryIngest ingest_inventory(const InventoryReport& report, std::int64_t received_at) = 0;
  /// Several reports in one transaction (group commit: one commit for many agents). A report
  /// of a host that is not registered gets its reason in `error` and changes nothing; the
  /// others are stored. Results are in the order of `reports`.
  virtual std::vector<InventoryIngest> ingest_inventory_batch(const std::vector<InventoryReport>& reports,
                                                              std::int64_t received_at) = 0;
  virtual std::optional<HostInventory> find_inventory(const std::string& host_id) = 0;
  /// Newest first.
  virtual std::vector<InventoryChange> inventory_history(const std::string& host_id, int limit) = 0;
  /// Stored values of `key` (exact) or of every key starting with `key` (prefix).
  virtual std::vector<InventoryValue> inventory_values(const std::string& key, bool prefix) = 0;
  /// As inventory_values, for the hosts in `hosts` only (host ids, sorted): what a query shows of
  /// the hosts it matched. This default filters inventory_values.
  virtual std::vector<InventoryValue> inventory_values_of(const std::string& key, bool prefix,
                                                          const std::vector<std::string>& hosts);
  /// Hosts that have reported an inventory.
  virtual std::vector<std::string> inventoried_hosts() = 0;
  /// Hosts by their items whose key is `key` (exact) or starts with it (`prefix`): `having` those
  /// with an item `key_ok` accepts, `accepted` those with such an item `value_ok` accepts too.
  /// The predicates may be asked once per distinct stored (key, value) pair rather than once per
  /// host (how queries and dynamic groups are evaluated). This default asks inventory_values.
  struct ItemMatch {
    std::vector<std::string> having, accepted;  ///< host ids, each once
  };
  virtual ItemMatch match_inventory(
      const std::string& key, bool prefix, const std::function<bool(std::string_view key)>& key_ok,
      const std::function<bool(std::string_view key, std::string_view value)>& value_ok);
  /// Creates or replaces a field definition.
  virtual void put_inventory_field(const InventoryField& field) = 0;
  virtual std::vector<InventoryField> list_inventory_fields() = 0;
  virtual bool delete_inventory_field(const std::string& name) = 0;

  // --- remote collection
  /// Records (or replaces) a file a host sent for a collect-files job.
  virtual void record_collected_file(const CollectedFile& file) = 0;
  virtual std::vector<CollectedFile> collected_files(std::int64_t job_id) = 0;
};

}  // namespace distrib
