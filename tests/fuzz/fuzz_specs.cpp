// The small languages operators and configuration files speak: sizes, times, durations, split
// specs, waves, daily windows, user inventory assignments, keys.
#include <distrib/error.h>
#include <distrib/model/inventory.h>
#include <distrib/model/job.h>
#include <distrib/model/units.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace distrib;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 8) {
      case 0:
        (void)format_byte_size(parse_byte_size(text));
        break;
      case 1:
        (void)parse_time_spec(text, 1767225600);
        break;
      case 2:
        (void)parse_duration_seconds(text);
        break;
      case 3:
        (void)parse_split(text);
        break;
      case 4:
        (void)parse_waves(text);
        break;
      case 5:
        (void)parse_daily_window(text);
        break;
      case 6:
        (void)parse_assignments(text, "fuzz");
        break;
      default:
        validate_inventory_key(text);
    }
  } catch (const Error&) {
  }
  return 0;
}
