#pragma once
// Jobs, job entries and the one state machine every entry follows.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace distrib {

/// install: deliver and install a package on agents. transfer_to_relay: pre-stage a package in
/// relays' caches. delete_package: remove a package from relays' caches.
enum class JobType { install, transfer_to_relay, delete_package };
std::string_view to_string(JobType type) noexcept;
JobType parse_job_type(std::string_view text);

/// State of one host's part of a job.
///
///   waiting ──► transferring ──► transferred ──► installing ──► succeeded
///      │  ▲          │  ▲             │               │
///      │  └─retry────┘  └─suspended◄──┘ (resume)      └──────► failed
///      └──► cancelled / expired / failed (from any non-final state except installing,
///           which can only end in succeeded or failed)
///
/// `succeeded` may also be reached straight from waiting/transferring/transferred when the
/// agent already holds the payload (re-delivery is a no-op).
enum class EntryState {
  waiting,
  transferring,
  transferred,
  installing,
  suspended,
  succeeded,
  failed,
  cancelled,
  expired,
};
inline constexpr EntryState kAllEntryStates[] = {
    EntryState::waiting,   EntryState::transferring, EntryState::transferred,
    EntryState::installing, EntryState::suspended,   EntryState::succeeded,
    EntryState::failed,    EntryState::cancelled,    EntryState::expired};

std::string_view to_string(EntryState state) noexcept;
/// Parses a state name; throws Error(invalid_argument) listing the known names.
EntryState parse_entry_state(std::string_view text);
bool is_final(EntryState state) noexcept;
/// Is `from` → `to` an allowed transition? Staying in the same state is not a transition.
bool can_transition(EntryState from, EntryState to) noexcept;
/// Can an entry get from `from` to `to` through allowed transitions (one or more)? A relay that
/// reports upward in batches may skip the states in between.
bool can_reach(EntryState from, EntryState to) noexcept;
/// Returns `to` when allowed; throws Error(conflict) naming both states otherwise.
EntryState transition(EntryState from, EntryState to);

/// A job as created by an operator.
struct Job {
  std::int64_t id = 0;
  JobType type = JobType::install;
  std::string package_name;
  std::string package_version;
  std::vector<std::string> destinations;  ///< keys as the operator gave them
  std::string key_mode;                   ///< key mode the destinations were resolved with
  std::string created_by;
  std::int64_t created_at = 0;
  bool cancel_requested = false;
  std::int64_t upstream_id = 0;  ///< at a relay: the job's id at the parent (0: created here)
};

/// One host's part of a job.
struct JobEntry {
  std::int64_t id = 0;
  std::int64_t job_id = 0;
  std::string host_id;
  std::string host_name;  ///< filled in by queries for display
  std::string parent_id;    ///< the host's parent (empty: directly under this manager)
  std::string parent_name;  ///< the parent's name, for display
  EntryState state = EntryState::waiting;
  std::int32_t attempt = 1;
  std::int64_t last_seq = 0;  ///< highest report sequence applied (idempotency)
  std::optional<int> exit_code;
  std::string message;
  std::string output_tail;
  std::int64_t updated_at = 0;
};

/// Counts of a job's entries by state, for tables and progress bars.
struct JobProgress {
  std::int64_t total = 0;
  std::int64_t final_count = 0;
  std::int64_t by_state[std::size(kAllEntryStates)] = {};
  std::int64_t count(EntryState s) const noexcept { return by_state[static_cast<int>(s)]; }
  bool done() const noexcept { return total == final_count; }
};
JobProgress summarize(const std::vector<JobEntry>& entries);

}  // namespace distrib
