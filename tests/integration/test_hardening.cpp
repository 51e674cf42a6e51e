// A compromised relay, played by editing its database between two runs (what root on the relay's
// machine can do): it alters a manifest's install command, alters the paths of a collect order,
// drops an order's signature, and replays an order that was carried out. The agent below it
// refuses each, reports why, and nothing runs; the honest path through the same relay works.
#include "ctl_json.h"
#include "harness.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

using namespace distrib::test;
namespace bj = boost::json;

namespace {

// One statement on a stopped relay's SQLite database, with the sqlite3 tool (.ci/install-deps installs it).
void relay_sql(ManagerProc& relay, const std::string& sql) {
  relay.stop();
  const auto r = run({"sqlite3", (relay.state_dir() / "distrib.db").string(), sql});
  INFO(sql << "\n" << r.err);
  REQUIRE(r.exit_code == 0);
  relay.start();
}

// Has the relay received `n` entries with their signed orders?
bool relay_holds_orders(const ManagerProc& relay, int n) {
  return wait_until(
      [&] {
        const auto r = run({"sqlite3", (relay.state_dir() / "distrib.db").string(),
                            "SELECT count(*) FROM job_entries WHERE signed_order IS NOT NULL"});
        return r.out == std::to_string(n) + "\n";
      },
      30s);
}

std::string only_entry(const std::string& show_json, const char* field) {
  const auto o = bj::parse(show_json).as_object();
  const auto& e = o.at("entries").as_array().at(0).as_object();
  const auto* v = e.if_contains(field);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

}  // namespace

TEST_CASE("a relay cannot alter, invent or replay what an agent runs", "[hardening]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  ManagerProc relay(
      tmp / "relay",
      {"--parent", m.url(), "--host-name", "relay1", "--poll-timeout", "5", "--sync-interval-ms", "200"},
      "127.0.0.41");
  const auto collected = tmp / "agent-files";
  stdfs::create_directories(collected / "etc");
  write_file(collected / "app.log", "log\n");
  write_file(collected / "etc/secret", "secret\n");
  AgentProc agent(tmp / "agent", relay.url(), "leaf", "127.0.0.42", {"--collect-allow", collected.string()});
  REQUIRE(wait_until([&] { return host_count(m) == 2; }, 30s));
  const auto pkg = tmp / "pkg";
  write_file(pkg / "install.sh", "#!/bin/sh\necho ran >> " + (tmp / "ran.log").string() + "\n", true);
  REQUIRE(m.ctl({"package", "create", pkg.string(), "--name", "app", "--version", "1", "--install-command",
                 "./install.sh"})
              .exit_code == 0);

  // The honest path: the order signed at the top travels through the relay and is carried out.
  const auto first = create_job(m, {"install", "app", "1", "leaf"});
  const auto honest = wait_job(m, first, 60s);
  INFO(honest << agent.log());
  REQUIRE(all_succeeded(honest));
  CHECK(read_file(tmp / "ran.log") == "ran\n");

  SECTION("an altered install command in the relay's copy of the manifest") {
    write_file(pkg / "VERSION", "2\n");  // another payload: not "already installed"
    REQUIRE(m.ctl({"package", "create", pkg.string(), "--name", "app", "--version", "2", "--install-command",
                   "./install.sh"})
                .exit_code == 0);
    const auto pre = create_job(m, {"transfer-to-relay", "app", "2", "relay1"});
    REQUIRE(all_succeeded(wait_job(m, pre, 60s)));
    relay_sql(relay,
              "UPDATE packages SET manifest = replace(manifest, './install.sh', "
              "'echo pwned >> " +
                  (tmp / "pwned.log").string() + "') WHERE version = '2'");
    const auto job = create_job(m, {"install", "app", "2", "leaf"});
    const auto shown = wait_job(m, job, 120s);
    INFO(shown << "\nrelay:\n" << relay.log() << "\nagent:\n" << agent.log());
    CHECK(only_entry(shown, "state") == "failed");
    CHECK(only_entry(shown, "message").find("is not the one the order names") != std::string::npos);
    CHECK_FALSE(stdfs::exists(tmp / "pwned.log"));
    CHECK(read_file(tmp / "ran.log") == "ran\n");
    // The failure is an event at the top, naming the reason.
    const auto events = m.ctl({"events", "--type", "entry.failed"}, true);
    CHECK(events.out.find("order refused") != std::string::npos);
  }

  SECTION("a signed package and the trusted publisher set travel through the relay untouched") {
    REQUIRE(m.ctl({"keys", "create", "release", "--output", (tmp / "keys").string()}).exit_code == 0);
    REQUIRE(m.ctl({"keys", "trust", (tmp / "keys/release.pub").string()}).exit_code == 0);
    write_file(pkg / "VERSION", "3\n");
    REQUIRE(m.ctl({"package", "create", pkg.string(), "--name", "app", "--version", "3", "--install-command",
                   "./install.sh", "--sign", (tmp / "keys/release.key").string()})
                .exit_code == 0);
    const auto shown = wait_job(m, create_job(m, {"install", "app", "3", "leaf"}), 60s);
    INFO(shown << "\nrelay:\n" << relay.log() << "\nagent:\n" << agent.log());
    CHECK(all_succeeded(shown));
    CHECK(read_file(relay.state_dir() / "publishers.json") == read_file(m.state_dir() / "publishers.json"));
    CHECK(read_file(agent.state_dir() / "publishers.json") == read_file(m.state_dir() / "publishers.json"));
    CHECK(read_file(tmp / "ran.log") == "ran\nran\n");
  }

  SECTION("altered paths of a collect order") {
    // The relay receives the job, then its copy is altered before the agent asks.
    agent.stop();
    const auto job = create_job(m, {"collect-files", "leaf", "--path", (collected / "app.log").string()});
    REQUIRE(relay_holds_orders(relay, 2));
    relay_sql(relay,
              "UPDATE jobs SET params = replace(params, 'app.log', 'etc') WHERE type = 'collect-files'");
    agent.start();
    const auto shown = wait_job(m, job, 60s);
    INFO(shown);
    CHECK(only_entry(shown, "state") == "failed");
    CHECK(only_entry(shown, "message").find("paths to collect") != std::string::npos);
    CHECK(m.ctl({"collect", "list", job}, true).out.find("secret") == std::string::npos);
  }

  SECTION("work the relay made up: no signed order") {
    agent.stop();
    const auto job = create_job(m, {"install", "app", "1", "leaf"});
    REQUIRE(relay_holds_orders(relay, 2));
    relay_sql(relay, "UPDATE job_entries SET signed_order = NULL WHERE state = 'waiting'");
    agent.start();
    const auto shown = wait_job(m, job, 60s);
    INFO(shown);
    CHECK(only_entry(shown, "state") == "failed");
    CHECK(only_entry(shown, "message").find("carries no signed order") != std::string::npos);
    CHECK(read_file(tmp / "ran.log") == "ran\n");
  }

  SECTION("a job created at the relay itself runs only where agents accept the relay's orders") {
    REQUIRE(relay.ctl({"idgroup", "create", "local"}).exit_code == 0);
    REQUIRE(relay.ctl({"idgroup", "add", "local", "leaf"}).exit_code == 0);
    const auto job = create_job(relay, {"install", "app", "1", "id:local"});
    const auto shown = wait_job(relay, job, 60s);
    INFO(shown);
    CHECK(only_entry(shown, "state") == "failed");
    CHECK(only_entry(shown, "message").find("--accept-relay-orders") != std::string::npos);
  }

  SECTION("an order replayed as a new entry is not carried out again") {
    relay_sql(
        relay,
        "INSERT INTO job_entries (job_id, host_id, state, attempt, last_seq, message, output_tail, "
        "updated_at, upstream_id, signed_order) SELECT job_id, host_id, 'waiting', attempt, 0, '', '', "
        "updated_at, upstream_id + 1000000, signed_order FROM job_entries WHERE signed_order IS NOT NULL");
    REQUIRE(wait_until([&] { return agent.log().find("was carried out before") != std::string::npos; }, 30s));
    CHECK(read_file(tmp / "ran.log") == "ran\n");
  }
}

TEST_CASE("registrations, reports and query numbers out of bounds are refused before any work",
          "[hardening]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  const auto host = enrol_test_host(m, tmp / "h1", "h1");
  auto call = [&](const std::string& method, const std::string& target, const std::string& body = {}) {
    std::vector<std::string> argv = {"curl", "-s", "-w", "\n%{http_code}", "-X", method};
    const auto opts = host.curl();
    argv.insert(argv.end(), opts.begin(), opts.end());
    if (!body.empty())
      argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
    argv.push_back(m.url() + target);
    return run(argv, 30s).out;
  };
  auto registration = [&](bj::object fields) {
    bj::object o{{"host_id", host.host_id}, {"name", "h1"}, {"os", "Linux"}, {"role", "agent"}};
    for (auto& [k, v] : fields) o[k] = v;
    return bj::serialize(o);
  };
  // The server's files are its own: state directory 0700, database 0600.
  CHECK((stdfs::status(m.state_dir()).permissions() & stdfs::perms::mask) == stdfs::perms::owner_all);
  CHECK((stdfs::status(m.state_dir() / "distrib.db").permissions() & stdfs::perms::mask) ==
        (stdfs::perms::owner_read | stdfs::perms::owner_write));
  // A good registration first: the host exists, and is what the bad ones must not change.
  REQUIRE(call("POST", "/v1/agent/register", registration({})).ends_with("200"));
  const auto rss_before = rss_kib(m.pid());
  const auto before = ctl_json(m, {"hosts", "list"}).at("hosts").as_array();
  REQUIRE(before.size() == 1);
  bj::array many_addresses;
  for (int i = 0; i < 40; ++i) many_addresses.emplace_back("10.0.0." + std::to_string(i));
  struct Case {
    std::string what, answer_has;
  };
  const std::vector<std::pair<std::string, Case>> cases = {
      {registration({{"os", std::string(1000, 'x')}}),
       {"an OS of 1000 characters", "host os is longer than 256"}},
      {registration({{"name", std::string(300, 'n')}}),
       {"a 300-character name", "host name is longer than 253"}},
      {registration({{"name", "bad\u0007name"}}), {"a name with a control character", "control characters"}},
      {registration({{"addresses", many_addresses}}), {"40 addresses", "at most 32 addresses"}},
      {registration({{"role", "manager"}}), {"the manager role", "not as a manager"}},
      {registration({{"host_id", "00000000-0000-0000-0000-000000000000"}}), {"the nil UUID", "not nil"}},
  };
  for (const auto& [body, c] : cases) {
    INFO(c.what);
    const auto out = call("POST", "/v1/agent/register", body);
    CHECK(out.ends_with("400"));
    CHECK(out.find(c.answer_has) != std::string::npos);
  }
  const auto after = ctl_json(m, {"hosts", "list"}).at("hosts").as_array();
  REQUIRE(after.size() == 1);
  CHECK(after.at(0).at("name") == "h1");
  CHECK(after.at(0).at("os") == before.at(0).at("os"));

  // 1001 reports in one request: refused as a whole, before any is applied.
  bj::array reports;
  for (int i = 0; i < 1001; ++i)
    reports.push_back(bj::object{{"entry_id", i + 1}, {"seq", i + 1}, {"state", "succeeded"}});
  auto out = call("POST", "/v1/agent/report",
                  bj::serialize(bj::object{{"host_id", host.host_id}, {"reports", reports}}));
  CHECK(out.ends_with("400"));
  CHECK(out.find("at most 1000 reports in one request") != std::string::npos);

  // Numbers in queries are whole numbers within their documented range, or refused.
  for (const std::string q : {"1e3", "-5", "5x", " 5", "0", "99999999999999999999"}) {
    INFO(q);
    const auto answer = run({"curl", "-s", "-w", "\n%{http_code}", "--cacert", m.ca_file(), "-H",
                             "Authorization: Bearer " + read_file(m.token_file()).substr(0, 64),
                             m.url() + "/v1/jobs?limit=" + (q == " 5" ? std::string("%205") : q)})
                            .out;
    CHECK(answer.ends_with("400"));
    CHECK(answer.find("query parameter limit must be a whole number from 1 to 10000") != std::string::npos);
  }
  out = call("GET", "/v1/agent/transfer?host_id=" + host.host_id + "&entry_id=7e1");
  CHECK(out.ends_with("400"));
  CHECK(out.find("entry_id must be a whole number") != std::string::npos);
  CHECK(m.running());
  INFO("RSS " << rss_before << " KiB before, " << rss_kib(m.pid()) << " KiB after");
  CHECK(rss_kib(m.pid()) < rss_before + 32 * 1024);
}

TEST_CASE("an install directory the agent cannot make fails its entry with the reason and blocks nothing",
          "[hardening]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc agent(tmp / "agent", m.url(), "fs", "127.0.0.44");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 20s));
  const auto pkg = tmp / "pkg";
  write_file(pkg / "run.sh", "#!/bin/sh\ntrue\n", true);
  // /proc takes no new directories: the install directory cannot be made.
  REQUIRE(m.ctl({"package", "create", pkg.string(), "--name", "stuck", "--version", "1", "--install-command",
                 "./run.sh", "--install-dir", "/proc/distrib-test/stuck"})
              .exit_code == 0);
  REQUIRE(m.ctl({"package", "create", pkg.string(), "--name", "fine", "--version", "1", "--install-command",
                 "./run.sh"})
              .exit_code == 0);
  const auto stuck = create_job(m, {"install", "stuck", "1", "fs"});
  const auto fine = create_job(m, {"install", "fine", "1", "fs"});
  const auto shown = wait_job(m, stuck, 30s);
  INFO(shown << agent.log());
  CHECK(only_entry(shown, "state") == "failed");
  CHECK(only_entry(shown, "message").find("/proc/distrib-test") != std::string::npos);
  CHECK(all_succeeded(wait_job(m, fine, 30s)));
  // It was never taken for a lost parent.
  CHECK(agent.log().find("retrying in") == std::string::npos);
}

namespace {

// `n` TCP connections to `port` from `source`, left silent (closed by the caller).
std::vector<int> idle_connections(const std::string& source, int port, int n) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in from{}, to{};
    from.sin_family = to.sin_family = AF_INET;
    ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
    ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    to.sin_port = htons(static_cast<std::uint16_t>(port));
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) == 0);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
    fds.push_back(fd);
  }
  return fds;
}

// How many of `fds` the server has ended.
int ended_of(const std::vector<int>& fds) {
  int ended = 0;
  for (int fd : fds) {
    pollfd p{fd, POLLIN, 0};
    char c;
    if (::poll(&p, 1, 0) == 1 && ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0) ++ended;
  }
  return ended;
}

// `n` silent connections to `port` from `source`: how many the server closed within a second.
int closed_of(const std::string& source, int port, int n) {
  const auto fds = idle_connections(source, port, n);
  std::this_thread::sleep_for(1s);
  const int closed = ended_of(fds);
  for (int fd : fds) ::close(fd);
  return closed;
}

}  // namespace

TEST_CASE("floods of connections and of large bodies cost the manager a bounded amount", "[hardening]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager",
                {"--max-connections-per-address", "20", "--max-body-bytes-in-flight", "64MiB"});
  const auto host = enrol_test_host(m, tmp / "h1", "h1");
  REQUIRE(wait_until([&] { return m.ctl({"hosts", "list"}).exit_code == 0; }, 10s));
  const auto rss_before = rss_kib(m.pid());
  REQUIRE(rss_before > 0);
  // Request bodies handed to handlers so far (GET /metrics).
  auto received_bytes = [&]() -> double {
    const auto text =
        run({"curl", "-s", "--cacert", m.ca_file(), "-H",
             "Authorization: Bearer " + read_file(m.token_file()).substr(0, 64), m.url() + "/metrics"})
            .out;
    const std::string name = "\ndistrib_request_received_bytes_total ";
    const auto at = text.find(name);
    REQUIRE(at != std::string::npos);
    return std::stod(text.substr(at + name.size()));
  };
  const auto received_before = received_bytes();
  const auto hosts_before = ctl_json(m, {"hosts", "list"}).at("hosts").as_array().size();

  // 200 MiB "collected files" sent for other hosts: refused from the query, before the body.
  const auto big = tmp / "big.bin";
  write_file(big, "");
  stdfs::resize_file(big, 200ull << 20);  // sparse: reads as zeros
  // curl POSTing a file as the host, printing the answer and its status.
  auto curl_post = [&](const stdfs::path& file, const std::string& type, const std::string& target,
                       const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {"curl", "-s",          "-w", "\n%{http_code}",       "-X", "POST",
                                     "-T",   file.string(), "-H", "Content-Type: " + type};
    for (const auto& o : host.curl()) argv.push_back(o);
    for (const auto& o : extra) argv.push_back(o);
    argv.push_back(m.url() + target);
    return argv;
  };
  auto upload = [&](const std::string& host_id, const std::vector<std::string>& extra = {}) {
    return curl_post(big, "application/octet-stream",
                     "/v1/agent/collect?host_id=" + host_id + "&job_id=1&path=/var/log/x", extra);
  };
  std::vector<std::unique_ptr<Process>> senders;
  for (int i = 0; i < 6; ++i) {
    char other[40];
    std::snprintf(other, sizeof other, "%08x-0000-4000-8000-%012d", 0x1000 + i, i);
    senders.push_back(
        std::make_unique<Process>(upload(other), tmp / ("sender" + std::to_string(i) + ".log")));
  }
  for (std::size_t i = 0; i < senders.size(); ++i) {
    REQUIRE(wait_until([&] { return !senders[i]->running(); }, 30s));
    const auto out = read_file(tmp / ("sender" + std::to_string(i) + ".log"));
    INFO(out);
    CHECK(out.ends_with("403"));
    CHECK(out.find("cannot send files collected on host") != std::string::npos);
  }
  // None of the 1.2 GiB reached a handler, and the manager did not grow for them.
  CHECK(received_bytes() - received_before < 1024 * 1024);
  CHECK(rss_kib(m.pid()) < rss_before + 64 * 1024);

  // Bodies being received count against --max-body-bytes-in-flight: a slow 60 MiB inventory
  // report of the host's own holds it, and the next body is told to come back (503, Retry-After).
  const auto report = tmp / "report.bin";
  write_file(report, "");
  stdfs::resize_file(report, 60ull << 20);
  auto post_report = [&](const std::vector<std::string>& extra) {
    return curl_post(report, "application/json", "/v1/agent/inventory", extra);
  };
  Process slow(post_report({"--limit-rate", "1M"}), tmp / "slow.log");
  std::this_thread::sleep_for(1s);
  const auto second = run(post_report({"-D", "-"}), 30s);
  INFO(second.out);
  CHECK(second.out.ends_with("503"));
  CHECK(second.out.find("Retry-After: 5") != std::string::npos);
  CHECK(second.out.find("too many request bodies at once") != std::string::npos);
  slow.kill_now();

  // A collected file is written to disk as it arrives, outside that budget: a slow one of the
  // host's own grows a file in the spool, not the manager, and the part received goes with the
  // sender.
  const auto spool = m.state_dir() / "spool";
  auto spooled_bytes = [&] {
    std::uintmax_t n = 0;
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(spool, ec)) n += stdfs::file_size(e.path(), ec);
    return n;
  };
  {
    Process slow_file(upload(host.host_id, {"--limit-rate", "4M"}), tmp / "slow-file.log");
    CHECK(wait_until([&] { return spooled_bytes() > (4u << 20); }, 20s));
    CHECK(rss_kib(m.pid()) < rss_before + 64 * 1024);
    slow_file.kill_now();
  }
  CHECK(wait_until([&] { return stdfs::is_empty(spool); }, 20s));

  // Connections from one address beyond --max-connections-per-address are closed as they come;
  // everyone else is still served.
  CHECK(closed_of("127.0.0.61", m.port(), 50) == 30);
  CHECK(m.ctl({"hosts", "list"}).exit_code == 0);
  CHECK(m.log().find("connections from that address are open (the limit)") != std::string::npos);

  CHECK(m.running());
  const auto rss_after = rss_kib(m.pid());
  INFO("RSS " << rss_before << " KiB before, " << rss_after << " KiB after");
  CHECK(rss_after < rss_before + 64 * 1024);
  CHECK(ctl_json(m, {"hosts", "list"}).at("hosts").as_array().size() == hosts_before);
  CHECK(!stdfs::exists(m.state_dir() / "collected"));  // not one byte of the files was kept
}

TEST_CASE("near the connection limit agents are told to come back and administrators still get in",
          "[hardening]") {
  TempDir tmp;
  // 400 open files: the manager keeps 200 connections (half) and the last 64 for administrators.
  ManagerProc m(tmp / "manager", {"--test-open-files", "400", "--log-level", "info"});
  auto held = idle_connections("127.0.0.63", m.port(), 150);
  std::this_thread::sleep_for(500ms);

  // An agent's request on a connection in the reserve: 503 with a time to come back, at once.
  const auto t0 = std::chrono::steady_clock::now();
  const auto agent = run({"curl", "-s", "-i", "--max-time", "10", "--cacert", m.ca_file(),
                          m.url() + "/v1/agent/work?host_id=00000000-0000-4000-8000-000000000001"});
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(agent.out.find("503") != std::string::npos);
  CHECK(agent.out.find("Retry-After: ") != std::string::npos);
  CHECK(agent.out.find("connection limit") != std::string::npos);
  // An administrator is served.
  CHECK(m.ctl({"hosts", "list"}).exit_code == 0);
  CHECK(m.log().find("new connections serve administrators only") != std::string::npos);

  // Beyond the limit, connections are closed as they come, not left waiting.
  CHECK(closed_of("127.0.0.64", m.port(), 80) >= 20);
  for (int fd : held) ::close(fd);
  CHECK(wait_until([&] { return m.ctl({"hosts", "list"}).exit_code == 0; }, 10s));
  CHECK(m.running());
}

TEST_CASE("out of file descriptors the manager closes waiting connections at once and recovers",
          "[hardening]") {
  TempDir tmp;
  // A connection limit above what the process may open: the descriptors run out first.
  ManagerProc m(tmp / "manager", {"--test-open-files", "300", "--max-connections", "5000"});
  auto held = idle_connections("127.0.0.65", m.port(), 320);
  std::this_thread::sleep_for(1s);
  // Those the manager could not take were accepted and closed (the connection ended), not left
  // hanging in the backlog.
  CHECK(ended_of(held) >= 20);
  CHECK(wait_until([&] { return m.log().find("no file descriptors left") != std::string::npos; }, 5s));
  for (int fd : held) ::close(fd);
  // Descriptors back: served again.
  CHECK(wait_until([&] { return m.ctl({"hosts", "list"}).exit_code == 0; }, 10s));
  CHECK(m.running());
}
