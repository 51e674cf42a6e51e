// The filesystem items of the Linux system collector (services/disk_inventory.h), fed mount lists.
#include "services/disk_inventory.h"

#include <catch2/catch.hpp>

#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <string>

using namespace distrib;

namespace {

std::string size_of(const char* path) {
  struct statvfs st {};
  REQUIRE(::statvfs(path, &st) == 0);
  return std::to_string(static_cast<unsigned long long>(st.f_blocks) * st.f_frsize);
}

}  // namespace

TEST_CASE("the root filesystem is reported even when the mount list has no entry for /", "[inventory]") {
  // What a chroot or a build jail sees: the host's mounts, none of them "/".
  InventoryItems items;
  collect_disk_items(
      "proc /proc proc rw,nosuid 0 0\n"
      "tmpfs /dev/shm tmpfs rw 0 0\n"
      "sysfs /sys sysfs rw 0 0\n",
      items);
  REQUIRE(items.count("system.disk./.size_bytes"));
  CHECK(items.at("system.disk./.size_bytes") == size_of("/"));
  CHECK(items.count("system.disk./.free_bytes"));
  CHECK_FALSE(items.count("system.disk./proc.size_bytes"));
  CHECK_FALSE(items.count("system.disk./dev/shm.size_bytes"));

  // No mount list at all (no /proc): still the root.
  InventoryItems bare;
  collect_disk_items("", bare);
  CHECK(bare.at("system.disk./.size_bytes") == size_of("/"));
}

TEST_CASE("listed filesystems keep the device and type the mount list gives", "[inventory]") {
  const auto dir = std::filesystem::temp_directory_path() / ("distrib disk " + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto escaped =
      std::filesystem::temp_directory_path().string() + "/distrib\\040disk\\040" + std::to_string(::getpid());
  InventoryItems items;
  collect_disk_items(
      "/dev/vdz1 / ext4 rw,relatime 0 0\n"
      "/dev/vdz2 " +
          escaped +
          " xfs rw 0 0\n"
          "/dev/vdz3 /does/not/exist ext4 rw 0 0\n"
          "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n",
      items);
  CHECK(items.at("system.disk./.device") == "/dev/vdz1");
  CHECK(items.at("system.disk./.fstype") == "ext4");
  CHECK(items.at("system.disk./.size_bytes") == size_of("/"));
  const auto base = "system.disk." + dir.string();
  CHECK(items.at(base + ".device") == "/dev/vdz2");
  CHECK(items.at(base + ".fstype") == "xfs");
  CHECK(items.at(base + ".size_bytes") == size_of(dir.c_str()));
  CHECK_FALSE(items.count("system.disk./does/not/exist.size_bytes"));
  CHECK_FALSE(items.count("system.disk./sys/fs/cgroup.size_bytes"));
  std::filesystem::remove_all(dir);
}
