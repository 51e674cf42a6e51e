// The manager on database servers: PostgreSQL natively and through ODBC, a server restarted
// under a running job, a whole database moved from SQLite to PostgreSQL, and the errors a wrong
// database configuration gives at start.
#include "ctl_json.h"
#include "harness.h"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <set>
#include <thread>

using namespace distrib::test;

namespace {

// A PostgreSQL server of this test's own (it is restarted; the run's shared one must not be).
struct PrivatePostgres {
  std::string dir;
  int port = 0;
  PrivatePostgres() : dir("/tmp/distrib-test-pgctl-" + std::to_string(::getpid())) {
    // The ports here lie in the kernel's range for outgoing connections: one of the suite's own
    // connections may hold the port picked (the server then cannot listen). The next one, then.
    bool started = false;
    for (int i = 0; i < 5 && !started; ++i) {
      port = 54360 + (::getpid() + 7 * i) % 30;
      started = pg_script({"start", dir, std::to_string(port)});
    }
    REQUIRE(started);
  }
  ~PrivatePostgres() { pg_script({"destroy", dir}); }
  std::string server() const {
    return "host=127.0.0.1 port=" + std::to_string(port) + " user=distrib password=distrib";
  }
  std::string create(const std::string& db) const {
    auto r = run({"psql", server() + " dbname=postgres", "-qAtc", "CREATE DATABASE " + db});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return server() + " dbname=" + db;
  }
};

// A package whose install appends a line to installs.log: one line = installed once.
stdfs::path counting_package(const TempDir& tmp, std::size_t payload_bytes) {
  const auto dir = tmp / "pkg";
  std::string payload(payload_bytes, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>((i * 2654435761u) >> 13);
  write_file(dir / "payload.bin", payload);
  write_file(dir / "install.sh", "#!/bin/sh\nsleep 1\necho installed >> installs.log\n", true);
  return dir;
}

std::vector<std::string> names(const boost::json::object& o, const char* list, const char* field) {
  std::vector<std::string> out;
  const auto& a = o.at(list).as_array();
  for (const auto& v : a) out.emplace_back(v.at(field).as_string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("PostgreSQL restarted while a job to 20 agents runs: the job completes and nothing is lost",
          "[db]") {
  TempDir tmp;
  PrivatePostgres pg;
  const auto conn = pg.create("distrib");
  ManagerProc m(tmp / "manager", {"--database", "postgresql", "--database-connection", conn});
  std::vector<std::unique_ptr<AgentProc>> agents;
  std::vector<std::string> hosts;
  for (int i = 0; i < 20; ++i) {
    hosts.push_back("pg" + std::to_string(i));
    agents.push_back(std::make_unique<AgentProc>(tmp / hosts.back(), m.url(), hosts.back(),
                                                 "127.0.3." + std::to_string(10 + i)));
  }
  REQUIRE(wait_until([&] { return host_count(m) == 20; }, 30s, 200ms));
  REQUIRE(m.ctl({"package", "create", counting_package(tmp, 4 << 20).string(), "--name", "big", "--version",
                 "1", "--install-command", "./install.sh"})
              .exit_code == 0);
  std::vector<std::string> args = {"install", "big", "1"};
  args.insert(args.end(), hosts.begin(), hosts.end());
  const auto id = create_job(m, args);

  // Restart the server twice while entries are moving: once as the first ones report, once a
  // moment later.
  REQUIRE(wait_until(
      [&] {
        const auto show = ctl_json(m, {"job", "show", id});
        return show.at("progress").at("total").as_int64() == 20 &&
               show.at("progress").at("waiting").as_int64() < 20;
      },
      60s, 50ms));
  REQUIRE(pg_script({"restart", pg.dir}));
  std::this_thread::sleep_for(1500ms);
  REQUIRE(pg_script({"restart", pg.dir}));

  const auto out = wait_job(m, id, 180s);
  INFO(out << m.log());
  CHECK(all_succeeded(out));
  for (const auto& h : hosts)
    CHECK(read_file(tmp / h / "packages/big/1/installs.log") == "installed\n");  // once, not twice
  // The outage was seen, logged, and recovered from without a restart of the manager.
  CHECK(m.log().find("lost the connection to the postgresql database") != std::string::npos);
  CHECK(m.log().find("postgresql database is reachable again") != std::string::npos);
  CHECK(host_count(m) == 20);
}

TEST_CASE("a SQLite database exported and imported into PostgreSQL serves the same hosts, packages and jobs",
          "[db]") {
  TempDir tmp;
  const auto state = tmp / "manager";
  std::string job_id;
  boost::json::object hosts_before, packages_before, job_before;
  {
    ManagerProc m(state);
    std::vector<std::unique_ptr<AgentProc>> agents;
    for (int i = 0; i < 3; ++i)
      agents.push_back(std::make_unique<AgentProc>(tmp / ("mv" + std::to_string(i)), m.url(),
                                                   "mv" + std::to_string(i),
                                                   "127.0.3." + std::to_string(50 + i)));
    REQUIRE(wait_until([&] { return host_count(m) == 3; }, 20s));
    REQUIRE(m.ctl({"package", "create", counting_package(tmp, 100000).string(), "--name", "moved",
                   "--version", "1", "--install-command", "./install.sh"})
                .exit_code == 0);
    job_id = create_job(m, {"install", "moved", "1", "mv0", "mv1", "mv2"});
    REQUIRE(all_succeeded(wait_job(m, job_id, 60s)));
    REQUIRE(m.ctl({"group", "create", "movers", "mv0", "mv1"}).exit_code == 0);
    hosts_before = ctl_json(m, {"hosts", "list"});
    packages_before = ctl_json(m, {"package", "list"});
    job_before = ctl_json(m, {"job", "show", job_id});
  }  // the manager and agents stop: a database is moved while nothing writes to it

  const auto file = (tmp / "export.jsonl").string();
  auto ex = run({distribd_path(), "--role", "manager", "--state-dir", state.string(), "--export-db", file});
  INFO(ex.out << ex.err);
  REQUIRE(ex.exit_code == 0);
  CHECK(ex.out.find("hosts") != std::string::npos);
  CHECK(ex.err.find("job_entries: 3 rows") != std::string::npos);  // progress per table

  static int run_no = 0;  // each section runs the case again: a new database each time
  const auto db = pg_create_database("moved_" + std::to_string(::getpid()) + "_" + std::to_string(++run_no));
  auto im = run({distribd_path(), "--role", "manager", "--state-dir", state.string(), "--database",
                 "postgresql", "--database-connection", pg_connection(db), "--import-db", file});
  INFO(im.out << im.err);
  REQUIRE(im.exit_code == 0);
  CHECK(im.out.find("checksum read back equal") != std::string::npos);
  // The export's and the import's tables agree line by line (name, rows, checksum).
  CHECK(im.out.substr(im.out.find("TABLE")) == ex.out.substr(ex.out.find("TABLE")));

  SECTION("the manager on PostgreSQL serves the same data and runs new jobs") {
    ManagerProc m(state, {"--database", "postgresql", "--database-connection", pg_connection(db)});
    CHECK(names(ctl_json(m, {"hosts", "list"}), "hosts", "host_id") ==
          names(hosts_before, "hosts", "host_id"));
    CHECK(names(ctl_json(m, {"package", "list"}), "packages", "name") ==
          names(packages_before, "packages", "name"));
    const auto job = ctl_json(m, {"job", "show", job_id});
    CHECK(job.at("progress") == job_before.at("progress"));
    CHECK(job.at("entries").as_array().size() == 3);
    CHECK(m.ctl({"group", "show", "movers"}).out.find("mv1") != std::string::npos);
    // Ids continue after the imported ones.
    AgentProc again(tmp / "mv0", m.url(), "mv0", "127.0.3.50");
    REQUIRE(m.ctl({"package", "create", counting_package(tmp, 1000).string(), "--name", "moved", "--version",
                   "2", "--install-command", "./install.sh"})
                .exit_code == 0);
    const auto next = create_job(m, {"install", "moved", "2", "mv0"});
    CHECK(std::stoll(next) > std::stoll(job_id));
    CHECK(all_succeeded(wait_job(m, next, 60s)));
  }

  SECTION("the same database through ODBC (psqlODBC) serves it too") {
    ManagerProc m(state, {"--database", "odbc", "--database-connection", pg_odbc_connection(db)});
    CHECK(names(ctl_json(m, {"hosts", "list"}), "hosts", "host_id") ==
          names(hosts_before, "hosts", "host_id"));
    CHECK(ctl_json(m, {"job", "show", job_id}).at("progress") == job_before.at("progress"));
  }

  SECTION("importing again into the now populated database is refused and changes nothing") {
    auto again = run({distribd_path(), "--role", "manager", "--state-dir", state.string(), "--database",
                      "postgresql", "--database-connection", pg_connection(db), "--import-db", file});
    CHECK(again.exit_code != 0);
    CHECK(again.err.find("not empty") != std::string::npos);
    auto ex2 =
        run({distribd_path(), "--role", "manager", "--state-dir", state.string(), "--database", "postgresql",
             "--database-connection", pg_connection(db), "--export-db", (tmp / "again.jsonl").string()});
    REQUIRE(ex2.exit_code == 0);
    CHECK(ex2.out.substr(ex2.out.find("TABLE")) == ex.out.substr(ex.out.find("TABLE")));
  }
}

TEST_CASE("a wrong database configuration is a clear error at start", "[db]") {
  TempDir tmp;
  const auto state = (tmp / "m").string();
  const auto db = pg_create_database("bad_" + std::to_string(::getpid()));
  auto start = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {distribd_path(), "--role", "manager", "--state-dir",
                                     state,           "--port", "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv, 60s);
  };
  const std::string good = pg_connection(db);

  SECTION("wrong password") {
    auto r = start({"--database", "postgresql", "--database-connection",
                    good.substr(0, good.find("password=")) + "password=wrong dbname=" + db});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("password authentication failed") != std::string::npos);
  }
  SECTION("a server that is not there") {
    auto r = start({"--database", "postgresql", "--database-connection",
                    "host=127.0.0.1 port=1 user=distrib password=distrib dbname=x"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("Connection refused") != std::string::npos);
    CHECK(r.err.find("check the database connection") != std::string::npos);
  }
  SECTION("a database of a newer schema") {
    const auto migrated = run({distribd_path(), "--role", "manager", "--state-dir", state, "--database",
                               "postgresql", "--database-connection", good, "--migrate"});
    REQUIRE(migrated.exit_code == 0);
    // The DBA hears whether every query run per agent contact has its index.
    CHECK(migrated.out.find("migrated from schema version 0 to") != std::string::npos);
    CHECK(migrated.out.find("queries run for each registration, poll and wake-up are served by an index") !=
          std::string::npos);
    CHECK(migrated.out.find("warning:") == std::string::npos);
    pg_exec("INSERT INTO schema_version (version, applied_at) VALUES (99, 0)", db);
    auto r = start({"--database", "postgresql", "--database-connection", good});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("schema version 99 is newer than this distribd") != std::string::npos);
  }
  SECTION("a typo in a PostgreSQL connection string") {
    auto r =
        start({"--database", "postgresql", "--database-connection", "host=127.0.0.1 prot=5432 dbname=x"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("unknown key \"prot\"") != std::string::npos);
    CHECK(r.err.find("did you mean port") != std::string::npos);
    // --check-config names it without connecting.
    auto check = start(
        {"--database", "postgresql", "--database-connection", "host=127.0.0.1 prot=5432", "--check-config"});
    CHECK(check.exit_code == 2);
    CHECK(check.err.find("unknown key \"prot\"") != std::string::npos);
  }
  SECTION("a typo in an ODBC driver name") {
    auto r =
        start({"--database", "odbc", "--database-connection", "DRIVER={PostgreSQL Unicod};SERVER=127.0.0.1"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("ODBC driver \"PostgreSQL Unicod\"") != std::string::npos);
    CHECK(r.err.find("did you mean PostgreSQL Unicode") != std::string::npos);
  }
  SECTION("an unknown ODBC dialect") {
    auto r = start({"--database", "odbc", "--database-dialect", "mssql", "--database-connection",
                    pg_odbc_connection(db)});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("unknown ODBC dialect \"mssql\"") != std::string::npos);
  }
  SECTION("an unknown backend") {
    auto r = start({"--database", "mysql"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("unknown database backend \"mysql\" (known: odbc, postgresql, sqlite)") !=
          std::string::npos);
  }
  SECTION("options of the other backend") {
    auto r =
        start({"--database", "postgresql", "--database-connection", good, "--database-path", "/tmp/x.db"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--database-path is for the sqlite backend") != std::string::npos);
  }
  SECTION("an export file that is corrupted") {
    write_file(tmp / "bad.jsonl",
               "{\"format\":\"distrib-database\",\"schema_version\":6}\n{\"table\":\"hosts\"\n");
    auto r = run({distribd_path(), "--role", "manager", "--state-dir", state, "--import-db",
                  (tmp / "bad.jsonl").string()});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("line 2 of the export is not a JSON") != std::string::npos);
  }
}
