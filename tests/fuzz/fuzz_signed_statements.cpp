// What hosts read before they trust it: signed orders and their statements, trusted publisher
// sets, enrolment bundles, certificates. Everything is checked against a CA made here, so
// verification fails; what is fuzzed is the parsing and checking on the way.
#include <distrib/error.h>

#include "security/enrolment.h"
#include "security/orders.h"
#include "security/pki.h"
#include "security/publishers.h"

#include <cstddef>
#include <cstdint>
#include <string>

using namespace distrib;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto ca = pki::create_authority("fuzz CA", 30);
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 6) {
      case 0:
        (void)security::parse_order_statement(text);
        break;
      case 1:
        (void)security::verify_order(text, ca.cert_pem, 1767225600);
        break;
      case 2:
        (void)security::publisher_set_from_json(text);
        break;
      case 3:
        (void)security::verify_publishers(text, ca.cert_pem, 1767225600);
        break;
      case 4:
        (void)security::read_bundle(text);
        break;
      default:
        (void)pki::inspect_certificate(text);
    }
  } catch (const Error&) {
  }
  return 0;
}
