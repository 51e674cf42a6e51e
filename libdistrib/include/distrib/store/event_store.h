#pragma once
// The durable outbox of events that sinks take in order, and the audit trail of administrative
// actions.
// Part of the Store interface (store.h), whose contract every call follows: blocking,
// thread-safe, one transaction per call, failures thrown as distrib::Error.
#include <distrib/model/event.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace distrib {

/// Events (written with the change they tell of) with each sink's position, and audit records.
class EventStore {
 public:
  virtual ~EventStore() = default;

  // --- events (the durable outbox)
  /// Events with id > `after_id`, oldest first.
  virtual std::vector<Event> events_after(std::int64_t after_id, int limit) = 0;
  /// Events with id < `before_id` (0: all), newest first.
  virtual std::vector<Event> events_before(std::int64_t before_id, int limit) = 0;
  /// The id of the last event `sink` has taken; -1 when the sink has no position yet (never ran).
  virtual std::int64_t event_cursor(const std::string& sink) = 0;
  virtual void set_event_cursor(const std::string& sink, std::int64_t last_id) = 0;
  /// Deletes events older than `before_ms` that every sink has taken (id <= `upto_id`); returns
  /// how many. Sinks' positions are the caller's to know (they are configuration).
  virtual std::int64_t prune_events(std::int64_t before_ms, std::int64_t upto_id) = 0;
  /// Records events that no other change carries (most are written by the change itself).
  virtual void record_events(const std::vector<Event>& events) = 0;
  /// The id of the newest event (0: none).
  virtual std::int64_t last_event_id() = 0;
  /// Called (on the writing thread, after the commit) whenever a transaction wrote events; it
  /// must be quick and thread-safe (wake a thread). Set it before the store is used concurrently.
  virtual void set_event_listener(std::function<void()> listener) = 0;

  // --- audit trail of administrative actions
  virtual void append_audit(const std::vector<AuditRecord>& records) = 0;
  /// Newest first; `before_id` > 0 pages backwards.
  virtual std::vector<AuditRecord> audit_records(int limit, std::int64_t before_id = 0) = 0;
};

}  // namespace distrib
