#pragma once
// Inventory collectors: each knows one source of facts about the machine it runs on. The agent
// runs the platform's collectors (plus any an integrator adds) and reports the items they give.
#include <distrib/model/inventory.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace distrib {

class InventoryCollector {
 public:
  virtual ~InventoryCollector() = default;
  /// Short name for logs ("linux-system", "dpkg").
  virtual std::string_view name() const noexcept = 0;
  /// system or software: which job type and report scope the collector serves.
  virtual InventoryScope scope() const noexcept = 0;
  /// Adds this collector's items (keys under system. or software.). Throws Error when the
  /// source cannot be read at all; a fact that is merely unavailable is left out.
  virtual void collect(InventoryItems& out) = 0;
};

/// The collectors of the platform this library was built for. Linux: operating system, kernel,
/// CPU, memory, disks, network interfaces, uptime and DMI (/sys/class/dmi, where readable), and
/// the OS package databases present (dpkg; rpm where the rpm command exists).
std::vector<std::unique_ptr<InventoryCollector>> platform_collectors();

/// Runs the collectors of `scope` (all for full). A collector that throws is skipped and its
/// message appended to `errors`.
InventoryItems run_collectors(const std::vector<InventoryCollector*>& collectors, InventoryScope scope,
                              std::vector<std::string>& errors);

}  // namespace distrib
