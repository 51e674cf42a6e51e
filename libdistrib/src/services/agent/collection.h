#pragma once
// Remote collection on the agent: which files may be sent (the allowlist of the settings) and
// sending them for a collect-files entry. Named FileCollector to keep it apart from the inventory
// collectors (InventoryCollector).
#include "services/agent/link.h"

namespace distrib::agent {

class FileCollector {
 public:
  FileCollector(Context& ctx, Link& link) : ctx_(ctx), link_(link) {}

  /// Runs a collect-files entry: checks every matching file against the allowlist and the limits
  /// before sending any, then uploads them one by one. Throws Error(forbidden) or
  /// Error(not_found) saying why nothing was collected.
  void collect_files(const bj::object& item, std::int64_t entry_id, std::int32_t attempt);

 private:
  bool collect_allowed(const stdfs::path& canonical) const;

  Context& ctx_;
  Link& link_;
};

}  // namespace distrib::agent
