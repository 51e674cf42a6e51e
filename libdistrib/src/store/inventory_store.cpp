// InventoryStore's default for matching hosts by their items: from the stored values.
#include <distrib/store/inventory_store.h>

#include <algorithm>
#include <set>

namespace distrib {

auto InventoryStore::match_inventory(
    const std::string& key, bool prefix, const std::function<bool(std::string_view key)>& key_ok,
    const std::function<bool(std::string_view key, std::string_view value)>& value_ok) -> ItemMatch {
  std::set<std::string> having, accepted;
  for (const auto& v : inventory_values(key, prefix)) {
    if (!key_ok(v.key)) continue;
    having.insert(v.host_id);
    if (value_ok(v.key, v.value)) accepted.insert(v.host_id);
  }
  return {{having.begin(), having.end()}, {accepted.begin(), accepted.end()}};
}

auto InventoryStore::inventory_values_of(const std::string& key, bool prefix,
                                         const std::vector<std::string>& hosts)
    -> std::vector<InventoryValue> {
  auto values = inventory_values(key, prefix);
  std::erase_if(values, [&](const InventoryValue& v) {
    return !std::binary_search(hosts.begin(), hosts.end(), v.host_id);
  });
  return values;
}

}  // namespace distrib
