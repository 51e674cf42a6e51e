// Every JSON message a manager or agent reads from the network, decoded as its handler decodes
// it: the first byte chooses the message, the rest is the JSON text. Refusals (distrib::Error)
// are the expected outcome of bad input; anything else (a crash, a sanitizer report, another
// exception escaping) is a finding.
#include <distrib/error.h>

#include "model/json_codec.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace distrib;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    const auto o = json::parse_object(text);
    switch (data[0] % 14) {
      case 0:
        (void)json::host_from_json(o);
        break;
      case 1:
        (void)json::manifest_from_json_object(o);
        break;
      case 2:
        (void)json::package_summary_from_json(o);
        break;
      case 3:
        (void)json::schedule_from_json(o);
        break;
      case 4:
        (void)json::split_from_json(o);
        break;
      case 5:
        (void)json::transfer_progress_from_json(o);
        break;
      case 6:
        (void)json::collect_from_json(o);
        break;
      case 7:
        (void)json::job_from_json(o);
        break;
      case 8:
        (void)json::entry_from_json(o);
        break;
      case 9:
        (void)json::progress_from_json(o);
        break;
      case 10:
        (void)json::report_from_json(o);
        break;
      case 11:
        (void)json::routed_entry_from_json(o);
        break;
      case 12:
        (void)json::id_group_from_json(o);
        break;
      default: {
        // Registration and reports carry hosts bounded field by field.
        const auto h = json::host_from_json(o);
        validate_host_fields(h);
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
