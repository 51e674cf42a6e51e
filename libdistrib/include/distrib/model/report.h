#pragma once
// What an agent tells about one of its entries, and what became of it.
#include <distrib/model/job.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace distrib {

/// A state report from an agent about one entry. (entry, attempt, seq) makes it idempotent.
struct EntryReport {
  std::int64_t entry_id = 0;
  std::int32_t attempt = 1;
  std::int64_t seq = 0;  ///< strictly increasing per agent
  EntryState state = EntryState::waiting;
  std::optional<int> exit_code;
  std::string message;
  std::string output_tail;
  TransferProgress progress;  ///< empty: unchanged
};

/// What happened to a report.
struct ReportOutcome {
  enum class Kind { applied, duplicate, refused, unknown_entry } kind = Kind::applied;
  EntryState current = EntryState::waiting;  ///< the entry's state after the call
  /// The failure was turned into a retry: the entry waits (next attempt) until `retry_at`.
  bool retried = false;
  std::int64_t retry_at = 0;
};
std::string_view to_string(ReportOutcome::Kind kind) noexcept;

}  // namespace distrib
