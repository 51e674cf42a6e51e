#include <distrib/error.h>
#include <distrib/model/enrolment.h>

namespace distrib {

std::string_view to_string(EnrolmentState state) noexcept {
  switch (state) {
    case EnrolmentState::pending:
      return "pending";
    case EnrolmentState::accepted:
      return "accepted";
    case EnrolmentState::rejected:
      return "rejected";
    case EnrolmentState::revoked:
      return "revoked";
  }
  return "?";
}

EnrolmentState parse_enrolment_state(std::string_view text) {
  for (auto s :
       {EnrolmentState::pending, EnrolmentState::accepted, EnrolmentState::rejected, EnrolmentState::revoked})
    if (to_string(s) == text) return s;
  throw Error(ErrorKind::invalid_argument, "unknown enrolment state \"" + std::string(text) +
                                               "\" (expected pending, accepted, rejected or revoked)");
}

}  // namespace distrib
