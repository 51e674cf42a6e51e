#pragma once
// What travels between a relay and its parent: entries routed down the tree, and the hosts and
// entry states a relay still has to report up.
#include <distrib/model/host.h>
#include <distrib/model/job.h>
#include <distrib/model/report.h>

#include <cstdint>

namespace distrib {

/// An entry on its way down the tree to the relay that will run it, with its job.
struct RoutedEntry {
  JobEntry entry;  ///< id, job_id, host_id, state and attempt at the sending manager
  Job job;
};

/// At a relay: something still to be told to the parent, with the change counter it was read at
/// (clearing it only succeeds if nothing changed since).
struct PendingHost {
  Host host;
  std::int64_t version = 0;
};
struct PendingReport {
  EntryReport report;  ///< entry_id is the parent's id of the entry
  std::int64_t local_id = 0;
  std::int64_t version = 0;
};

}  // namespace distrib
