// ID groups at scale, and how fast a late join reaches the agent.
//
// 1. Expansion: HOSTS hosts registered through the store API join one ID group; an install job
//    addressed to the group is created (members read, entries written, one transaction). The
//    same number of rows is then inserted with raw SQLite (prepared statement, one transaction)
//    into a table made from the same schema and indexes. Ratio = distrib rows/s ÷ raw rows/s.
// 2. Late join: a simulated agent holds a long poll at a real manager; the administrator adds
//    it to an ID group with a standing job; the time until the poll answers with the work.
//
// usage: bench_groups [HOSTS=100000] [JOINS=20]
#include "bench_common.h"
#include "harness.h"

#include <distrib/model/group.h>
#include <distrib/net/http.h>
#include <distrib/services/manager.h>
#include <distrib/store/store.h>

#include <sqlite3.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace distrib;
using Clock = std::chrono::steady_clock;
namespace bj = boost::json;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

Manifest fake_manifest(const std::string& name) {
  Manifest m;
  m.name = name;
  m.version = "1";
  m.payload_digest = std::string(64, 'a');
  m.payload_size = 1;
  return m;
}

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db));
}

// Inserts `n` entries into a copy of the job_entries table (same columns and indexes) with the
// SQLite C API: the fastest this can be done on this disk.
double raw_sqlite_seconds(const std::string& schema_db, const std::string& path, std::size_t n) {
  std::vector<std::string> ddl;
  {
    sqlite3* src = nullptr;
    check(sqlite3_open(schema_db.c_str(), &src), src, "open");
    sqlite3_stmt* st = nullptr;
    check(
        sqlite3_prepare_v2(src,
                           "SELECT sql FROM sqlite_master WHERE tbl_name = 'job_entries' AND sql IS NOT NULL "
                           "ORDER BY type DESC",
                           -1, &st, nullptr),
        src, "schema");
    while (sqlite3_step(st) == SQLITE_ROW)
      ddl.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
    sqlite3_close(src);
  }
  sqlite3* db = nullptr;
  check(sqlite3_open(path.c_str(), &db), db, "open");
  check(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr, nullptr),
        db, "pragma");
  for (const auto& s : ddl) {
    // The copy has no jobs table to reference.
    std::string stmt = s;
    if (auto p = stmt.find("REFERENCES jobs (id)"); p != std::string::npos) stmt.erase(p, 20);
    check(sqlite3_exec(db, stmt.c_str(), nullptr, nullptr, nullptr), db, "ddl");
  }
  std::vector<std::string> ids(n);
  for (auto& id : ids) id = make_host_id();
  const auto t0 = Clock::now();
  check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
  sqlite3_stmt* ins = nullptr;
  check(sqlite3_prepare_v2(
            db,
            "INSERT INTO job_entries (job_id, host_id, state, attempt, last_seq, message, "
            "output_tail, updated_at, wave, ready_at) VALUES (1, ?, 'waiting', 1, 0, '', '', ?, 0, 0)",
            -1, &ins, nullptr),
        db, "prepare");
  for (const auto& id : ids) {
    sqlite3_bind_text(ins, 1, id.c_str(), static_cast<int>(id.size()), SQLITE_STATIC);
    sqlite3_bind_int64(ins, 2, 1700000000);
    check(sqlite3_step(ins), db, "insert");
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
  const double s = seconds_since(t0);
  sqlite3_close(db);
  return s;
}

void expansion(std::size_t hosts) {
  test::TempDir tmp;
  StoreRegistry reg;
  register_builtin_stores(reg);
  StoreSettings ss;
  ss.path = (tmp / "distrib.db").string();
  auto store = reg.open(ss);
  std::vector<std::string> ids(hosts);
  auto t0 = Clock::now();
  for (std::size_t i = 0; i < hosts; ++i) {
    Host h;
    h.host_id = ids[i] = make_host_id();
    h.name = "pc" + std::to_string(i);
    h.addresses = {"10." + std::to_string(i >> 16 & 255) + "." + std::to_string(i >> 8 & 255) + "." +
                   std::to_string(i & 255)};
    store->upsert_host(h);
  }
  const double reg_s = seconds_since(t0);
  IdGroup g;
  g.name = "everyone";
  g.owner = make_host_id();
  store->create_id_group(g);
  t0 = Clock::now();
  store->join_id_group("everyone", ids, JoinMethod::admin);
  const double join_s = seconds_since(t0);
  store->insert_package(fake_manifest("app"));
  Job job;
  job.package_name = "app";
  job.package_version = "1";
  job.destinations = {"id:everyone"};
  job.id_groups = {"everyone"};
  job.key_mode = "name";
  t0 = Clock::now();
  const auto created = store->create_job(job, {});
  const double job_s = seconds_since(t0);
  if (created.entries != static_cast<std::int64_t>(hosts)) throw std::runtime_error("expansion lost entries");
  const double raw_s = raw_sqlite_seconds(ss.path, (tmp / "raw.db").string(), hosts);
  std::printf("hosts registered (store API):   %zu in %.2f s (%.0f hosts/s)\n", hosts, reg_s,
              static_cast<double>(hosts) / reg_s);
  std::printf("joined the ID group (one call): %.2f s (%.0f members/s)\n", join_s,
              static_cast<double>(hosts) / join_s);
  std::printf("job to the ID group: %lld entries expanded and persisted in %.3f s (%.0f rows/s)\n",
              static_cast<long long>(created.entries), job_s, static_cast<double>(hosts) / job_s);
  std::printf("raw SQLite, same table and indexes: %zu rows in %.3f s (%.0f rows/s)\n", hosts, raw_s,
              static_cast<double>(hosts) / raw_s);
  std::printf("ratio distrib / raw SQLite speed: %.2f (target >= 0.5)\n", raw_s / job_s);
}

void late_join(int joins) {
  test::TempDir tmp;
  StoreRegistry reg;
  register_builtin_stores(reg);
  ManagerSettings ms;
  ms.insecure_http = true;  // measured as before identities: agents here are plain HTTP clients
  ms.state_dir = tmp / "manager";
  ms.port = 0;
  ms.poll_timeout_seconds = 30;
  Manager manager(ms, reg);
  manager.start();
  manager.store().insert_package(fake_manifest("app"));
  const auto token = test::read_file(manager.admin_token_file()).substr(0, 64);
  HttpClientSettings cs;
  cs.base_url = manager.url();
  HttpClient admin(cs);
  auto admin_call = [&](const std::string& method, const std::string& target, const bj::value& body) {
    auto res = admin.request(method, target, bj::serialize(body), "application/json", token);
    if (res.status / 100 != 2) throw std::runtime_error(target + ": " + res.body);
    return res;
  };
  admin_call("POST", "/v1/id-groups", bj::object{{"name", "late"}});
  admin_call("POST", "/v1/jobs",
             bj::object{{"type", "install"},
                        {"package", bj::object{{"name", "app"}, {"version", "1"}}},
                        {"destinations", bj::array{"id:late"}}});
  std::vector<double> ms_taken;
  for (int i = 0; i < joins; ++i) {
    const auto id = make_host_id();
    HttpClient agent(cs);
    agent.set_timeout(60);
    auto reg_res = agent.request("POST", "/v1/agent/register",
                                 bj::serialize(bj::object{{"host_id", id},
                                                          {"name", "late" + std::to_string(i)},
                                                          {"addresses", bj::array{}},
                                                          {"os", "simulated"}}));
    if (reg_res.status != 200) throw std::runtime_error("register: " + reg_res.body);
    // The agent waits in a long poll (30 s), as an idle agent does.
    auto poll = std::async(std::launch::async, [&] {
      auto res = agent.request("GET", "/v1/agent/work?wait=30&host_id=" + id);
      return std::make_pair(Clock::now(), res.body);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the poll is parked
    const auto t0 = Clock::now();
    admin_call("POST", "/v1/id-groups/late/members", bj::object{{"add", bj::array{bj::string(id)}}});
    auto [answered, body] = poll.get();
    if (body.find("\"entry_id\"") == std::string::npos)
      throw std::runtime_error("the poll ended without the work");
    ms_taken.push_back(std::chrono::duration<double, std::milli>(answered - t0).count());
  }
  std::sort(ms_taken.begin(), ms_taken.end());
  std::printf("late join → first work item at the agent (%d joins, agent in a 30 s long poll):\n", joins);
  std::printf("  median %.1f ms, max %.1f ms (target: within one poll, i.e. the waiting poll answers)\n",
              ms_taken[ms_taken.size() / 2], ms_taken.back());
  manager.stop();
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t hosts = argc > 1 ? std::stoul(argv[1]) : 100000;
  const int joins = argc > 2 ? std::stoi(argv[2]) : 20;
  std::printf("machine: %s\n", bench::machine().c_str());
  try {
    expansion(hosts);
    late_join(joins);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_groups: %s\n", e.what());
    return 1;
  }
  return 0;
}
