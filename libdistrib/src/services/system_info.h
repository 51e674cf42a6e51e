#pragma once
// What a host says about itself when it registers. (Inventory collectors build on these.)
#include <distrib/model/host.h>

#include <string>
#include <vector>

namespace distrib {

std::string system_host_name();
/// Non-loopback, non-link-local addresses of the machine's interfaces.
std::vector<std::string> system_addresses();
/// "PRETTY_NAME (machine, kernel release)".
std::string os_description();

/// This machine as it registers with its parent: `name` overrides the system host name, and
/// `preferred_address` (the address it connects or listens on) goes first when set.
Host describe_this_host(const std::string& host_id, HostRole role, const std::string& name,
                        const std::string& preferred_address);

}  // namespace distrib
