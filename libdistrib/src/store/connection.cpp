#include "store/connection.h"

#include <distrib/error.h>
#include <distrib/store/store.h>

#include "store/dialect.h"

#include <sql.h>
#include <sqlext.h>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <algorithm>
#include <cctype>

namespace distrib::store {
namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const std::vector<std::string> kLibpqKeys = {"host",
                                             "hostaddr",
                                             "port",
                                             "dbname",
                                             "user",
                                             "password",
                                             "passfile",
                                             "channel_binding",
                                             "connect_timeout",
                                             "client_encoding",
                                             "options",
                                             "application_name",
                                             "fallback_application_name",
                                             "keepalives",
                                             "keepalives_idle",
                                             "keepalives_interval",
                                             "keepalives_count",
                                             "tcp_user_timeout",
                                             "replication",
                                             "gssencmode",
                                             "sslmode",
                                             "requiressl",
                                             "sslcompression",
                                             "sslcert",
                                             "sslkey",
                                             "sslpassword",
                                             "sslrootcert",
                                             "sslcrl",
                                             "sslcrldir",
                                             "sslsni",
                                             "requirepeer",
                                             "ssl_min_protocol_version",
                                             "ssl_max_protocol_version",
                                             "krbsrvname",
                                             "gsslib",
                                             "service",
                                             "target_session_attrs",
                                             "load_balance_hosts"};

std::string hint(const std::string& word, const std::vector<std::string>& known) {
  const auto n = nearest(word, known);
  return n.empty() ? std::string() : " (did you mean " + n + "?)";
}

// libpq's value quoting: '...' with \\ and \' escaped.
std::string quote_value(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "'";
}

// postgresql://user:password@host:port/dbname?key=value as libpq keywords. (SOCI's PostgreSQL
// backend takes only the keyword form: it breaks a URI apart at its own separators.)
std::string uri_to_keywords(const std::string& uri) {
  auto parsed = boost::urls::parse_uri(uri);
  if (!parsed)
    throw Error(ErrorKind::invalid_argument, "the postgresql connection URI is malformed (" +
                                                 parsed.error().message() +
                                                 "): expected postgresql://user:password@host:port/dbname");
  const auto& u = *parsed;
  std::string out;
  auto add = [&](const std::string& key, const std::string& value) {
    if (!value.empty()) out += (out.empty() ? "" : " ") + key + "=" + quote_value(value);
  };
  add("host", u.host());
  add("port", u.port());
  add("user", u.user());
  add("password", u.password());
  std::string db = u.path();
  if (!db.empty() && db.front() == '/') db.erase(0, 1);
  add("dbname", db);
  for (const auto& p : u.params()) {
    if (!p.has_value)
      throw Error(ErrorKind::invalid_argument,
                  "parameter \"" + p.key + "\" of the postgresql connection URI has no value");
    out += (out.empty() ? "" : " ") + p.key + "=" + quote_value(p.value);
  }
  return out;
}

}  // namespace

std::string nearest(const std::string& word, const std::vector<std::string>& known) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& k : known) {
    const auto a = lower(word), b = lower(k);
    std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (std::size_t j = 1; j <= b.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      std::swap(prev, cur);
    }
    if (prev[b.size()] < best_d) {
      best_d = prev[b.size()];
      best = k;
    }
  }
  return best;
}

std::string check_postgresql_connection(const std::string& connection, int connect_timeout_seconds) {
  if (connection.empty())
    throw Error(ErrorKind::invalid_argument,
                "the postgresql connection string is empty (e.g. \"host=127.0.0.1 port=5432 dbname=distrib "
                "user=distrib password=...\")");
  if (connection.rfind("postgresql://", 0) == 0 || connection.rfind("postgres://", 0) == 0)
    return check_postgresql_connection(uri_to_keywords(connection), connect_timeout_seconds);
  bool has_timeout = false;
  std::size_t i = 0;
  while (i < connection.size()) {
    while (i < connection.size() && std::isspace(static_cast<unsigned char>(connection[i]))) ++i;
    if (i >= connection.size()) break;
    std::size_t j = i;
    while (j < connection.size() && connection[j] != '=' &&
           !std::isspace(static_cast<unsigned char>(connection[j])))
      ++j;
    const std::string key = connection.substr(i, j - i);
    std::size_t k = j;
    while (k < connection.size() && std::isspace(static_cast<unsigned char>(connection[k]))) ++k;
    if (k >= connection.size() || connection[k] != '=')
      throw Error(ErrorKind::invalid_argument,
                  "part \"" + key + "\" of the postgresql connection string is not KEY=VALUE");
    if (std::find(kLibpqKeys.begin(), kLibpqKeys.end(), key) == kLibpqKeys.end())
      throw Error(ErrorKind::invalid_argument,
                  "unknown key \"" + key + "\" in the postgresql connection string" + hint(key, kLibpqKeys));
    if (key == "connect_timeout") has_timeout = true;
    ++k;
    while (k < connection.size() && std::isspace(static_cast<unsigned char>(connection[k]))) ++k;
    if (k < connection.size() && connection[k] == '\'') {
      ++k;
      while (k < connection.size() && connection[k] != '\'') k += connection[k] == '\\' ? 2u : 1u;
      if (k >= connection.size())
        throw Error(ErrorKind::invalid_argument, "the value of \"" + key +
                                                     "\" in the postgresql connection string "
                                                     "has no closing quote");
      ++k;
    } else {
      while (k < connection.size() && !std::isspace(static_cast<unsigned char>(connection[k]))) ++k;
    }
    i = k;
  }
  if (has_timeout || connect_timeout_seconds <= 0) return connection;
  return connection + " connect_timeout=" + std::to_string(connect_timeout_seconds);
}

std::vector<OdbcPart> parse_odbc_connection(const std::string& connection) {
  std::vector<OdbcPart> out;
  std::size_t i = 0;
  while (i < connection.size()) {
    while (i < connection.size() &&
           (connection[i] == ';' || std::isspace(static_cast<unsigned char>(connection[i]))))
      ++i;
    if (i >= connection.size()) break;
    const auto eq = connection.find('=', i);
    const auto semi = connection.find(';', i);
    if (eq == std::string::npos || (semi != std::string::npos && semi < eq))
      throw Error(ErrorKind::invalid_argument,
                  "part \"" + connection.substr(i, semi == std::string::npos ? semi : semi - i) +
                      "\" of the ODBC connection string is not KEY=VALUE");
    OdbcPart p;
    p.key = connection.substr(i, eq - i);
    while (!p.key.empty() && std::isspace(static_cast<unsigned char>(p.key.back()))) p.key.pop_back();
    std::size_t k = eq + 1;
    if (k < connection.size() && connection[k] == '{') {
      const auto close = connection.find('}', k);
      if (close == std::string::npos)
        throw Error(ErrorKind::invalid_argument,
                    "the value of " + p.key + " in the ODBC connection string has no closing }");
      p.value = connection.substr(k + 1, close - k - 1);
      k = close + 1;
      if (k < connection.size() && connection[k] != ';')
        throw Error(ErrorKind::invalid_argument,
                    "text after the } of " + p.key + " in the ODBC connection string");
    } else {
      const auto end = connection.find(';', k);
      p.value = connection.substr(k, end == std::string::npos ? std::string::npos : end - k);
      k = end == std::string::npos ? connection.size() : end;
    }
    out.push_back(std::move(p));
    i = k;
  }
  return out;
}

std::string check_odbc_connection(const std::string& connection, const std::string& dialect,
                                  const std::vector<std::string>& installed_drivers) {
  if (!dialect.empty() && find_dialect(dialect) == nullptr)
    throw Error(ErrorKind::invalid_argument,
                "unknown ODBC dialect \"" + dialect + "\" (known: " + dialect_names() + ")" +
                    hint(dialect, {"sqlite", "postgresql", "sqlserver", "oracle"}));
  const auto parts = parse_odbc_connection(connection);
  std::string driver, dsn;
  for (const auto& p : parts) {
    const auto key = lower(p.key);
    if (key == "driver") driver = p.value;
    if (key == "dsn" || key == "filedsn") dsn = p.value;
  }
  if (driver.empty() && dsn.empty())
    throw Error(
        ErrorKind::invalid_argument,
        "the ODBC connection string names neither DRIVER={...} nor DSN=... "
        "(e.g. \"DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;DATABASE=distrib;UID=u;PWD=p\")");
  if (!driver.empty() && driver.front() != '/' &&
      std::find(installed_drivers.begin(), installed_drivers.end(), driver) == installed_drivers.end()) {
    std::string list;
    for (const auto& d : installed_drivers) list += (list.empty() ? "" : ", ") + d;
    throw Error(ErrorKind::invalid_argument,
                "ODBC driver \"" + driver + "\" named by DRIVER= is not installed" +
                    hint(driver, installed_drivers) + " (installed: " + (list.empty() ? "none" : list) +
                    "; see odbcinst -q -d)");
  }
  if (!dialect.empty()) return dialect;
  const auto d = lower(driver);
  if (d.find("postgres") != std::string::npos) return "postgresql";
  if (d.find("sqlite") != std::string::npos) return "sqlite";
  if (d.find("sql server") != std::string::npos || d.find("freetds") != std::string::npos) return "sqlserver";
  if (d.find("oracle") != std::string::npos) return "oracle";
  throw Error(ErrorKind::invalid_argument,
              "cannot tell the SQL dialect of ODBC " +
                  (driver.empty() ? "DSN \"" + dsn + "\"" : "driver \"" + driver + "\"") +
                  ": set it (database-dialect = " + dialect_names() + ")");
}

std::vector<std::string> installed_odbc_drivers() {
  std::vector<std::string> out;
  SQLHENV env = SQL_NULL_HENV;
  if (!SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &env))) return out;
  SQLSetEnvAttr(env, SQL_ATTR_ODBC_VERSION, reinterpret_cast<SQLPOINTER>(SQL_OV_ODBC3), 0);
  SQLCHAR name[512];
  SQLCHAR attrs[2048];
  SQLSMALLINT name_len = 0, attrs_len = 0;
  SQLUSMALLINT direction = SQL_FETCH_FIRST;
  while (SQL_SUCCEEDED(
      SQLDrivers(env, direction, name, sizeof name, &name_len, attrs, sizeof attrs, &attrs_len))) {
    out.emplace_back(reinterpret_cast<const char*>(name));
    direction = SQL_FETCH_NEXT;
  }
  SQLFreeHandle(SQL_HANDLE_ENV, env);
  return out;
}

}  // namespace distrib::store

namespace distrib {

std::vector<std::string> check_store_settings(const StoreSettings& settings) {
  std::vector<std::string> warnings;
  if (settings.backend == "postgresql") store::check_postgresql_connection(settings.connection, 0);
  if (settings.backend == "odbc") {
    if (settings.connection.empty())
      throw Error(ErrorKind::invalid_argument,
                  "the odbc backend needs a connection string (database-connection)");
    auto installed = store::installed_odbc_drivers();
    for (const auto& p : store::parse_odbc_connection(settings.connection)) {
      std::string key = p.key;
      for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (key == "driver" && !p.value.empty() && p.value.front() != '/' &&
          std::find(installed.begin(), installed.end(), p.value) == installed.end()) {
        // The configuration may be meant for another machine: say it, do not refuse it.
        warnings.push_back("ODBC driver \"" + p.value +
                           "\" is not installed on this machine (see odbcinst -q -d)");
        installed.push_back(p.value);
      }
    }
    store::check_odbc_connection(settings.connection, settings.dialect, installed);
  }
  return warnings;
}

}  // namespace distrib
