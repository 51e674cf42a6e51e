// Inventory and remote collection on real processes: what an agent reports against this
// machine's own facts, software changes in the history, queries and dynamic groups, files
// collected through a relay, and bad input.
#include "ctl_json.h"
#include "harness.h"

#include <distrib/client.h>
#include <distrib/error.h>
#include <distrib/net/http.h>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <unistd.h>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

using namespace distrib::test;
namespace bj = boost::json;

namespace {

const std::vector<std::string> kFastInventory = {"--inventory-check", "1"};

// `inventory show HOST --json` once the host has reported (empty object on timeout).
bj::object inventory_of(const ManagerProc& m, const std::string& host, std::chrono::seconds timeout = 30s) {
  bj::object out;
  wait_until(
      [&] {
        auto r = m.ctl({"inventory", "show", host}, true);
        if (r.exit_code != 0) return false;
        out = bj::parse(r.out).as_object();
        return true;
      },
      timeout, 200ms);
  return out;
}

std::string item(const bj::object& inv, const std::string& key) {
  const auto& items = inv.at("items").as_object();
  auto it = items.find(key);
  return it == items.end() ? std::string("<missing>") : std::string(it->value().as_string());
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Names of the hosts a query answers with.
std::set<std::string> query_hosts(const ManagerProc& m, const std::string& query) {
  std::set<std::string> out;
  const auto answer = ctl_json(m, {"inventory", "query", query});
  for (const auto& v : answer.at("hosts").as_array()) out.insert(std::string(v.at("name").as_string()));
  return out;
}

bool history_has(const ManagerProc& m, const std::string& host, const std::string& change,
                 const std::string& key, const std::string& value) {
  auto r = m.ctl({"inventory", "history", host}, true);
  if (r.exit_code != 0) return false;
  const auto answer = bj::parse(r.out);
  for (const auto& v : answer.at("history").as_array())
    if (v.at("change").as_string() == change && v.at("key").as_string() == key &&
        v.at("new").as_string() == value)
      return true;
  return false;
}

std::string random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data(n, '\0');
  for (auto& c : data) c = static_cast<char>(rng() & 0xff);
  return data;
}

// Client settings to call the manager as the agent itself (its own certificate).
distrib::HttpClientSettings as_agent(const ManagerProc& m, const AgentProc& a) {
  distrib::HttpClientSettings hs;
  hs.base_url = m.url();
  hs.ca_file = m.ca_file();
  hs.cert_file = (a.state_dir() / "identity/host.crt").string();
  hs.key_file = (a.state_dir() / "identity/host.key").string();
  return hs;
}

bj::object entry_of(const ManagerProc& m, const std::string& job) {
  const auto show = bj::parse(wait_job(m, job));
  return show.at("entries").as_array().at(0).as_object();
}

}  // namespace

TEST_CASE("an agent reports system and software inventory that matches this machine", "[inventory]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "a1", m.url(), "inv1", "127.0.0.61", kFastInventory);
  const auto inv = inventory_of(m, "inv1");
  INFO(a.log());
  REQUIRE(inv.contains("items"));

  CHECK(item(inv, "system.kernel.release") == trimmed(run({"uname", "-r"}).out));
  CHECK(item(inv, "system.arch") == trimmed(run({"uname", "-m"}).out));
  CHECK(item(inv, "system.kernel.name") == trimmed(run({"uname", "-s"}).out));
  CHECK(item(inv, "system.cpu.count") == trimmed(run({"nproc"}).out));
  CHECK(item(inv, "system.hostname") == trimmed(run({"hostname"}).out));
  {
    std::ifstream in("/proc/meminfo");
    std::string key;
    unsigned long long kib = 0;
    in >> key >> kib;
    REQUIRE(key == "MemTotal:");
    CHECK(item(inv, "system.memory.total_bytes") == std::to_string(kib * 1024));
  }
  {
    const auto rel = read_file("/etc/os-release");
    const auto pos = rel.find("\nVERSION_ID=");
    if (pos != std::string::npos) {
      auto v = rel.substr(pos + 12, rel.find('\n', pos + 1) - pos - 12);
      std::erase(v, '"');
      CHECK(item(inv, "system.os.version") == v);
    }
  }
  // The root filesystem is there with its size as statvfs reports it (df, in 1-byte blocks).
  const auto df = run({"df", "-B1", "--output=size", "/"}).out;
  std::istringstream dfs(df);
  std::string header, size;
  dfs >> header >> size;
  CHECK(item(inv, "system.disk./.size_bytes") == size);
  CHECK(item(inv, "system.disk./.free_bytes") != "<missing>");

  // Software: every installed dpkg package with its version, nothing else.
  if (run({"sh", "-c", "command -v dpkg-query"}).exit_code == 0) {
    const auto listing =
        run({"sh", "-c",
             "dpkg-query -W -f '${db:Status-Abbrev}\\t${binary:Package}\\t${Version}\\n' | grep '^ii'"})
            .out;
    std::map<std::string, std::string> expected;
    std::istringstream in(listing);
    for (std::string line; std::getline(in, line);) {
      const auto t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
      expected[line.substr(t1 + 1, t2 - t1 - 1)] = line.substr(t2 + 1);
    }
    REQUIRE(expected.size() > 10);
    std::map<std::string, std::string> reported;
    for (const auto& kv : inv.at("items").as_object())
      if (std::string_view(kv.key()).starts_with("software.dpkg."))
        reported[std::string(kv.key()).substr(14)] = std::string(kv.value().as_string());
    CHECK(reported == expected);
  }

  // A get-system-info job: the agent reports at once and says how much.
  const auto job = create_job(m, {"get-system-info", "inv1"});
  const auto e = entry_of(m, job);
  CHECK(e.at("state").as_string() == "succeeded");
  CHECK(std::string(e.at("message").as_string()).find("system item(s) reported") != std::string::npos);
  const auto sw = create_job(m, {"get-software-info", "inv1"});
  CHECK(entry_of(m, sw).at("state").as_string() == "succeeded");
}

TEST_CASE("installing a distrib package shows up as a software change in the history", "[inventory]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  // Checks are far apart: the report must come from the install itself.
  AgentProc a(tmp / "a1", m.url(), "inv2", "127.0.0.62", {"--inventory-check", "1h"});
  REQUIRE(inventory_of(m, "inv2").contains("items"));
  CHECK(item(inventory_of(m, "inv2"), "software.distrib.demo") == "<missing>");
  make_package(m, tmp, "demo", "1.0");
  const auto job = create_job(m, {"install", "demo", "1.0", "inv2"});
  REQUIRE(all_succeeded(wait_job(m, job)));
  INFO(a.log());
  CHECK(wait_until([&] { return history_has(m, "inv2", "added", "software.distrib.demo", "1.0"); }, 20s,
                   200ms));
  const auto text = m.ctl({"inventory", "history", "inv2"});
  CHECK(text.out.find("software.distrib.demo") != std::string::npos);
}

TEST_CASE(
    "a query by installed package version returns exactly the expected hosts and a dynamic group follows it",
    "[inventory]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  std::vector<std::unique_ptr<AgentProc>> agents;
  for (int i = 1; i <= 3; ++i) {
    agents.push_back(std::make_unique<AgentProc>(tmp / ("q" + std::to_string(i)), m.url(),
                                                 "q" + std::to_string(i), "127.0.0.7" + std::to_string(i),
                                                 kFastInventory));
  }
  for (const auto* n : {"q1", "q2", "q3"}) REQUIRE(inventory_of(m, n).contains("items"));
  make_package(m, tmp, "tool", "1.9");
  make_package(m, tmp, "tool", "1.10");
  REQUIRE(all_succeeded(wait_job(m, create_job(m, {"install", "tool", "1.9", "q1", "q2"}))));
  REQUIRE(all_succeeded(wait_job(m, create_job(m, {"install", "tool", "1.10", "q3"}))));
  // Versions compare as versions: 1.10 is newer than 1.9.
  CHECK(wait_until(
      [&] { return query_hosts(m, "software.distrib.tool >= 1.10") == std::set<std::string>{"q3"}; }, 20s));
  CHECK(wait_until(
      [&] {
        return query_hosts(m, "software.distrib.tool < 1.10") == std::set<std::string>{"q1", "q2"};
      },
      20s));
  CHECK(query_hosts(m, "software.distrib.tool missing").empty());
  CHECK(query_hosts(m, "software.distrib.tool >= 1.10 and system.cpu.count >= 1") ==
        std::set<std::string>{"q3"});

  auto g = m.ctl({"group", "create", "newtool", "--query", "software.distrib.tool >= 1.10"});
  INFO(g.err);
  REQUIRE(g.exit_code == 0);
  auto members = [&] {
    std::set<std::string> out;
    const auto shown = ctl_json(m, {"group", "show", "newtool"});
    for (const auto& v : shown.at("hosts").as_array()) out.insert(std::string(v.at("name").as_string()));
    return out;
  };
  CHECK(members() == std::set<std::string>{"q3"});
  // q1 is upgraded: the group follows the inventory.
  REQUIRE(all_succeeded(wait_job(m, create_job(m, {"install", "tool", "1.10", "q1"}))));
  CHECK(wait_until([&] { return members() == std::set<std::string>{"q1", "q3"}; }, 20s, 200ms));
  // A job to the group goes to exactly its members now.
  const auto job = create_job(m, {"get-software-info", "group:newtool"});
  const auto show = bj::parse(wait_job(m, job)).as_object();
  std::set<std::string> got;
  for (const auto& e : show.at("entries").as_array()) got.insert(std::string(e.at("host_name").as_string()));
  CHECK(got == std::set<std::string>{"q1", "q3"});
  // Members cannot be added by hand to a group defined by a query.
  CHECK(m.ctl({"group", "add", "newtool", "q2"}).exit_code != 0);

  // Integrators get the same answers through the library's AdminClient.
  distrib::AdminClientSettings cs;
  cs.http.base_url = m.url();
  cs.http.ca_file = m.ca_file();
  cs.token = read_file(m.token_file()).substr(0, read_file(m.token_file()).find('\n'));
  distrib::AdminClient client(cs);
  const auto ids = client.query_inventory("software.distrib.tool >= 1.10");
  CHECK(std::set<std::string>(ids.begin(), ids.end()) ==
        std::set<std::string>{id_by_name(m, "q1"), id_by_name(m, "q3")});
  CHECK(client.inventory("q2").items.at("software.distrib.tool") == "1.9");
  CHECK_THROWS_AS(client.query_inventory("software.distrib.tool >="), distrib::Error);

  // CSV export: a header and one line per host.
  const auto csv = m.ctl(
      {"inventory", "query", "software.distrib.tool exists", "--fields", "software.distrib.tool", "--csv"});
  REQUIRE(csv.exit_code == 0);
  CHECK(csv.out.starts_with("host,host_id,software.distrib.tool\n"));
  CHECK(std::count(csv.out.begin(), csv.out.end(), '\n') == 4);
  CHECK(csv.out.find("q1,") != std::string::npos);
}

TEST_CASE("files collected through a relay arrive byte-identical, and inventory travels up too",
          "[inventory]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  ManagerProc relay(
      tmp / "relay",
      {"--parent", m.url(), "--host-name", "relay1", "--poll-timeout", "5", "--sync-interval-ms", "200"},
      "127.0.0.81");
  const auto logs = tmp / "var-log";
  stdfs::create_directories(logs / "app");
  write_file(logs / "syslog.log", random_bytes(300000, 1));
  write_file(logs / "auth.log", "line one\nline two\n");
  write_file(logs / "app" / "app.log", random_bytes(5000, 2));
  write_file(logs / "notes.txt", "not a log\n");
  std::vector<std::string> opts = kFastInventory;
  opts.insert(opts.end(), {"--collect-allow", logs.string()});
  AgentProc a(tmp / "a1", relay.url(), "far1", "127.0.0.82", opts);
  // Inventory reports pass through the relay.
  REQUIRE(inventory_of(m, "far1", 40s).contains("items"));

  const auto job = create_job(
      m, {"collect-files", "far1", "--path", (logs / "*.log").string(), "--path", (logs / "app").string()});
  const auto e = entry_of(m, job);
  INFO(a.log());
  INFO(relay.log());
  REQUIRE(e.at("state").as_string() == "succeeded");
  CHECK(std::string(e.at("message").as_string()).find("3 file(s)") != std::string::npos);

  const auto listed = ctl_json(m, {"collect", "list", job});
  CHECK(listed.at("files").as_array().size() == 3);
  const auto out = tmp / "out";
  auto r = m.ctl({"collect", "get", job, "--output", out.string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto base = out / "far1" / logs.relative_path();
  for (const auto* f : {"syslog.log", "auth.log", "app/app.log"}) {
    INFO(f);
    REQUIRE(stdfs::exists(base / f));
    CHECK(read_file(base / f) == read_file(logs / f));
  }
  CHECK_FALSE(stdfs::exists(base / "notes.txt"));
  // --host filters by name; an unknown one finds nothing.
  CHECK(m.ctl({"collect", "get", job, "--host", "nobody", "--output", (tmp / "none").string()}).exit_code ==
        4);
}

TEST_CASE("collection outside the allowlist or over a limit is refused and reported", "[inventory]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  const auto allowed = tmp / "allowed";
  const auto secret = tmp / "secret";
  stdfs::create_directories(allowed);
  stdfs::create_directories(secret);
  write_file(allowed / "small.log", "ok\n");
  write_file(allowed / "big.log", std::string(4096, 'x'));
  write_file(secret / "key.pem", "private\n");
  // A symbolic link inside the allowed directory does not lead out of it.
  stdfs::create_symlink(secret / "key.pem", allowed / "link.log");
  AgentProc a(tmp / "a1", m.url(), "bad1", "127.0.0.91", {"--collect-allow", allowed.string()});
  REQUIRE(wait_until([&] { return host_count(m) >= 1; }, 20s));

  auto outside =
      entry_of(m, create_job(m, {"collect-files", "bad1", "--path", (secret / "key.pem").string()}));
  CHECK(outside.at("state").as_string() == "failed");
  CHECK(std::string(outside.at("message").as_string()).find("outside this agent's collection allowlist") !=
        std::string::npos);

  auto link =
      entry_of(m, create_job(m, {"collect-files", "bad1", "--path", (allowed / "link.log").string()}));
  CHECK(link.at("state").as_string() == "failed");
  CHECK(std::string(link.at("message").as_string()).find("outside") != std::string::npos);

  const auto big_job =
      create_job(m, {"collect-files", "bad1", "--path", (allowed / "*.log").string(), "--max-file", "1KiB"});
  auto big = entry_of(m, big_job);
  CHECK(big.at("state").as_string() == "failed");
  CHECK(std::string(big.at("message").as_string()).find("over the per-file limit") != std::string::npos);
  // Nothing half-sent: the small file of the refused job was not stored either.
  CHECK(ctl_json(m, {"collect", "list", big_job}).at("files").as_array().empty());

  auto none =
      entry_of(m, create_job(m, {"collect-files", "bad1", "--path", (allowed / "*.nothing").string()}));
  CHECK(none.at("state").as_string() == "failed");
  CHECK(std::string(none.at("message").as_string()).find("no file matches") != std::string::npos);

  // An agent without an allowlist collects nothing.
  AgentProc b(tmp / "b1", m.url(), "bad2", "127.0.0.92");
  REQUIRE(wait_until([&] { return host_count(m) >= 2; }, 20s));
  auto closed =
      entry_of(m, create_job(m, {"collect-files", "bad2", "--path", (allowed / "small.log").string()}));
  CHECK(closed.at("state").as_string() == "failed");
  CHECK(std::string(closed.at("message").as_string()).find("--collect-allow") != std::string::npos);

  // The command line refuses what cannot work before asking the manager.
  auto rel = m.ctl({"job", "create", "collect-files", "bad1", "--path", "var/log/x.log"});
  CHECK(rel.exit_code == 2);
  CHECK(rel.err.find("not absolute") != std::string::npos);
  CHECK(m.ctl({"job", "create", "collect-files", "bad1"}).exit_code == 2);
}

TEST_CASE(
    "periodic reports of unchanged items carry digests only, and a manager that differs gets the full report",
    "[inventory]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "a1", m.url(), "dig1", "127.0.0.96",
              {"--inventory-check", "1", "--inventory-interval", "2"});
  REQUIRE(inventory_of(m, "dig1").contains("items"));
  const auto items = inventory_of(m, "dig1").at("items").as_object().size();
  // The next periodic reports name the digests the manager acknowledged.
  REQUIRE(
      wait_until([&] { return a.log().find("(periodic, digests only)") != std::string::npos; }, 20s, 200ms));
  CHECK(inventory_of(m, "dig1").at("items").as_object().size() == items);

  distrib::HttpClient http(as_agent(m, a));
  const auto host = id_by_name(m, "dig1");
  auto post = [&](const std::string& body) { return http.request("POST", "/v1/agent/inventory", body); };
  const std::string other(64, 'a');
  // Digests the manager does not hold: 409, nothing stored.
  auto unknown = post(R"({"host_id":")" + host + R"(","digests":{"system":")" + other + R"(","software":")" +
                      other + R"("},"items":{"system.uptime_seconds":"1"}})");
  CHECK(unknown.status == 409);
  CHECK(unknown.body.find("send the full report") != std::string::npos);
  CHECK(item(inventory_of(m, "dig1"), "system.uptime_seconds") != "1");
  // Malformed handshakes: the part named, nothing stored.
  auto bad_digest = post(R"({"host_id":")" + host + R"(","digests":{"system":"xyz","software":")" + other +
                         R"("},"items":{}})");
  CHECK(bad_digest.status == 400);
  CHECK(bad_digest.body.find("digests.system") != std::string::npos);
  auto stable_item = post(R"({"host_id":")" + host + R"(","digests":{"system":")" + other +
                          R"(","software":")" + other + R"("},"items":{"system.os.name":"x"}})");
  CHECK(stable_item.status == 400);
  CHECK(stable_item.body.find("not a volatile value") != std::string::npos);
  CHECK(post(R"({"host_id":")" + host + R"(","digests":"x","items":{}})").status == 400);

  // The manager's software items now differ from the agent's: its next digest-only report is
  // refused, and it sends the full report, which puts them back.
  auto planted =
      post(R"({"host_id":")" + host + R"(","scope":"software","items":{"software.dpkg.planted":"1"}})");
  REQUIRE(planted.status == 200);
  CHECK(item(inventory_of(m, "dig1"), "software.dpkg.planted") == "1");
  CHECK(
      wait_until([&] { return a.log().find("asked for the full report") != std::string::npos; }, 20s, 200ms));
  CHECK(wait_until([&] { return item(inventory_of(m, "dig1"), "software.dpkg.planted") == "<missing>"; }, 20s,
                   200ms));
  CHECK(inventory_of(m, "dig1").at("items").as_object().size() == items);
}

TEST_CASE("malformed queries, unknown hosts, fields and reports get clear errors", "[inventory]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "a1", m.url(), "err1", "127.0.0.95", kFastInventory);
  REQUIRE(inventory_of(m, "err1").contains("items"));

  auto bad = m.ctl({"inventory", "query", "software.dpkg.bash >="});
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find("malformed inventory query") != std::string::npos);
  auto bad_field = m.ctl({"inventory", "query", "bash = 5"});
  CHECK(bad_field.err.find("under system., software. or user.") != std::string::npos);
  auto bad_group = m.ctl({"group", "create", "g1", "--query", "system.os.version"});
  CHECK(bad_group.exit_code == 1);
  CHECK(bad_group.err.find("an operator") != std::string::npos);
  CHECK(ctl_json(m, {"group", "list"}).at("groups").as_array().empty());
  CHECK(m.ctl({"inventory", "show", "nosuchhost"}).exit_code == 4);

  // User inventory: a field the manager defines, a value set on the agent's machine.
  REQUIRE(m.ctl({"inventory", "field", "add", "site", "--values", "tokyo,osaka"}).exit_code == 0);
  CHECK(m.ctl({"inventory", "field", "add", "bad", "--type", "choice"}).exit_code == 1);
  // The agent learns the definition at its next check.
  REQUIRE(wait_until(
      [&] { return read_file(a.state_dir() / "inventory-fields.json").find("osaka") != std::string::npos; },
      20s, 200ms));
  auto wrong = run({distribd_path(), "--role", "agent", "--state-dir", a.state_dir().string(),
                    "--set-inventory", "site=nagoya"});
  CHECK(wrong.exit_code != 0);
  CHECK(wrong.err.find("one of: tokyo, osaka") != std::string::npos);
  auto undefined = run({distribd_path(), "--role", "agent", "--state-dir", a.state_dir().string(),
                        "--set-inventory", "rack=3"});
  CHECK(undefined.exit_code != 0);
  CHECK(undefined.err.find("no inventory field \"rack\"") != std::string::npos);
  auto ok = run({distribd_path(), "--role", "agent", "--state-dir", a.state_dir().string(), "--set-inventory",
                 "site=osaka"});
  INFO(ok.err);
  REQUIRE(ok.exit_code == 0);
  CHECK(wait_until([&] { return query_hosts(m, "user.site = osaka") == std::set<std::string>{"err1"}; }, 20s,
                   200ms));
  CHECK(history_has(m, "err1", "added", "user.site", "osaka"));

  // Reports and uploads that break the protocol are refused with the part named; nothing is stored.
  distrib::HttpClient http(as_agent(m, a));  // as the agent err1 itself: its own certificate
  const auto host = id_by_name(m, "err1");
  auto post = [&](const std::string& body) { return http.request("POST", "/v1/agent/inventory", body); };
  auto r1 = post(R"({"host_id":")" + host + R"(","items":{"os":"x"}})");
  CHECK(r1.status == 400);
  CHECK(r1.body.find("inventory key \\\"os\\\" is malformed") != std::string::npos);
  auto r2 = post(R"({"host_id":")" + host + R"(","scope":"software","items":{"system.os.name":"x"}})");
  CHECK(r2.status == 400);
  CHECK(r2.body.find("outside the report's scope") != std::string::npos);
  auto r3 = post(R"({"host_id":")" + host + R"(","items":{"system.os.name":5}})");
  CHECK(r3.status == 400);
  // Another host's inventory: refused before anything is looked at.
  auto r4 = post(R"({"host_id":"00000000-0000-4000-8000-000000000000","items":{"system.os.name":"x"}})");
  CHECK(r4.status == 403);
  CHECK(post("{not json").status == 400);
  CHECK(item(inventory_of(m, "err1"), "system.os.name") != "x");

  const auto job = create_job(m, {"get-system-info", "err1"});
  wait_job(m, job);
  auto up = http.request("POST", "/v1/agent/collect?host_id=" + host + "&job_id=" + job + "&path=/x.log",
                         "data", "application/octet-stream");
  CHECK(up.status == 404);  // not a collect-files job
  auto dots =
      http.request("POST", "/v1/agent/collect?host_id=" + host + "&job_id=" + job + "&path=/a/../etc/passwd",
                   "data", "application/octet-stream");
  CHECK(dots.status == 400);
  CHECK(a.running());
}
