#include <distrib/error.h>
#include <distrib/version.h>

namespace distrib {

const char* to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::invalid_argument:
      return "invalid_argument";
    case ErrorKind::not_found:
      return "not_found";
    case ErrorKind::conflict:
      return "conflict";
    case ErrorKind::unauthorized:
      return "unauthorized";
    case ErrorKind::forbidden:
      return "forbidden";
    case ErrorKind::unavailable:
      return "unavailable";
    case ErrorKind::integrity:
      return "integrity";
    case ErrorKind::internal:
      return "internal";
    case ErrorKind::insufficient_storage:
      return "insufficient_storage";
  }
  return "internal";
}

const char* version() noexcept {
  return DISTRIB_VERSION_STRING;
}

}  // namespace distrib
