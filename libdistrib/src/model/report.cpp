#include <distrib/model/report.h>

namespace distrib {

std::string_view to_string(ReportOutcome::Kind kind) noexcept {
  switch (kind) {
    case ReportOutcome::Kind::applied:
      return "applied";
    case ReportOutcome::Kind::duplicate:
      return "duplicate";
    case ReportOutcome::Kind::refused:
      return "refused";
    case ReportOutcome::Kind::unknown_entry:
      return "unknown_entry";
  }
  return "?";
}

}  // namespace distrib
