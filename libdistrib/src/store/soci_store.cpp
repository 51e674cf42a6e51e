// The built-in store backends (sqlite, postgresql, odbc), each a SociStore (store/soci/) with its dialect.
#include <distrib/error.h>
#include <distrib/model/event.h>
#include <distrib/store/store.h>

#include "store/soci/soci_store.h"

#include "model/json_codec.h"
#include "store/connection.h"
#include "store/dialect.h"
#include "util/fs.h"

#include <distrib/content/digest.h>

#include <fmt/format.h>
#include <boost/json.hpp>

#include <soci/odbc/soci-odbc.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <spdlog/spdlog.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <istream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_set>

namespace distrib {

int latest_schema_version() noexcept {
  return store::migrations().back().version;
}

void register_builtin_stores(StoreRegistry& registry) {
  registry.add("sqlite", [](const StoreSettings& s) -> std::unique_ptr<Store> {
    if (s.path.empty()) throw Error(ErrorKind::invalid_argument, "sqlite database path is not set");
    {
      // SOCI would create a missing file silently; check that an existing one is readable.
      std::error_code ec;
      if (std::filesystem::exists(s.path, ec) && ::access(s.path.c_str(), R_OK | W_OK) != 0)
        throw Error(ErrorKind::invalid_argument, "database " + s.path + " is not readable and writable");
    }
    const std::string conn = "db=" + s.path + " timeout=" + std::to_string(s.busy_timeout_seconds);
    return std::make_unique<store::SociStore>(store::sqlite_dialect(), *soci::factory_sqlite3(), conn, s);
  });
  registry.add("postgresql", [](const StoreSettings& s) -> std::unique_ptr<Store> {
    if (!s.dialect.empty() && s.dialect != "postgresql")
      throw Error(ErrorKind::invalid_argument,
                  "the postgresql backend speaks only the postgresql dialect (for \"" + s.dialect +
                      "\" use the odbc backend)");
    const auto conn = store::check_postgresql_connection(s.connection, s.busy_timeout_seconds);
    return std::make_unique<store::SociStore>(store::postgresql_dialect(), *soci::factory_postgresql(), conn,
                                              s);
  });
  registry.add("odbc", [](const StoreSettings& s) -> std::unique_ptr<Store> {
    if (s.connection.empty())
      throw Error(
          ErrorKind::invalid_argument,
          "the odbc backend needs a connection string (e.g. \"DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;"
          "PORT=5432;DATABASE=distrib;UID=distrib;PWD=...\")");
    const auto dialect =
        store::check_odbc_connection(s.connection, s.dialect, store::installed_odbc_drivers());
    return std::make_unique<store::SociStore>(*store::find_dialect(dialect), *soci::factory_odbc(),
                                              s.connection, s);
  });
}

}  // namespace distrib
