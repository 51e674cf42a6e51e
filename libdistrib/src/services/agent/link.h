#pragma once
// The agent's link to its parent: calls to the current parent, fallback and backoff when they fail,
// registration, joins, the durable outbox of reports and the local journal of entries.
#include "services/agent/context.h"

#include <random>

namespace distrib::agent {

/// Thrown inside entry processing when the manager says the entry is no longer ours to run.
struct EntryWithdrawn {
  EntryState state;
};

class Link {
 public:
  /// Loads the report sequence number: it only grows, even if the seq file was lost (never
  /// below a queued report's).
  explicit Link(Context& ctx);
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  /// One JSON call to the registered parent; Error(unavailable) before registration.
  bj::object call(std::string_view method, std::string_view target, const bj::value& body);
  /// A contact failed: try the next parent at once; back off (with jitter) when every parent
  /// failed. Clears the registration.
  void failed_contact(const std::string& why);
  /// A contact succeeded: the next outage starts its backoff afresh.
  void contact_succeeded() { backoff_ms_ = 0; }

  /// With an https parent: makes sure this agent holds a valid certificate (enrols at the first
  /// start, renews when a third of its lifetime is left; checked at most once a minute).
  /// Returns false while the enrolment waits for an administrator (the caller waits and tries
  /// again); throws Error when the parent cannot be reached or refuses.
  bool ensure_enrolled();
  /// Registers with the current parent (and joins the configured ID groups there).
  void register_with_parent();
  /// Joins or leaves an ID group at the registered parent; `how` says who asked.
  bj::object join_call(const std::string& group, const std::string& password, bool leave, const char* how);

  /// The state the journal holds for this attempt of an entry, if any.
  std::optional<EntryState> journal_state(std::int64_t entry_id, std::int32_t attempt);
  void write_journal(std::int64_t entry_id, std::int32_t attempt, EntryState state);
  /// A new attempt of an entry: what the server said of the last one is over.
  void new_attempt(std::int64_t entry_id) { confirmed_.erase(entry_id); }
  /// Queues a report durably (journal first, then outbox), then tries to deliver it. Throws
  /// EntryWithdrawn when the manager already holds the entry as final or suspended.
  void report(std::int64_t entry_id, std::int32_t attempt, EntryState state, std::string message = {},
              std::optional<int> exit_code = {}, std::string output_tail = {},
              TransferProgress progress = {});
  /// Sends every queued report in order; deletes those the manager acknowledged.
  void flush_outbox();

 private:
  stdfs::path journal_dir() const;

  Context& ctx_;
  std::chrono::steady_clock::time_point identity_checked_{};
  int backoff_ms_ = 0;
  std::chrono::steady_clock::time_point outage_since_;
  std::minstd_rand rng_{std::random_device{}()};
  std::int64_t next_seq_ = 1;
  // Entry id → state the manager last confirmed (from report results).
  std::map<std::int64_t, EntryState> confirmed_;
};

}  // namespace distrib::agent
