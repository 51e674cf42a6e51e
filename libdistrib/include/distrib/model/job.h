#pragma once
// Jobs, job entries and the one state machine every entry follows.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace distrib {

/// install: deliver and install a package on agents. transfer_to_relay: pre-stage a package in
/// relays' caches. delete_package: remove a package from relays' caches. get_system_info,
/// get_software_info: agents report that part of their inventory now. collect_files: agents send
/// files back to the manager. uninstall: agents run the package's uninstall command and remove
/// its install directory.
enum class JobType {
  install,
  transfer_to_relay,
  delete_package,
  get_system_info,
  get_software_info,
  collect_files,
  uninstall
};
std::string_view to_string(JobType type) noexcept;
/// Parses "install", "transfer-to-relay", "delete-package", "get-system-info",
/// "get-software-info", "collect-files" or "uninstall"; throws Error listing them.
JobType parse_job_type(std::string_view text);
/// Does the job go to agents (otherwise to relays)?
bool targets_agents(JobType type) noexcept;
/// Does the job name a package?
bool needs_package(JobType type) noexcept;

/// What a collect-files job fetches: absolute paths or glob patterns ("/var/log/*.log"), and the
/// limits. Agents only collect under their own allowlist (agent configuration).
struct CollectSpec {
  std::vector<std::string> paths;
  std::uint64_t max_file_bytes = 16ull << 20;
  std::uint64_t max_total_bytes = 256ull << 20;
  friend bool operator==(const CollectSpec&, const CollectSpec&) = default;
};
/// Largest limits accepted: 256 MiB per file (a file travels as one request), 4 GiB per host.
inline constexpr std::uint64_t kMaxCollectFile = 256ull << 20;
inline constexpr std::uint64_t kMaxCollectTotal = 4ull << 30;
/// Throws Error(invalid_argument) naming the problem: no paths, a relative path or one with "..",
/// a limit of 0 or above the maximum, a per-file limit above the total.
void validate_collect(const CollectSpec& spec);
/// Did the job ask for `path` (an absolute path an agent sends)? It did when one of its patterns
/// matches the path or a directory above it (shell globbing: '*' does not cross '/').
bool collect_requested(const CollectSpec& spec, const std::string& path);

/// State of one host's part of a job.
///
///   waiting ──► transferring ──► transferred ──► installing ──► succeeded
///      │  ▲          │  ▲             │               │
///      │  └─retry────┘  └─suspended◄──┘ (resume)      └──────► failed
///      └──► cancelled / expired / failed (from any non-final state except installing,
///           which can only end in succeeded or failed)
///
/// `succeeded` may also be reached straight from waiting/transferring/transferred when the
/// agent already holds the payload (re-delivery is a no-op). `not_applicable` is final and ends
/// an entry from waiting or transferring when the package's check command says the host already
/// satisfies it: nothing was fetched or installed; rollouts count it as a success.
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
  not_applicable,
};
inline constexpr EntryState kAllEntryStates[] = {
    EntryState::waiting,   EntryState::transferring,  EntryState::transferred, EntryState::installing,
    EntryState::suspended, EntryState::succeeded,     EntryState::failed,      EntryState::cancelled,
    EntryState::expired,   EntryState::not_applicable};
/// Did the entry end well (succeeded, or not applicable)?
constexpr bool is_success(EntryState state) noexcept {
  return state == EntryState::succeeded || state == EntryState::not_applicable;
}

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

/// When an agent installs what it received.
///  immediate: as soon as the entry is ready. at_start: at the agent's next start (its first
///  contact after starting). at_stop: during the agent's orderly shutdown. window: only while
///  the daily window is open (clock of the server the agent polls).
enum class InstallTiming { immediate, at_start, at_stop, window };
std::string_view to_string(InstallTiming timing) noexcept;
/// Parses "immediate", "at-start", "at-stop" or "window"; throws Error listing them.
InstallTiming parse_install_timing(std::string_view text);

/// A daily time window in minutes after midnight; end < start wraps past midnight.
struct DailyWindow {
  int start_minute = 0;
  int end_minute = 0;
  bool contains(int minute_of_day) const noexcept;
};
/// Parses "HH:MM-HH:MM"; throws Error(invalid_argument) naming the text.
DailyWindow parse_daily_window(std::string_view text);
std::string to_string(const DailyWindow& window);

/// Time rules of a job. Times are unix seconds; 0 means "not set".
struct JobSchedule {
  std::int64_t start_at = 0;    ///< entries are not delivered before this
  std::int64_t expires_at = 0;  ///< entries not final (and not installing) by then become expired
  InstallTiming timing = InstallTiming::immediate;
  DailyWindow window;              ///< used when timing is window
  int max_retries = 0;             ///< automatic retries of an entry after a transfer failure
  bool retry_installs = false;     ///< ... and after a failed install
  int retry_backoff_seconds = 30;  ///< first retry delay, doubled each attempt (at most 1 h)
};
/// Throws Error(invalid_argument) when the schedule cannot work: a start time after its expiry,
/// an expiry already past at `now`, negative retry counts, an empty window.
void validate_schedule(const JobSchedule& schedule, std::int64_t now);
/// Seconds to wait before attempt `next_attempt` (2 = the first retry).
std::int64_t retry_delay(const JobSchedule& schedule, int next_attempt) noexcept;

/// A staged rollout: entries are released in waves. `waves` are cumulative percentages of the
/// job's hosts (for example 5, 25, 100), hosts drawn at random. The next wave starts once
/// `success_threshold` % of the current wave succeeded; the rollout stops (held entries are
/// cancelled) once more than `error_threshold` % of the released entries failed or expired, or
/// when a wave ends below its success threshold.
struct Rollout {
  std::vector<int> waves;  ///< empty: no rollout, every entry at once
  int success_threshold = 90;
  int error_threshold = 10;
};
/// Parses "5,25,100" (strictly increasing percentages ending at 100).
std::vector<int> parse_waves(std::string_view text);
void validate_rollout(const Rollout& rollout);
/// Wave number (1-based) of each of `n` hosts in the order given; callers shuffle first. Every
/// wave that covers a non-zero share gets at least one host while hosts remain.
std::vector<int> assign_waves(std::size_t n, const std::vector<int>& waves);

enum class RolloutState { none, running, stopped, completed };
std::string_view to_string(RolloutState state) noexcept;
RolloutState parse_rollout_state(std::string_view text);

/// Entry counts of one wave.
struct WaveCounts {
  int wave = 0;
  std::int64_t total = 0, succeeded = 0, failed = 0, final_count = 0;
};
/// What a rollout should do next, given its waves' counts (index = wave - 1).
struct RolloutVerdict {
  enum class Action { wait, advance, stop } action = Action::wait;
  std::string reason;  ///< for stop: why, in words an operator reads in `job show`
};
RolloutVerdict evaluate_rollout(const Rollout& rollout, int current_wave,
                                const std::vector<WaveCounts>& waves);

/// Split distribution: the payload travels in segments of at most `size` bytes (whole chunks)
/// with `interval_seconds` between segments. size 0 = not split.
struct SplitSpec {
  std::uint64_t size = 0;
  int interval_seconds = 0;
  bool enabled() const noexcept { return size != 0; }
  friend bool operator==(const SplitSpec&, const SplitSpec&) = default;
};
/// Largest segment accepted (2 GiB) and longest interval (24 h).
inline constexpr std::uint64_t kMaxSegmentSize = std::uint64_t{2} << 30;
inline constexpr int kMaxSegmentInterval = 24 * 3600;
/// Parses "SIZE/INTERVAL" ("1MiB/60s", "256KiB/1s"); "none" or "" is not split. Throws
/// Error(invalid_argument) naming the part that is wrong (a size of 0 or above 2 GiB, an
/// interval of 0 or above 24 h).
SplitSpec parse_split(std::string_view text);
/// Throws Error(invalid_argument) when an enabled split is outside the limits above.
void validate_split(const SplitSpec& split);
/// "1.0 MiB/60s" or "none".
std::string to_string(const SplitSpec& split);
/// The split of one hop (the JP1/SD rule): the smaller segment size wins, with the interval
/// that came with it; equal sizes take the receiver's interval. Either side may be unset.
SplitSpec hop_split(const SplitSpec& offered, const SplitSpec& receiver) noexcept;
/// Cuts chunk sizes (in payload order) into segments of whole chunks of at most `size` bytes
/// (a chunk larger than `size` is a segment of its own). Returns the index one past the last
/// chunk of each segment. size 0: one segment.
std::vector<std::size_t> plan_segments(const std::vector<std::uint64_t>& chunk_sizes, std::uint64_t size,
                                       std::size_t from = 0);

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
  JobSchedule schedule;
  Rollout rollout;
  RolloutState rollout_state = RolloutState::none;
  int current_wave = 0;         ///< highest wave released (rollouts)
  std::string rollout_message;  ///< why a rollout stopped
  /// ID groups the job stands for: hosts joining them later receive it too.
  std::vector<std::string> id_groups;
  SplitSpec split;      ///< split distribution (none by default)
  CollectSpec collect;  ///< collect-files jobs
  bool force = false;   ///< install jobs: install again even where the package is installed intact
};
/// The type an order names for the job (security/orders.h): the job type, "+force" appended when
/// forced, so that no relay can force or unforce an install.
std::string order_type(const Job& job);

/// How a wave of the job's rollout stands: "done", "running", "held" or "stopped".
std::string_view wave_state(const Job& job, const WaveCounts& wave) noexcept;

/// An entry that is not delivered yet because its wave is held.
inline constexpr std::int64_t kHeldUntilReleased = std::int64_t{1} << 62;

/// How far an entry's transfer got: segments done of the total, bytes received over the wire
/// (all runs of the attempt, resumes included) and chunks that failed verification and were
/// fetched again.
struct TransferProgress {
  std::int64_t segments_done = 0;
  std::int64_t segments_total = 0;
  std::int64_t bytes_received = 0;
  std::int64_t bad_chunks = 0;
  bool empty() const noexcept { return segments_total == 0 && bytes_received == 0 && bad_chunks == 0; }
};

/// One host's part of a job.
struct JobEntry {
  std::int64_t id = 0;
  std::int64_t job_id = 0;
  std::string host_id;
  std::string host_name;    ///< filled in by queries for display
  std::string parent_id;    ///< the host's parent (empty: directly under this manager)
  std::string parent_name;  ///< the parent's name, for display
  EntryState state = EntryState::waiting;
  std::int32_t attempt = 1;
  std::int64_t last_seq = 0;  ///< highest report sequence applied (idempotency)
  std::optional<int> exit_code;
  std::string message;
  std::string output_tail;
  std::int64_t updated_at = 0;
  int wave = 0;               ///< rollout wave (0: the job has no waves)
  bool late_join = false;     ///< created when the host joined an ID group after the job
  std::int64_t ready_at = 0;  ///< not delivered before (start time, retry backoff, held wave)
  /// Transfer progress as the agent last reported it.
  TransferProgress progress;
  /// At a relay: the order the top manager signed for this attempt, passed on untouched.
  std::string signed_order;
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

/// What creating a job made.
struct JobCreated {
  Job job;
  std::int64_t entries = 0;
  std::vector<std::string> vias;  ///< direct children with new work
};

/// A job with its entry counts, for listings.
struct JobListing {
  Job job;
  JobProgress progress;
};

/// What suspending, resuming or completing transfers changed.
struct TransferChange {
  std::int64_t entries = 0;
  std::vector<std::string> vias;  ///< direct children to wake
};

/// An entry's state and its job's split as they stand now.
struct TransferStatus {
  EntryState state = EntryState::waiting;
  std::int32_t attempt = 1;
  SplitSpec split;
};

}  // namespace distrib
