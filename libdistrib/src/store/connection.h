#pragma once
// Connection strings of the server backends, checked before a connection is tried so that a
// typo is named rather than reported by the driver as "cannot connect".
#include <string>
#include <vector>

namespace distrib::store {

/// Checks a libpq connection string (KEY=VALUE parts, or a postgresql:// URI) and returns it
/// with connect_timeout added when absent. Throws Error(invalid_argument) naming the part that
/// is wrong (an unknown key with the nearest known one, a part without '=').
std::string check_postgresql_connection(const std::string& connection, int connect_timeout_seconds);

/// The parts of an ODBC connection string (KEY=VALUE;..., values may be {braced}).
struct OdbcPart {
  std::string key;  ///< as written
  std::string value;
};
std::vector<OdbcPart> parse_odbc_connection(const std::string& connection);

/// Checks an ODBC connection string against the installed drivers and returns the dialect:
/// `dialect` when given (checked), else the one the driver's name implies. Throws
/// Error(invalid_argument) naming the problem: no DRIVER or DSN, a driver that is not installed
/// (listing those that are), an unknown dialect, a driver whose dialect cannot be guessed.
std::string check_odbc_connection(const std::string& connection, const std::string& dialect,
                                  const std::vector<std::string>& installed_drivers);

/// Drivers the ODBC driver manager knows (odbcinst.ini).
std::vector<std::string> installed_odbc_drivers();

/// The known word nearest to `word` by edit distance, or "" when none is close.
std::string nearest(const std::string& word, const std::vector<std::string>& known);

}  // namespace distrib::store
