#pragma once
// Host groups (an administrator's named sets of hosts) and ID groups (hosts join; jobs
// addressed to them are standing).
// Part of the Store interface (store.h), whose contract every call follows: blocking,
// thread-safe, one transaction per call, failures thrown as distrib::Error.
#include <distrib/model/group.h>
#include <distrib/model/job.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace distrib {

/// Host groups and ID groups with their memberships.
class GroupStore {
 public:
  virtual ~GroupStore() = default;

  // --- host groups (administrator-defined sets of hosts)
  /// Throws Error(conflict) when the name is taken.
  virtual void create_host_group(const HostGroup& group) = 0;
  virtual std::optional<HostGroup> find_host_group(const std::string& name) = 0;
  virtual std::vector<HostGroup> list_host_groups() = 0;
  /// Adds and removes members; throws Error(not_found) for an unknown group. Returns the number
  /// of memberships that changed.
  virtual int change_host_group(const std::string& name, const std::vector<std::string>& add,
                                const std::vector<std::string>& remove) = 0;
  virtual bool delete_host_group(const std::string& name) = 0;

  // --- ID groups (hosts join; jobs addressed to them are standing)
  /// Throws Error(conflict) when the name is taken. `group.members` is ignored.
  virtual void create_id_group(const IdGroup& group) = 0;
  /// With members (and their names).
  virtual std::optional<IdGroup> find_id_group(const std::string& name) = 0;
  /// Without members; `member_counts` (if given) receives the count per group.
  virtual std::vector<IdGroup> list_id_groups(
      std::map<std::string, std::int64_t>* member_counts = nullptr) = 0;
  /// Deletes the group and its memberships; its jobs stop standing (their entries stay).
  virtual bool delete_id_group(const std::string& name) = 0;
  /// Makes the hosts members. Each new member receives every standing job of the group it has
  /// no entry in yet (not cancelled, not expired, rollout not stopped), oldest first, marked
  /// late-join. Throws Error(not_found) for an unknown group.
  virtual MembershipChange join_id_group(const std::string& name, const std::vector<std::string>& host_ids,
                                         JoinMethod how) = 0;
  /// Ends memberships; the hosts' entries of the group's jobs that have not started are
  /// cancelled ("left ID group").
  virtual MembershipChange leave_id_group(const std::string& name,
                                          const std::vector<std::string>& host_ids) = 0;
  /// ID groups the host is a member of.
  virtual std::vector<std::string> id_groups_of(const std::string& host_id) = 0;
  /// Standing jobs of the group, oldest first.
  virtual std::vector<Job> standing_jobs(const std::string& name) = 0;
};

}  // namespace distrib
