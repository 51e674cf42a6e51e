#pragma once
// Jobs and their entries: creation, listings, agents' reports, cancel and retry.
// Part of the Store interface (store.h), whose contract every call follows: blocking,
// thread-safe, one transaction per call, failures thrown as distrib::Error.
#include <distrib/model/job.h>
#include <distrib/model/report.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace distrib {

/// Jobs, one entry per host and job, and the reports that move entries through their states.
class JobStore {
 public:
  virtual ~JobStore() = default;

  /// Creates the job and one waiting entry per host, atomically: the hosts given plus the
  /// current approved members of `job.id_groups` of the role the job type needs (agents for
  /// installs, relays otherwise), each host once. With waves, hosts are drawn at random into
  /// them and only the first is ready. Entries wait until `job.schedule.start_at`.
  virtual JobCreated create_job(const Job& job, const std::vector<std::string>& host_ids) = 0;
  virtual std::optional<Job> find_job(std::int64_t job_id) = 0;
  virtual std::vector<JobListing> list_jobs(int limit) = 0;
  virtual std::vector<JobEntry> job_entries(std::int64_t job_id) = 0;
  /// Entries of the host that are not in a final state, oldest first.
  virtual std::vector<JobEntry> open_entries_for_host(const std::string& host_id) = 0;
  /// The same for many hosts in one query (host ids, at most 1,000), oldest first: what waking
  /// a batch of waiting polls reads.
  virtual std::vector<JobEntry> open_entries_for_hosts(const std::vector<std::string>& host_ids) = 0;
  /// Direct children (hosts' `via`) with work: their own open entries, or entries of their
  /// subtree not yet pushed to them. Rebuilds the manager's work cache.
  virtual std::vector<std::string> children_with_work() = 0;
  /// Applies a report to the entry it names. A direct report must come from the entry's host
  /// (`reporter`) and make one allowed transition; a forwarded one comes from the relay the
  /// host is reached through and may skip states in between (can_reach).
  virtual ReportOutcome apply_report(const std::string& reporter, const EntryReport& report,
                                     bool forwarded = false) = 0;

  /// What a cancel changed: the direct children whose entries changed, and how many entries.
  struct JobCancel {
    std::vector<std::string> vias;
    std::int64_t cancelled = 0;
  };
  /// Marks the job cancel-requested and moves its cancellable entries to cancelled (a rollout
  /// stops), in one transaction, counting what it cancelled. Throws not_found for no such job.
  virtual JobCancel cancel_job_entries(std::int64_t job_id) = 0;
  /// cancel_job_entries(job_id).vias: the hosts whose entries changed.
  std::vector<std::string> cancel_job(std::int64_t job_id) { return cancel_job_entries(job_id).vias; }
  /// Failed entries of the job wait again for a new attempt, ready now. Returns how many and
  /// the direct children to wake.
  virtual std::pair<std::int64_t, std::vector<std::string>> retry_failed(std::int64_t job_id) = 0;
};

}  // namespace distrib
