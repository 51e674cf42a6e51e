#include "services/system_info.h"

#include <distrib/error.h>
#include <distrib/version.h>

#include "util/fs.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/utsname.h>
#include <unistd.h>

namespace distrib {

std::string system_host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

std::vector<std::string> system_addresses() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (auto* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || (a->ifa_flags & IFF_LOOPBACK)) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (a->ifa_addr->sa_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(a->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr)) continue;
      ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    } else {
      continue;
    }
    out.emplace_back(text);
  }
  ::freeifaddrs(list);
  return out;
}

std::string os_description() {
  std::string pretty = "Linux";
  try {
    const auto text = fs::read_file("/etc/os-release");
    const auto pos = text.find("PRETTY_NAME=");
    if (pos != std::string::npos) {
      auto end = text.find('\n', pos);
      pretty = text.substr(pos + 12, end == std::string::npos ? std::string::npos : end - pos - 12);
      std::erase(pretty, '"');
    }
  } catch (const Error&) {
  }
  utsname u{};
  if (::uname(&u) == 0) pretty += std::string(" (") + u.machine + ", kernel " + u.release + ")";
  return pretty;
}

Host describe_this_host(const std::string& host_id, HostRole role, const std::string& name,
                        const std::string& preferred_address) {
  Host me;
  me.host_id = host_id;
  me.name = name.empty() ? system_host_name() : name;
  me.addresses = system_addresses();
  if (!preferred_address.empty()) me.addresses.insert(me.addresses.begin(), preferred_address);
  me.os = os_description();
  me.role = role;
  me.agent_version = distrib::version();
  return me;
}

}  // namespace distrib
