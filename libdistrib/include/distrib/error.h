#pragma once
// Error types shared by every layer of libdistrib.
//
// Policy (see docs/ARCHITECTURE.md): configuration and start-up problems throw `distrib::Error`
// with a message that names the thing and says what to do; request-level failures inside the
// services are turned into a `distrib::Error` carrying an HTTP-style status, caught at the route
// boundary and answered as a JSON error body. Nothing throws out of a network handler.
#include <stdexcept>
#include <string>

namespace distrib {

/// Broad class of a failure, stable for scripts (mapped onto HTTP statuses and CLI exit codes).
enum class ErrorKind {
  invalid_argument,      ///< the caller sent something malformed (400)
  not_found,             ///< the named object does not exist (404)
  conflict,              ///< the request contradicts existing state (409)
  unauthorized,          ///< missing or wrong credentials (401)
  forbidden,             ///< credentials do not allow this (403)
  unavailable,           ///< a dependency is down; retrying later may work (503)
  integrity,             ///< content failed verification
  internal,              ///< a bug or an unexpected environment failure (500)
  insufficient_storage,  ///< no space left where it must be written; nothing was changed (507)
};

const char* to_string(ErrorKind kind) noexcept;

/// The one exception type libdistrib throws on purpose.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  explicit Error(const std::string& message) : Error(ErrorKind::internal, message) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace distrib
