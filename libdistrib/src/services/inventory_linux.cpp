// Linux inventory collectors: /proc, /sys, uname, statvfs, getifaddrs, dpkg-query and rpm.
#include <distrib/error.h>
#include <distrib/services/inventory.h>

#include "services/disk_inventory.h"
#include "services/process.h"
#include "services/system_info.h"
#include "util/fs.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace distrib {

namespace {

std::string read_trimmed(const std::filesystem::path& p) {
  try {
    auto s = fs::read_file(p);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\0')) s.pop_back();
    return s;
  } catch (const Error&) {
    return {};
  }
}

// "KEY=value" / KEY="value" lines of /etc/os-release.
std::map<std::string, std::string> os_release() {
  std::map<std::string, std::string> out;
  std::string text;
  try {
    text = fs::read_file("/etc/os-release");
  } catch (const Error&) {
    try {
      text = fs::read_file("/usr/lib/os-release");
    } catch (const Error&) {
      return out;
    }
  }
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (eq == std::string::npos || line.starts_with('#')) continue;
    auto v = line.substr(eq + 1);
    if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front())
      v = v.substr(1, v.size() - 2);
    out[line.substr(0, eq)] = v;
  }
  return out;
}

// Filesystems that hold no user data.
bool pseudo_fs(const std::string& type) {
  static const std::set<std::string> skip = {
      "proc",        "sysfs",   "devtmpfs",   "devpts",     "tmpfs",
      "cgroup",      "cgroup2", "securityfs", "pstore",     "debugfs",
      "tracefs",     "mqueue",  "hugetlbfs",  "configfs",   "fusectl",
      "binfmt_misc", "autofs",  "bpf",        "nsfs",       "rpc_pipefs",
      "efivarfs",    "ramfs",   "squashfs",   "fuse.lxcfs", "fuse.gvfsd-fuse"};
  return skip.count(type) > 0;
}

// /proc/mounts escapes spaces and the like as octal (\040).
std::string unescape_mount(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const auto oct = s.substr(i + 1, 3);
      if (oct.size() == 3 &&
          std::all_of(oct.begin(), oct.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out += static_cast<char>(std::stoi(oct, nullptr, 8));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

// The device that holds `path`, as /dev/NAME, from its block device's uevent; empty when unknown.
std::string block_device_of(const char* path) {
  struct stat st {};
  if (::stat(path, &st) != 0) return {};
  const auto uevent =
      read_trimmed(std::filesystem::path("/sys/dev/block") /
                   (std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev))) / "uevent");
  std::istringstream in(uevent);
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("DEVNAME=")) return "/dev/" + line.substr(8);
  return {};
}

// The type of the filesystem that holds `path` from statfs's magic number; empty when not one of
// the common ones.
std::string fs_type_of(const char* path) {
  struct statfs st {};
  if (::statfs(path, &st) != 0) return {};
  static const std::map<unsigned long, const char*> known = {
      {0xEF53, "ext4"},     {0x58465342, "xfs"},     {0x9123683E, "btrfs"}, {0x794C7630, "overlay"},
      {0x2FC12FC1, "zfs"},  {0x01021994, "tmpfs"},   {0x6969, "nfs"},       {0xFF534D42, "cifs"},
      {0x65735546, "fuse"}, {0x4D44, "vfat"},        {0x5346544E, "ntfs"},  {0xF2F52010, "f2fs"},
      {0x3153464A, "jfs"},  {0x52654973, "reiserfs"}};
  const auto it = known.find(static_cast<unsigned long>(st.f_type));
  return it == known.end() ? std::string() : it->second;
}

}  // namespace

void collect_disk_items(std::string_view mounts, InventoryItems& out) {
  std::set<std::string> seen;
  auto add = [&](const std::string& mount, const std::string& device, const std::string& type) {
    struct statvfs st {};
    if (::statvfs(mount.c_str(), &st) != 0 || st.f_blocks == 0) return false;
    const auto base = "system.disk." + mount;
    if (!device.empty()) out[base + ".device"] = device;
    if (!type.empty()) out[base + ".fstype"] = type;
    out[base + ".size_bytes"] = std::to_string(static_cast<unsigned long long>(st.f_blocks) * st.f_frsize);
    out[base + ".free_bytes"] = std::to_string(static_cast<unsigned long long>(st.f_bavail) * st.f_frsize);
    return true;
  };
  std::istringstream in{std::string(mounts)};
  for (std::string line; std::getline(in, line);) {
    std::istringstream is(line);
    std::string device, mount, type;
    if (!(is >> device >> mount >> type) || pseudo_fs(type)) continue;
    mount = unescape_mount(mount);
    if (seen.count(mount)) continue;
    if (add(mount, unescape_mount(device), type)) seen.insert(mount);
  }
  if (!seen.count("/")) add("/", block_device_of("/"), fs_type_of("/"));
}

namespace {

class LinuxSystemCollector final : public InventoryCollector {
 public:
  std::string_view name() const noexcept override { return "linux-system"; }
  InventoryScope scope() const noexcept override { return InventoryScope::system; }

  void collect(InventoryItems& out) override {
    out["system.hostname"] = system_host_name();
    auto rel = os_release();
    out["system.os.name"] = rel.count("NAME") ? rel["NAME"] : "Linux";
    if (rel.count("VERSION_ID")) out["system.os.version"] = rel["VERSION_ID"];
    if (rel.count("ID")) out["system.os.id"] = rel["ID"];
    if (rel.count("PRETTY_NAME")) out["system.os.pretty_name"] = rel["PRETTY_NAME"];
    if (rel.count("VERSION_CODENAME")) out["system.os.codename"] = rel["VERSION_CODENAME"];
    utsname u{};
    if (::uname(&u) == 0) {
      out["system.kernel.name"] = u.sysname;
      out["system.kernel.release"] = u.release;
      out["system.kernel.version"] = u.version;
      out["system.arch"] = u.machine;
    }
    cpu(out);
    memory(out);
    disks(out);
    network(out);
    if (auto up = read_trimmed("/proc/uptime"); !up.empty())
      out["system.uptime_seconds"] = up.substr(0, up.find_first_of(". "));
    // DMI: readable by everyone except the serial numbers (root only on most systems).
    static const std::pair<const char*, const char*> dmi[] = {
        {"sys_vendor", "vendor"}, {"product_name", "model"},        {"product_serial", "serial"},
        {"product_uuid", "uuid"}, {"bios_version", "bios_version"}, {"board_name", "board"}};
    for (const auto& [file, key] : dmi)
      if (auto v = read_trimmed(std::filesystem::path("/sys/class/dmi/id") / file); !v.empty())
        out[std::string("system.dmi.") + key] = v;
  }

 private:
  static void cpu(InventoryItems& out) {
    std::ifstream in("/proc/cpuinfo");
    std::string model;
    long count = 0;
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("processor")) ++count;
      if (model.empty() &&
          (line.starts_with("model name") || line.starts_with("Model") || line.starts_with("cpu model"))) {
        auto colon = line.find(':');
        if (colon != std::string::npos) {
          model = line.substr(colon + 1);
          model.erase(0, model.find_first_not_of(" \t"));
        }
      }
    }
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    out["system.cpu.count"] = std::to_string(online > 0 ? online : count);
    if (!model.empty()) out["system.cpu.model"] = model;
  }

  static void memory(InventoryItems& out) {
    std::ifstream in("/proc/meminfo");
    for (std::string line; std::getline(in, line);) {
      auto field = [&](const char* name, const char* key) {
        if (!line.starts_with(name)) return;
        std::istringstream is(line.substr(std::string_view(name).size()));
        unsigned long long kib = 0;
        if (is >> kib) out[key] = std::to_string(kib * 1024);
      };
      field("MemTotal:", "system.memory.total_bytes");
      field("MemAvailable:", "system.memory.available_bytes");
      field("SwapTotal:", "system.memory.swap_total_bytes");
    }
  }

  static void disks(InventoryItems& out) {
    std::string mounts;
    try {
      mounts = fs::read_file("/proc/self/mounts");
    } catch (const Error&) {  // no /proc: the root filesystem is still reported
    }
    collect_disk_items(mounts, out);
  }

  static void network(InventoryItems& out) {
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return;
    std::map<std::string, std::pair<std::string, std::string>> addrs;  // name → (v4, v6)
    for (auto* a = list; a; a = a->ifa_next) {
      if (!a->ifa_name || (a->ifa_flags & IFF_LOOPBACK)) continue;
      auto& [v4, v6] = addrs[a->ifa_name];
      if (!a->ifa_addr) continue;
      char text[INET6_ADDRSTRLEN] = {};
      if (a->ifa_addr->sa_family == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
        v4 += (v4.empty() ? "" : ",") + std::string(text);
      } else if (a->ifa_addr->sa_family == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr, text, sizeof text);
        v6 += (v6.empty() ? "" : ",") + std::string(text);
      }
    }
    ::freeifaddrs(list);
    for (const auto& [name, a] : addrs) {
      const auto base = "system.net." + name;
      if (auto mac = read_trimmed(std::filesystem::path("/sys/class/net") / name / "address"); !mac.empty())
        out[base + ".mac"] = mac;
      if (!a.first.empty()) out[base + ".ipv4"] = a.first;
      if (!a.second.empty()) out[base + ".ipv6"] = a.second;
    }
  }
};

bool have_program(const char* name) {
  for (const char* dir : {"/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/", "/usr/local/bin/"})
    if (::access((std::string(dir) + name).c_str(), X_OK) == 0) return true;
  return false;
}

// Runs a package-listing command and adds "PREFIX.NAME" = version for each "NAME\tVERSION" line.
void list_packages(const std::string& command, const std::string& prefix, InventoryItems& out) {
  auto r = run_command(command, "/", {{"LC_ALL", "C"}}, std::chrono::seconds(120), 64u << 20);
  if (r.exit_code != 0 || r.timed_out)
    throw Error(ErrorKind::unavailable,
                "\"" + command + "\" failed (exit " + std::to_string(r.exit_code) + ")");
  std::istringstream in(r.output_tail);
  for (std::string line; std::getline(in, line);) {
    const auto tab = line.find('\t');
    if (tab == std::string::npos || tab == 0) continue;
    const auto name = line.substr(0, tab);
    const auto version = line.substr(tab + 1);
    if (name.find_first_of(" \t") != std::string::npos || version.empty()) continue;
    out[prefix + name] = version;
  }
}

class DpkgCollector final : public InventoryCollector {
 public:
  std::string_view name() const noexcept override { return "dpkg"; }
  InventoryScope scope() const noexcept override { return InventoryScope::software; }
  void collect(InventoryItems& out) override {
    // Installed packages only ("ii"), architecture-qualified names where several exist.
    list_packages(
        "dpkg-query -W -f '${db:Status-Abbrev}\\t${binary:Package}\\t${Version}\\n' 2>/dev/null | "
        "sed -n 's/^ii *\\t//p'",
        "software.dpkg.", out);
  }
};

class RpmCollector final : public InventoryCollector {
 public:
  std::string_view name() const noexcept override { return "rpm"; }
  InventoryScope scope() const noexcept override { return InventoryScope::software; }
  void collect(InventoryItems& out) override {
    list_packages("rpm -qa --qf '%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\n' 2>/dev/null",
                  "software.rpm.", out);
  }
};

}  // namespace

std::vector<std::unique_ptr<InventoryCollector>> platform_collectors() {
  std::vector<std::unique_ptr<InventoryCollector>> out;
  out.push_back(std::make_unique<LinuxSystemCollector>());
  if (have_program("dpkg-query")) out.push_back(std::make_unique<DpkgCollector>());
  // rpm is installable on Debian without being the system's package manager: only when it has
  // a database.
  if (have_program("rpm") && (std::filesystem::exists("/var/lib/rpm/Packages") ||
                              std::filesystem::exists("/var/lib/rpm/rpmdb.sqlite")))
    out.push_back(std::make_unique<RpmCollector>());
  return out;
}

InventoryItems run_collectors(const std::vector<InventoryCollector*>& collectors, InventoryScope scope,
                              std::vector<std::string>& errors) {
  InventoryItems items;
  for (auto* c : collectors) {
    if (scope != InventoryScope::full && c->scope() != scope) continue;
    try {
      c->collect(items);
    } catch (const std::exception& e) {
      errors.push_back(std::string(c->name()) + ": " + e.what());
    }
  }
  return items;
}

}  // namespace distrib
