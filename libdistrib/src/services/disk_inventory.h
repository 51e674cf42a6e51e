#pragma once
// The filesystems of a Linux machine as inventory items (part of the linux-system collector).
#include <distrib/model/inventory.h>

#include <string_view>

namespace distrib {

/// Adds system.disk.MOUNT.{device,fstype,size_bytes,free_bytes} for each real filesystem listed
/// in `mounts` (the text of /proc/self/mounts: "DEVICE MOUNT TYPE ..." with octal escapes), sized
/// by statvfs. Pseudo filesystems (proc, tmpfs, cgroup...) are left out. The filesystem that holds
/// "/" is always reported: where the list has no entry for "/" (a chroot, a build jail, some
/// containers) it comes from statvfs("/"), its device from /sys/dev/block and its type from statfs.
void collect_disk_items(std::string_view mounts, InventoryItems& out);

}  // namespace distrib
