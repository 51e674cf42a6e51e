#pragma once
// When entries run: suspended and split transfers, expiry, install windows and rollouts in waves.
// Part of the Store interface (store.h), whose contract every call follows: blocking,
// thread-safe, one transaction per call, failures thrown as distrib::Error.
#include <distrib/model/job.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace distrib {

/// What the manager's scheduler and the transfer commands change over time.
class ScheduleStore {
 public:
  virtual ~ScheduleStore() = default;

  // --- transfers
  /// Suspends (waiting or transferring → suspended) or resumes (suspended → waiting) the entries
  /// of one job (`job_id` ≠ 0) or of the hosts in `host_ids` (a relay and its subtree). Entries
  /// travel down again to relays. Throws not_found for an unknown job.
  virtual TransferChange suspend_transfers(std::int64_t job_id, const std::vector<std::string>& host_ids,
                                           bool suspend) = 0;
  /// The job's payload travels unsplit from now on (`distribctl job complete-now`); its open
  /// entries travel down again so relays learn it. Throws not_found for an unknown job.
  virtual TransferChange clear_split(std::int64_t job_id) = 0;
  /// The state of a host's entry and its job's split, for an agent between two segments.
  virtual std::optional<TransferStatus> transfer_status(const std::string& host_id,
                                                        std::int64_t entry_id) = 0;

  // --- scheduling (the manager's scheduler calls these every second or so)
  /// Entries of jobs whose expiry fell in (after, upto] that can still expire become expired
  /// (after = 0 at start covers every past expiry). Returns the direct children to wake.
  virtual std::vector<std::string> expire_entries(std::int64_t after, std::int64_t upto) = 0;
  /// Direct children with open entries that became ready in (after, upto].
  virtual std::vector<std::string> vias_ready_between(std::int64_t after, std::int64_t upto) = 0;
  /// Jobs with install timing `window` that still have open entries.
  virtual std::vector<Job> open_window_jobs() = 0;
  /// Direct children with open entries of the job.
  virtual std::vector<std::string> vias_with_open_entries(std::int64_t job_id) = 0;
  /// Jobs whose rollout is running.
  virtual std::vector<Job> running_rollouts() = 0;
  virtual std::vector<WaveCounts> wave_counts(std::int64_t job_id) = 0;
  /// Releases wave `wave` (ready now); the rollout completes when it is the last. Returns the
  /// direct children to wake.
  virtual std::vector<std::string> release_wave(std::int64_t job_id, int wave) = 0;
  /// Stops the rollout: entries of waves not released are cancelled with `reason`.
  virtual void stop_rollout(std::int64_t job_id, const std::string& reason) = 0;
};

}  // namespace distrib
