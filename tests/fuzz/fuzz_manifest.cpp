// A manifest as a manager receives it at registration and an agent before it fetches a payload:
// decoded, validated (paths, modes, symlinks resolved through each other), its publisher
// signature checked against a key, and its canonical text made again.
#include <distrib/error.h>
#include <distrib/model/package.h>

#include "model/json_codec.h"
#include "security/publishers.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace distrib;

namespace {
const std::string& a_key() {
  static const std::string pem = security::make_publisher_key().public_pem;
  return pem;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto m = manifest_from_json(text);
    validate_manifest(m);
    (void)manifest_to_json(m);
    (void)security::manifest_signature_valid(m, a_key());
    security::check_publisher(m, {}, {}, false);
  } catch (const Error&) {
  }
  return 0;
}
