#pragma once
// Events worth telling systems outside: one typed model for everything (entry and job state
// changes, hosts, packages, inventory, the cluster, the database). Written to the store in the
// transaction of the change that caused them (a durable outbox) and delivered to sinks at least
// once, in order per sink (distrib/services/events.h).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace distrib {

enum class Severity { info, warning, error };
std::string_view to_string(Severity s) noexcept;
/// Throws Error(invalid_argument) naming the known severities.
Severity parse_severity(std::string_view s);

struct Event {
  std::int64_t id = 0;  ///< increasing; the order of delivery
  std::string type;     ///< stable identifier: "job.completed", "entry.failed", "host.registered", ...
  Severity severity = Severity::info;
  std::int64_t at_ms = 0;   ///< milliseconds since the epoch
  std::int64_t job_id = 0;  ///< the objects it concerns (0 / empty: none)
  std::string host_id;
  std::string subject;  ///< a name: host name, package name-version, node name, ...
  std::string message;  ///< one line for people
};

/// The event types emitted, for filters and documentation.
const std::vector<std::string>& event_types();

/// One JSON object (no newline): {"id","type","severity","time" (RFC 3339, UTC, milliseconds),
/// "at_ms","job_id","host_id","subject","message"}; job_id/host_id/subject only when set.
std::string event_to_json(const Event& e);
/// RFC 3339 UTC time with milliseconds, e.g. "2026-12-01T13:30:28.123Z".
std::string format_rfc3339_ms(std::int64_t at_ms);

/// Which events a sink takes: type patterns ("job.*", "entry.failed"; empty: all) and a lowest
/// severity.
struct EventFilter {
  std::vector<std::string> types;
  Severity min_severity = Severity::info;
  bool matches(const Event& e) const;
};
/// Parses "job.*,entry.failed"; every pattern must match at least one known event type, or
/// Error(invalid_argument) names it and lists the known types.
std::vector<std::string> parse_event_type_patterns(const std::string& list);

/// An administrative action, appended to the audit trail (distribctl audit).
struct AuditRecord {
  std::int64_t id = 0;
  std::int64_t at_ms = 0;
  std::string actor;   ///< who: what the client says it is (X-Distrib-Actor), else "admin"
  std::string remote;  ///< from where: the client's address
  std::string action;  ///< what: "POST /v1/jobs"
  std::string target;  ///< the object, when the route names one ("job 12", "package app 1.0")
  int status = 0;      ///< the HTTP status answered
  std::string result;  ///< "ok" or the error message
};

}  // namespace distrib
