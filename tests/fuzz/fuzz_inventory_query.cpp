// Inventory queries (distribctl inventory query, dynamic groups, GET /v1/inventory?query=) and
// the version comparison they use, evaluated against a few items.
#include <distrib/error.h>
#include <distrib/model/inventory.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace distrib;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto q = parse_inventory_query(text);
    const auto again = parse_inventory_query(to_string(q));  // what it prints parses again
    if (again.conditions.size() != q.conditions.size()) __builtin_trap();
    InventoryItems items{{"system.os.version", "12"},
                         {"software.dpkg.openssl", "3.0.11-1~deb12u2"},
                         {"system.disk./.free_bytes", "1073741824"}};
    (void)query_matches(q, items);
    for (const auto& c : q.conditions) (void)compare_versions(c.value, "3.0.11");
  } catch (const Error&) {
  }
  return 0;
}
