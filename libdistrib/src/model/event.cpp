#include <distrib/error.h>
#include <distrib/model/event.h>

#include <fnmatch.h>
#include <boost/json.hpp>

#include <algorithm>
#include <ctime>

namespace distrib {

std::string_view to_string(Severity s) noexcept {
  switch (s) {
    case Severity::info:
      return "info";
    case Severity::warning:
      return "warning";
    case Severity::error:
      return "error";
  }
  return "info";
}

Severity parse_severity(std::string_view s) {
  if (s == "info") return Severity::info;
  if (s == "warning") return Severity::warning;
  if (s == "error") return Severity::error;
  throw Error(ErrorKind::invalid_argument,
              "unknown severity \"" + std::string(s) + "\" (known: info, warning, error)");
}

const std::vector<std::string>& event_types() {
  static const std::vector<std::string> types = {
      "job.created",          "job.completed",      "job.failed",           "job.cancelled",
      "entry.succeeded",      "entry.failed",       "entry.retrying",       "entry.expired",
      "host.registered",      "host.changed",       "host.conflict",        "host.silent",
      "host.returned",        "package.registered", "package.deleted",      "inventory.changed",
      "cluster.takeover",     "database.outage",    "host.enrol_requested", "host.enrolled",
      "host.rejected",        "host.revoked",       "host.refused",         "content.corrupt",
      "entry.not_applicable", "cluster.state"};
  return types;
}

std::string format_rfc3339_ms(std::int64_t at_ms) {
  const std::time_t secs = static_cast<std::time_t>(at_ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[40];
  const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>(((at_ms % 1000) + 1000) % 1000));
  return std::string(buf, n) + ms;
}

std::string event_to_json(const Event& e) {
  boost::json::object o{{"id", e.id},
                        {"type", e.type},
                        {"severity", std::string(to_string(e.severity))},
                        {"time", format_rfc3339_ms(e.at_ms)},
                        {"at_ms", e.at_ms}};
  if (e.job_id != 0) o["job_id"] = e.job_id;
  if (!e.host_id.empty()) o["host_id"] = e.host_id;
  if (!e.subject.empty()) o["subject"] = e.subject;
  o["message"] = e.message;
  return boost::json::serialize(o);
}

bool EventFilter::matches(const Event& e) const {
  if (e.severity < min_severity) return false;
  if (types.empty()) return true;
  return std::any_of(types.begin(), types.end(),
                     [&](const std::string& p) { return fnmatch(p.c_str(), e.type.c_str(), 0) == 0; });
}

std::vector<std::string> parse_event_type_patterns(const std::string& list) {
  std::vector<std::string> out;
  for (std::size_t start = 0;;) {
    const auto comma = list.find(',', start);
    const auto t = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const bool known =
        !t.empty() && std::any_of(event_types().begin(), event_types().end(), [&](const std::string& k) {
          return fnmatch(t.c_str(), k.c_str(), 0) == 0;
        });
    if (!known) {
      std::string names;
      for (const auto& k : event_types()) names += (names.empty() ? "" : ", ") + k;
      throw Error(ErrorKind::invalid_argument,
                  "event type filter \"" + t + "\" matches no event type (known: " + names + ")");
    }
    out.push_back(t);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace distrib
