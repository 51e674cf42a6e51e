#pragma once
// Hosts as registered with this manager: what they are, whether approved, when last heard.
// Part of the Store interface (store.h), whose contract every call follows: blocking,
// thread-safe, one transaction per call, failures thrown as distrib::Error.
#include <distrib/model/host.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace distrib {

/// The hosts this manager knows (registered here directly or reported by a relay below it).
class HostStore {
 public:
  virtual ~HostStore() = default;

  /// Inserts the host or updates it by host_id. registered_at and approved are kept from the
  /// first insert. A change other than last_seen marks the host for reporting upward, and so
  /// does `report_upward` (a host registering again may have been elsewhere meanwhile).
  virtual HostChange upsert_host(const Host& host, bool report_upward = false) = 0;
  virtual std::optional<Host> find_host(const std::string& host_id) = 0;
  /// Hosts that may answer to `key` (a host name, compared without case, or an address):
  /// candidates for a key conflict; the caller checks them exactly (host_matches).
  virtual std::vector<Host> hosts_with_key(HostKeyMode mode, const std::string& key) = 0;
  virtual std::vector<Host> list_hosts() = 0;
  /// Approves hosts waiting for approval; returns how many changed.
  virtual int approve_hosts(const std::vector<std::string>& host_ids) = 0;
  /// Forgets a host (it moved to another relay); its entries stay for the record.
  virtual void remove_host(const std::string& host_id) = 0;
  /// Raises last_seen of the hosts given (host id, unix seconds); unknown hosts are ignored.
  virtual void touch_hosts(const std::vector<std::pair<std::string, std::int64_t>>& seen) = 0;

  /// Hosts whose last contact is older than `cutoff` (unix seconds) are marked silent
  /// (host.silent) and silent hosts heard since are marked back (host.returned). Returns the
  /// number of hosts that changed either way.
  virtual int mark_silent_hosts(std::int64_t cutoff) = 0;
};

}  // namespace distrib
