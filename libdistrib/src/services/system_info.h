#pragma once
// What a host says about itself when it registers. (Inventory collectors build on these.)
#include <string>
#include <vector>

namespace distrib {

std::string system_host_name();
/// Non-loopback, non-link-local addresses of the machine's interfaces.
std::vector<std::string> system_addresses();
/// "PRETTY_NAME (machine, kernel release)".
std::string os_description();

}  // namespace distrib
