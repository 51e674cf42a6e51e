// Inventory ingest at a real distribd manager on its embedded SQLite database: HOSTS simulated
// agents register, then send full inventory reports modelled on this machine's own (every dpkg
// package, disks, interfaces) over CLIENTS kept-alive connections. Three rounds:
//   first     every host's first report (all items written)
//   periodic  the periodic report: only volatile values (free space, uptime) differ
//   digests   the periodic report as the digest handshake sends it: volatile values and digests
//   changed   CHANGED package versions differ per host (diff, history rows)
// Prints reports/s for each, the database's growth per 10,000 hosts, and, as the baseline, the
// same first-report rows inserted straight into SQLite (256 reports per transaction). Then times
// inventory queries over the whole fleet (an exact key, a value, a wildcard over volatile values,
// a prefix over every package), as an administrator and a dynamic group ask them.
//
// usage: bench_inventory [HOSTS=10000] [CLIENTS=8] [CHANGED=3]
#include "bench_common.h"
#include "bench_fetch.h"
#include "harness.h"

#include <distrib/model/host.h>
#include <distrib/net/http.h>
#include <distrib/services/inventory.h>

#include <sqlite3.h>
#include <boost/json.hpp>

#include <cstdio>
#include <mutex>

using namespace distrib::test;
namespace bj = boost::json;
using namespace bench;

namespace {

// POSTs each body to `target` on one kept-alive connection; counts answers other than 200.
std::uint64_t post_all(int port, const std::string& target, const std::vector<const std::string*>& bodies,
                       std::atomic<long>& errors, std::string& first_error, std::mutex& mu) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  connect(stream, "127.0.0.1", port);
  beast::flat_buffer buf;
  for (const auto* body : bodies) {
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, "manager");
    req.set(http::field::content_type, "application/json");
    req.body() = *body;
    req.prepare_payload();
    http::write(stream, req);
    http::response<http::string_body> res;
    http::read(stream, buf, res);
    if (res.result_int() != 200) {
      std::lock_guard lock(mu);
      if (errors++ == 0) first_error = std::to_string(res.result_int()) + " " + res.body();
    }
  }
  return bodies.size();
}

double post_round(int port, const std::string& target, const std::vector<std::string>& bodies, int clients,
                  long& errors_out) {
  std::atomic<long> errors{0};
  std::string first_error;
  std::mutex mu;
  std::uint64_t done = 0;
  const double secs = run_parallel(
      clients,
      [&](int c) {
        std::vector<const std::string*> mine;
        for (std::size_t i = static_cast<std::size_t>(c); i < bodies.size();
             i += static_cast<std::size_t>(clients))
          mine.push_back(&bodies[i]);
        return post_all(port, target, mine, errors, first_error, mu);
      },
      done);
  if (errors) std::fprintf(stderr, "%ld request(s) refused, first: %s\n", errors.load(), first_error.c_str());
  errors_out = errors;
  return secs;
}

std::string report_body(const std::string& host_id, const distrib::InventoryItems& items) {
  bj::object o;
  for (const auto& [k, v] : items) o[k] = v;
  return bj::serialize(
      bj::object{{"host_id", host_id}, {"scope", "full"}, {"collected_at", 1}, {"items", std::move(o)}});
}

// The digest handshake: volatile values only, the stable items' digests named.
std::string digest_body(const std::string& host_id, const distrib::InventoryItems& items) {
  bj::object o;
  for (const auto& [k, v] : items)
    if (distrib::is_volatile_key(k)) o[k] = v;
  return bj::serialize(bj::object{
      {"host_id", host_id},
      {"scope", "full"},
      {"collected_at", 1},
      {"digests",
       bj::object{{"system", distrib::inventory_digest(items, distrib::InventoryScope::system)},
                  {"software", distrib::inventory_digest(items, distrib::InventoryScope::software)}}},
      {"items", std::move(o)}});
}

// What sets one machine apart from its twins: its name, network addresses, and hardware serials.
bool host_specific(const std::string& key) {
  return key == "system.hostname" || key.starts_with("system.net.") ||
         (key.starts_with("system.dmi.") &&
          (key.find("serial") != std::string::npos || key.find("uuid") != std::string::npos));
}

// Median wall time of an inventory query (GET /v1/inventory) over `runs` runs; prints the hosts
// it matched.
void time_query(const std::string& url, const std::string& token, const std::string& query, int runs) {
  distrib::HttpClientSettings cs;
  cs.base_url = url;
  cs.timeout_seconds = 300;
  distrib::HttpClient admin(cs);
  std::vector<double> ms;
  std::int64_t count = -1;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto res = admin.request("GET", "/v1/inventory?query=" + distrib::url_encode(query), "", "", token);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (res.status != 200) {
      std::printf("query %-50s refused: %d %s\n", query.c_str(), res.status, res.body.substr(0, 200).c_str());
      return;
    }
    count = bj::parse(res.body).as_object().at("count").as_int64();
  }
  std::sort(ms.begin(), ms.end());
  std::printf("query %-50s %6lld hosts  median %8.1f ms  (min %.1f, max %.1f)\n", query.c_str(),
              static_cast<long long>(count), ms[ms.size() / 2], ms.front(), ms.back());
}

std::uint64_t file_size_or_zero(const std::filesystem::path& p) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(p, ec);
  return ec ? 0 : n;
}

// The floor: the same rows straight into SQLite with the manager's pragmas, 256 reports per
// transaction (the largest batch the manager's group commit makes), one prepared statement.
double raw_sqlite_seconds(const std::filesystem::path& file, const std::vector<std::string>& ids,
                          const distrib::InventoryItems& items) {
  sqlite3* db = nullptr;
  sqlite3_open(file.c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=10000;",
               nullptr, nullptr, nullptr);
  sqlite3_exec(db,
               "CREATE TABLE inventory_items (host_id VARCHAR(36) NOT NULL, item_key VARCHAR(255) NOT NULL, "
               "item_value TEXT NOT NULL, PRIMARY KEY (host_id, item_key));"
               "CREATE INDEX inventory_items_key ON inventory_items (item_key);",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO inventory_items VALUES (?, ?, ?)", -1, &st, nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t n = 0; n < ids.size(); ++n) {
    const auto& id = ids[n];
    if (n % 256 == 0) sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    for (const auto& [k, v] : items) {
      sqlite3_bind_text(st, 1, id.c_str(), static_cast<int>(id.size()), SQLITE_STATIC);
      sqlite3_bind_text(st, 2, k.c_str(), static_cast<int>(k.size()), SQLITE_STATIC);
      sqlite3_bind_text(st, 3, v.c_str(), static_cast<int>(v.size()), SQLITE_STATIC);
      sqlite3_step(st);
      sqlite3_reset(st);
    }
    if (n % 256 == 255 || n + 1 == ids.size()) sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  sqlite3_finalize(st);
  sqlite3_close(db);
  return secs;
}

}  // namespace

int main(int argc, char** argv) {
  const int hosts = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int clients = argc > 2 ? std::atoi(argv[2]) : 8;
  const int changed = argc > 3 ? std::atoi(argv[3]) : 3;
  raise_fd_limit();
  std::printf("machine: %s\n", machine().c_str());

  // This machine's inventory is the model of every simulated host's.
  auto collectors = distrib::platform_collectors();
  std::vector<distrib::InventoryCollector*> raw;
  for (auto& c : collectors) raw.push_back(c.get());
  std::vector<std::string> collect_errors;
  const auto model = distrib::run_collectors(raw, distrib::InventoryScope::full, collect_errors);
  std::size_t software = 0;
  for (const auto& [k, v] : model) software += k.starts_with("software.");
  std::vector<std::string> ids;
  std::vector<std::string> first, periodic, digests_only, changes;
  std::size_t specific = 0;
  for (const auto& [k, v] : model) specific += host_specific(k);
  for (int i = 0; i < hosts; ++i) {
    ids.push_back(distrib::make_host_id());
    auto items = model;
    for (auto& [k, v] : items)
      if (host_specific(k)) v += "-sim" + std::to_string(i);
    first.push_back(report_body(ids.back(), items));
    items["system.uptime_seconds"] = std::to_string(100000 + i);
    items["system.disk./.free_bytes"] = std::to_string(1000000000ull + static_cast<unsigned long long>(i));
    periodic.push_back(report_body(ids.back(), items));
    items["system.uptime_seconds"] = std::to_string(200000 + i);
    digests_only.push_back(digest_body(ids.back(), items));
    int n = 0;
    for (auto& [k, v] : items)
      if (k.starts_with("software.") && n < changed && (static_cast<int>(k.size()) + i) % 7 == 0) {
        v += "+upd1";
        ++n;
      }
    changes.push_back(report_body(ids.back(), items));
  }
  std::printf(
      "report: %zu items (%zu software, %zu host-specific), %zu bytes of JSON; digest-only report %zu "
      "bytes\n",
      model.size(), software, specific, first.front().size(), digests_only.front().size());

  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--log-level", "warn", "--insecure-http"});
  {
    std::vector<std::string> reg;
    for (int i = 0; i < hosts; ++i)
      reg.push_back(bj::serialize(bj::object{{"host_id", ids[static_cast<std::size_t>(i)]},
                                             {"name", "sim" + std::to_string(i)},
                                             {"addresses", bj::array{}},
                                             {"os", "simulated"},
                                             {"role", "agent"}}));
    long errors = 0;
    const double s = post_round(m.port(), "/v1/agent/register", reg, clients, errors);
    std::printf("registered %d hosts in %.1f s\n", hosts, s);
  }
  const auto db = m.state_dir() / "distrib.db";
  // Measured after orderly stops, which checkpoint the WAL into the database file.
  m.stop();
  const auto size_before = file_size_or_zero(db) + file_size_or_zero(db.string() + "-wal");
  m.start();

  struct Round {
    const char* name;
    const std::vector<std::string>* bodies;
  };
  double first_rate = 0;
  for (const auto& r : {Round{"first", &first}, Round{"periodic", &periodic}, Round{"digests", &digests_only},
                        Round{"changed", &changes}}) {
    long errors = 0;
    const double s = post_round(m.port(), "/v1/agent/inventory", *r.bodies, clients, errors);
    const double rate = static_cast<double>(hosts - errors) / s;
    if (std::string(r.name) == "first") first_rate = rate;
    std::printf("%-9s %d full reports in %.2f s: %.0f reports/s (%.0f items/s)%s\n", r.name, hosts, s, rate,
                rate * static_cast<double>(model.size()), errors ? " WITH ERRORS" : "");
    if (std::string(r.name) == "first") {
      // An orderly stop checkpoints the WAL into the database file: its size is what stays.
      m.stop();
      const auto size_after = file_size_or_zero(db) + file_size_or_zero(db.string() + "-wal");
      const double per10k = static_cast<double>(size_after - size_before) * 10000.0 / hosts;
      std::printf(
          "database growth: %.1f MiB for %d hosts = %.1f MiB per 10,000 hosts (%.0f bytes per item)\n",
          static_cast<double>(size_after - size_before) / 1048576.0, hosts, per10k / 1048576.0,
          static_cast<double>(size_after - size_before) /
              (static_cast<double>(hosts) * static_cast<double>(model.size())));
      m.start();
    }
  }
  {
    // Queries over the fleet: the first package key of the model, its value, free space of every
    // disk (volatile values), and a value over every package key.
    std::string pkg, pkg_value;
    for (const auto& [k, v] : model)
      if (k.starts_with("software.") && pkg.empty()) {
        pkg = k;
        pkg_value = v;
      }
    const auto token = read_file(m.token_file()).substr(0, 64);
    for (const auto& q :
         {pkg + " exists", pkg + " = \"" + pkg_value + "\"", std::string("system.disk.*.free_bytes > 1000"),
          std::string("software.* = \"none\"")})
      time_query(m.url(), token, q, 5);
  }
  const double raw_s = raw_sqlite_seconds(tmp / "raw.db", ids, model);
  const double raw_rate = hosts / raw_s;
  std::printf(
      "baseline: the same first-report rows straight into SQLite: %.0f reports/s; ingest/raw ratio %.2f\n",
      raw_rate, first_rate / raw_rate);
  return 0;
}
