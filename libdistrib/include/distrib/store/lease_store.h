#pragma once
// The lease naming the active manager of a cluster (db-lease coordinator), and the fence that
// keeps a node that lost it from writing.
// Part of the Store interface (store.h), whose contract every call follows: blocking,
// thread-safe, one transaction per call, failures thrown as distrib::Error.
#include <distrib/model/cluster.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace distrib {

/// Active/standby: leases, their takeovers, and fencing of this store's writes.
class LeaseStore {
 public:
  virtual ~LeaseStore() = default;

  /// Takes lease `name` for `node` when nobody holds it, it expired at `now_ms`, or `node` holds
  /// it already (then it is extended). A change of holder increments the token and is recorded as
  /// a takeover. Returns the lease as it stands after the call.
  virtual LeaseRecord acquire_lease(const std::string& name, const std::string& node, std::int64_t now_ms,
                                    std::int64_t ttl_ms) = 0;
  /// Extends the lease while `node` holds it with `token` and it has not expired; false otherwise.
  virtual bool renew_lease(const std::string& name, const std::string& node, std::int64_t token,
                           std::int64_t now_ms, std::int64_t ttl_ms) = 0;
  /// Gives the lease up at once (an orderly stop) when `node` holds it with `token`.
  virtual void release_lease(const std::string& name, const std::string& node, std::int64_t token,
                             std::int64_t now_ms) = 0;
  virtual std::optional<LeaseRecord> read_lease(const std::string& name) = 0;
  /// Newest first.
  virtual std::vector<Takeover> takeovers(const std::string& name, int limit) = 0;
  /// Records that `node` became active with `token` (a coordinator outside the database, such as
  /// etcd, issued it): the lease row takes the token when it is greater than the one stored, with
  /// no expiry of its own. Returns false when a greater token is stored already (a newer holder).
  virtual bool raise_fence(const std::string& name, const std::string& node, std::int64_t token,
                           std::int64_t now_ms) = 0;
  /// From now on every write transaction first checks that lease `name` is still held with
  /// `token` (and unexpired); otherwise it fails with Error(ErrorKind::conflict, "fenced: ...")
  /// and changes nothing. token 0 turns the check off.
  virtual void set_fencing(const std::string& name, std::int64_t token) = 0;
};

}  // namespace distrib
