#pragma once
// Entries travelling down the tree to relays, and what a relay reports back up to its parent.
// Part of the Store interface (store.h), whose contract every call follows: blocking,
// thread-safe, one transaction per call, failures thrown as distrib::Error.
#include <distrib/model/job.h>
#include <distrib/model/relay.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace distrib {

/// Routing down the tree (at any manager with relays below) and reporting up it (at a relay).
class RoutingStore {
 public:
  virtual ~RoutingStore() = default;

  // --- routing down the tree
  /// Entries of hosts reached through relay `via` (not the relay's own) whose current state
  /// the relay has not acknowledged, oldest first.
  virtual std::vector<RoutedEntry> entries_to_push(const std::string& via, int limit) = 0;
  /// Which of `vias` (at most 1,000) have entries to push now (entries_to_push not empty).
  virtual std::vector<std::string> vias_with_entries_to_push(const std::vector<std::string>& vias) = 0;
  /// The relay stored these entries in these states; entries changed since are pushed again.
  virtual void mark_pushed(const std::string& via,
                           const std::vector<std::pair<std::int64_t, EntryState>>& acks) = 0;
  /// At a relay: records entries received from the parent as local jobs and entries (new ones
  /// waiting; a cancel cancels the local entry if it can be). Returns the hosts whose work changed.
  virtual std::vector<std::string> import_entries(const std::vector<RoutedEntry>& entries) = 0;

  // --- reporting up the tree (at a relay)
  /// Hosts registered or changed here that the parent has not been told of yet.
  virtual std::vector<PendingHost> hosts_to_report(int limit) = 0;
  /// (host id, version) pairs the parent acknowledged.
  virtual void hosts_reported(const std::vector<std::pair<std::string, std::int64_t>>& done) = 0;
  /// States of entries received from the parent that changed since last forwarded.
  virtual std::vector<PendingReport> reports_to_forward(int limit) = 0;
  /// (local entry id, version) pairs the parent acknowledged.
  virtual void reports_forwarded(const std::vector<std::pair<std::int64_t, std::int64_t>>& done) = 0;
};

}  // namespace distrib
