#include <distrib/error.h>
#include <distrib/model/job.h>

namespace distrib {

std::string_view to_string(JobType type) noexcept {
  switch (type) {
    case JobType::install: return "install";
    case JobType::transfer_to_relay: return "transfer-to-relay";
    case JobType::delete_package: return "delete-package";
  }
  return "?";
}

JobType parse_job_type(std::string_view text) {
  if (text == "install") return JobType::install;
  if (text == "transfer-to-relay") return JobType::transfer_to_relay;
  if (text == "delete-package") return JobType::delete_package;
  throw Error(ErrorKind::invalid_argument,
              "unknown job type \"" + std::string(text) +
                  "\" (expected install, transfer-to-relay or delete-package)");
}

std::string_view to_string(EntryState state) noexcept {
  switch (state) {
    case EntryState::waiting: return "waiting";
    case EntryState::transferring: return "transferring";
    case EntryState::transferred: return "transferred";
    case EntryState::installing: return "installing";
    case EntryState::suspended: return "suspended";
    case EntryState::succeeded: return "succeeded";
    case EntryState::failed: return "failed";
    case EntryState::cancelled: return "cancelled";
    case EntryState::expired: return "expired";
  }
  return "?";
}

EntryState parse_entry_state(std::string_view text) {
  for (auto s : kAllEntryStates)
    if (to_string(s) == text) return s;
  std::string known;
  for (auto s : kAllEntryStates) {
    if (!known.empty()) known += ", ";
    known += to_string(s);
  }
  throw Error(ErrorKind::invalid_argument,
              "unknown entry state \"" + std::string(text) + "\" (known: " + known + ")");
}

bool is_final(EntryState state) noexcept {
  switch (state) {
    case EntryState::succeeded:
    case EntryState::failed:
    case EntryState::cancelled:
    case EntryState::expired: return true;
    default: return false;
  }
}

bool can_transition(EntryState from, EntryState to) noexcept {
  using S = EntryState;
  if (from == to || is_final(from)) return false;
  switch (from) {
    case S::waiting:
      return to == S::transferring || to == S::succeeded || to == S::failed ||
             to == S::cancelled || to == S::expired || to == S::suspended;
    case S::transferring:
      return to == S::transferred || to == S::waiting || to == S::suspended ||
             to == S::succeeded || to == S::failed || to == S::cancelled || to == S::expired;
    case S::transferred:
      return to == S::installing || to == S::succeeded || to == S::failed ||
             to == S::cancelled || to == S::expired;
    case S::installing:
      // An install under way is never interrupted by the manager: it ends on the agent.
      return to == S::succeeded || to == S::failed;
    case S::suspended:
      return to == S::transferring || to == S::waiting || to == S::cancelled || to == S::expired;
    default: return false;
  }
}

bool can_reach(EntryState from, EntryState to) noexcept {
  // Breadth-first over the (small) transition graph.
  bool seen[std::size(kAllEntryStates)] = {};
  EntryState queue[std::size(kAllEntryStates)];
  std::size_t head = 0, tail = 0;
  queue[tail++] = from;
  seen[static_cast<int>(from)] = true;
  while (head < tail) {
    const auto s = queue[head++];
    for (auto next : kAllEntryStates) {
      if (seen[static_cast<int>(next)] || !can_transition(s, next)) continue;
      if (next == to) return true;
      seen[static_cast<int>(next)] = true;
      queue[tail++] = next;
    }
  }
  return false;
}

EntryState transition(EntryState from, EntryState to) {
  if (!can_transition(from, to))
    throw Error(ErrorKind::conflict, "entry cannot go from " + std::string(to_string(from)) +
                                         " to " + std::string(to_string(to)));
  return to;
}

JobProgress summarize(const std::vector<JobEntry>& entries) {
  JobProgress p;
  for (const auto& e : entries) {
    ++p.total;
    ++p.by_state[static_cast<int>(e.state)];
    if (is_final(e.state)) ++p.final_count;
  }
  return p;
}

}  // namespace distrib
