// Relay managers, automatic registration of system configuration and host identity, on real
// processes: a manager, relays (nested) and agents on their own 127.0.0.x addresses.
#include "ctl_json.h"
#include "harness.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <thread>

using namespace distrib::test;
namespace bj = boost::json;

namespace {

std::string host_id_of(const ManagerProc& relay) {
  return read_file(relay.state_dir() / "host-id").substr(0, 36);
}

// Chunks served by `m` to `requester` (host id), from `stats --json`.
std::uint64_t chunks_served_to(const ManagerProc& m, const std::string& requester) {
  const auto stats = ctl_json(m, {"stats"});
  for (const auto& v : stats.at("content").at("by_requester").as_array())
    if (v.at("host_id").as_string() == requester) return v.at("chunks").to_number<std::uint64_t>();
  return 0;
}

// A package of `mib` MiB of random (incompressible) bytes, in chunks of `chunk_size` bytes.
std::string make_package(const ManagerProc& m, const TempDir& tmp, const std::string& name, int mib,
                         const std::string& chunk_size = "1048576", const std::string& version = "1") {
  const auto dir = tmp / ("src-" + name + "-" + version);
  stdfs::create_directories(dir);
  std::mt19937_64 rng(static_cast<std::uint64_t>(mib) * 7919 + name.size() + version.size());
  std::string data(static_cast<std::size_t>(mib) << 20, '\0');
  for (std::size_t i = 0; i + 8 <= data.size(); i += 8) {
    const auto x = rng();
    std::memcpy(&data[i], &x, 8);
  }
  write_file(dir / "payload.bin", data);
  auto r = m.ctl(
      {"package", "create", dir.string(), "--name", name, "--version", version, "--chunk-size", chunk_size});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return version;
}

// Number of chunks of a registered package.
std::uint64_t chunk_count(const ManagerProc& m, const std::string& name) {
  return ctl_json(m, {"package", "show", name, "1"}).at("chunks").as_array().size();
}

const std::vector<std::string> kRelayOpts = {"--poll-timeout", "5", "--sync-interval-ms", "200"};

std::vector<std::string> relay_opts(const std::string& parent, const std::string& name,
                                    std::vector<std::string> more = {}) {
  std::vector<std::string> v = {"--parent", parent, "--host-name", name};
  v.insert(v.end(), kRelayOpts.begin(), kRelayOpts.end());
  v.insert(v.end(), more.begin(), more.end());
  return v;
}

}  // namespace

TEST_CASE("a job from the top installs through nested relays: each chunk travels once per relay", "[relay]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  ManagerProc r1(tmp / "relay1", relay_opts(m.url(), "relay1"), "127.0.0.21");
  ManagerProc r2(tmp / "relay2", relay_opts(r1.url(), "relay2"), "127.0.0.22");
  std::vector<std::unique_ptr<AgentProc>> agents;
  const std::vector<std::pair<std::string, const ManagerProc*>> layout = {
      {"top-a", &m}, {"top-b", &m}, {"mid-a", &r1}, {"mid-b", &r1}, {"leaf-a", &r2}, {"leaf-b", &r2}};
  int n = 0;
  for (const auto& [name, parent] : layout)
    agents.push_back(
        std::make_unique<AgentProc>(tmp / name, parent->url(), name, "127.0.0." + std::to_string(31 + n++)));
  // The whole tree reaches the top by itself: 2 relays + 6 agents.
  REQUIRE(wait_until([&] { return host_count(m) == 8; }, 20s));
  const auto r1_id = host_id_of(r1), r2_id = host_id_of(r2);
  auto hosts = hosts_of(m);
  CHECK(hosts.at(r1_id).at("parent").as_string() == "");
  CHECK(hosts.at(r2_id).at("parent").as_string() == r1_id);
  CHECK(hosts.at(r2_id).at("role").as_string() == "relay");
  CHECK(hosts.at(id_by_name(m, "leaf-a")).at("parent").as_string() == r2_id);
  CHECK(hosts.at(id_by_name(m, "mid-b")).at("parent").as_string() == r1_id);
  CHECK(host_count(r1) == 5);  // relay2, its two agents, and relay1's own two
  auto tree = m.ctl({"hosts", "tree"});
  CHECK(tree.exit_code == 0);
  CHECK(tree.out.find("relay1") != std::string::npos);
  CHECK(tree.out.find("│   └── leaf-b") != std::string::npos);  // two levels down
  CHECK(tree.out.find("8 host(s), 8 online") != std::string::npos);

  make_package(m, tmp, "bulk", 4);
  const auto chunks = chunk_count(m, "bulk");  // 4 MiB cut by content around a 1 MiB average
  CHECK(chunks >= 2);
  CHECK(chunks <= 16);
  const auto job =
      create_job(m, {"install", "bulk", "1", "top-a", "top-b", "mid-a", "mid-b", "leaf-a", "leaf-b"});
  const auto shown = wait_job(m, job, 90s);
  INFO(shown);
  CHECK(all_succeeded(shown));
  // job show at the top names the relay each host is under.
  std::map<std::string, std::string> relay_of;
  const auto shown_json = bj::parse(shown);
  for (const auto& e : shown_json.at("entries").as_array())
    relay_of[std::string(e.at("host_name").as_string())] = std::string(e.at("parent_name").as_string());
  CHECK(relay_of["leaf-a"] == "relay2");
  CHECK(relay_of["mid-a"] == "relay1");
  CHECK(relay_of["top-a"] == "");
  auto table = m.ctl({"job", "show", job});
  CHECK(table.out.find("RELAY") != std::string::npos);

  // Each chunk left the manager once for relay1 and once from relay1 for relay2.
  CHECK(chunks_served_to(m, r1_id) == chunks);
  CHECK(chunks_served_to(m, r2_id) == 0);
  CHECK(chunks_served_to(r1, r2_id) == chunks);
  CHECK(chunks_served_to(m, id_by_name(m, "top-a")) == chunks);

  SECTION("a cancel at the top reaches the entries waiting below the relays") {
    for (auto& a : agents) a->stop();
    const auto job2 = create_job(m, {"install", "bulk", "1", "leaf-a", "mid-a"});
    // relay2 holds its entry before the cancel, so the cancel really has to travel down.
    REQUIRE(wait_until([&] { return ctl_json(r2, {"job", "list"}).at("jobs").as_array().size() == 2; }, 20s));
    auto c = m.ctl({"job", "cancel", job2});
    CHECK(c.exit_code == 0);
    CHECK(wait_until(
        [&] {
          const auto answer = ctl_json(r2, {"job", "list"});
          for (const auto& j : answer.at("jobs").as_array())
            if (j.at("progress").at("cancelled").as_int64() == 1) return true;
          return false;
        },
        20s));
    auto top = ctl_json(m, {"job", "show", job2});
    CHECK(top.at("progress").at("cancelled").as_int64() == 2);
  }
}

TEST_CASE("a host that moves or is renamed stays one host, updated at every level", "[relay]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  ManagerProc r1(tmp / "relay1", relay_opts(m.url(), "relay1"), "127.0.0.21");
  ManagerProc r2(tmp / "relay2", relay_opts(r1.url(), "relay2"), "127.0.0.22");
  ManagerProc r3(tmp / "relay3", relay_opts(m.url(), "relay3"), "127.0.0.23");
  auto agent = std::make_unique<AgentProc>(tmp / "pc", r2.url(), "pc-old", "127.0.0.31");
  REQUIRE(wait_until([&] { return !id_by_name(m, "pc-old").empty(); }, 20s));
  const auto id = id_by_name(m, "pc-old");
  CHECK(hosts_of(m).at(id).at("parent").as_string() == host_id_of(r2));

  // Moved from relay2 (under relay1) to relay3 (under the manager), and renamed.
  agent.reset();
  agent = std::make_unique<AgentProc>(tmp / "pc", r3.url(), "pc-new", "127.0.0.31");
  REQUIRE(wait_until(
      [&] {
        auto h = hosts_of(m);
        return h.count(id) && h.at(id).at("parent").as_string() == host_id_of(r3) &&
               h.at(id).at("name").as_string() == "pc-new";
      },
      20s));
  CHECK(host_count(m) == 4);  // 3 relays + 1 agent: never duplicated
  CHECK(id_by_name(m, "pc-old").empty());
  CHECK(hosts_of(r3).count(id) == 1);
  // The relays it left forget it.
  CHECK(wait_until([&] { return hosts_of(r2).count(id) == 0 && hosts_of(r1).count(id) == 0; }, 20s));
  CHECK(hosts_of(r1).count(host_id_of(r2)) == 1);
}

TEST_CASE("a relay killed in the middle of a transfer loses nothing and the job completes", "[relay]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  ManagerProc r1(tmp / "relay1", relay_opts(m.url(), "relay1"), "127.0.0.21");
  std::vector<std::unique_ptr<AgentProc>> agents;
  for (int i = 0; i < 3; ++i)
    agents.push_back(std::make_unique<AgentProc>(tmp / ("pc" + std::to_string(i)), r1.url(),
                                                 "pc" + std::to_string(i),
                                                 "127.0.0." + std::to_string(31 + i)));
  REQUIRE(wait_until([&] { return host_count(m) == 4; }, 20s));
  // About 256 small chunks: the transfer takes long enough to be cut in the middle.
  make_package(m, tmp, "big", 16, "65536");
  const auto total_chunks = chunk_count(m, "big");
  const auto job = create_job(m, {"install", "big", "1", "pc0", "pc1", "pc2"});
  REQUIRE(wait_until([&] { return chunks_served_to(m, host_id_of(r1)) >= 10; }, 30s, 20ms));
  r1.kill();  // SIGKILL: no orderly shutdown
  const auto served_before = chunks_served_to(m, host_id_of(r1));
  CHECK(served_before < total_chunks);
  std::this_thread::sleep_for(1s);
  r1.start();  // same state directory, address and port
  const auto shown = wait_job(m, job, 120s);
  INFO(shown);
  CHECK(all_succeeded(shown));
  // The manager's counters restarted with it? No: they are the manager's, and the relay fetched
  // only what it had not verified and stored before the kill: at most the segments in flight
  // then were sent twice (4 fetch threads, 32 chunks a segment).
  CHECK(chunks_served_to(m, host_id_of(r1)) <= total_chunks + 4 * 32);
}

TEST_CASE("relays pre-stage and drop packages and the cache keeps to its limit", "[relay]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  ManagerProc r1(tmp / "relay1", relay_opts(m.url(), "relay1", {"--cache-limit", "5MiB"}), "127.0.0.21");
  ManagerProc r2(tmp / "relay2", relay_opts(m.url(), "relay2", {"--package-expiry-days", "0.00003"}),
                 "127.0.0.22");
  AgentProc agent(tmp / "pc", m.url(), "pc", "127.0.0.31");
  REQUIRE(wait_until([&] { return host_count(m) == 3; }, 20s));
  make_package(m, tmp, "first", 3);
  make_package(m, tmp, "second", 3);
  auto packages_at = [](const ManagerProc& relay) {
    std::set<std::string> out;
    const auto answer = ctl_json(relay, {"package", "list"});
    for (const auto& p : answer.at("packages").as_array()) out.insert(std::string(p.at("name").as_string()));
    return out;
  };

  auto job = create_job(m, {"transfer-to-relay", "first", "1", "relay1"});
  CHECK(all_succeeded(wait_job(m, job, 60s)));
  CHECK(packages_at(r1) == std::set<std::string>{"first"});
  CHECK(chunks_served_to(m, host_id_of(r1)) == chunk_count(m, "first"));
  // A second 3 MiB package does not fit beside the first in 5 MiB: the least recently used goes.
  job = create_job(m, {"transfer-to-relay", "second", "1", "relay1"});
  CHECK(all_succeeded(wait_job(m, job, 60s)));
  CHECK(wait_until([&] { return packages_at(r1) == std::set<std::string>{"second"}; }, 20s));

  job = create_job(m, {"delete-package", "second", "1", "relay1"});
  const auto deleted = wait_job(m, job, 60s);
  CHECK(all_succeeded(deleted));
  CHECK(deleted.find("removed from the cache") != std::string::npos);
  CHECK(packages_at(r1).empty());

  // relay2 keeps packages about 2.6 s: a pre-staged package expires by itself.
  job = create_job(m, {"transfer-to-relay", "first", "1", "relay2"});
  CHECK(all_succeeded(wait_job(m, job, 60s)));
  CHECK(wait_until([&] { return packages_at(r2).empty(); }, 20s));

  // Cache jobs go to relays, installs to agents: anything else is refused before it starts.
  auto wrong = m.ctl({"job", "create", "transfer-to-relay", "first", "1", "pc"});
  CHECK(wrong.exit_code == 1);
  CHECK(wrong.err.find("is not a relay") != std::string::npos);
  wrong = m.ctl({"job", "create", "install", "first", "1", "relay1"});
  CHECK(wrong.exit_code == 1);
  CHECK(wrong.err.find("is a relay") != std::string::npos);
}

TEST_CASE("an agent falls back to its next parent and returns to the first", "[relay]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  ManagerProc r1(tmp / "relay1", relay_opts(m.url(), "relay1"), "127.0.0.21");
  AgentProc agent(tmp / "pc", r1.url(), "pc", "127.0.0.31", {"--server", m.url(), "--parent-recheck", "1"});
  const auto r1_id = host_id_of(r1);
  auto parent_of_pc = [&] {
    auto h = hosts_of(m);
    for (const auto& [id, o] : h)
      if (o.at("name").as_string() == "pc") return std::string(o.at("parent").as_string());
    return std::string("?");
  };
  REQUIRE(wait_until([&] { return parent_of_pc() == r1_id; }, 20s));
  r1.stop();
  CHECK(wait_until([&] { return parent_of_pc().empty(); }, 30s));  // directly under the manager
  r1.start();
  CHECK(wait_until([&] { return parent_of_pc() == r1_id; }, 30s));
  CHECK(agent.log().find("switching to") != std::string::npos);
  CHECK(agent.log().find("going back to it") != std::string::npos);
}

TEST_CASE("with automatic registration off, hosts wait for approval and conflicts are shown", "[relay]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5", "--auto-register", "false"});
  AgentProc a(tmp / "a", m.url(), "twin", "127.0.0.31");
  AgentProc b(tmp / "b", m.url(), "twin", "127.0.0.32");
  AgentProc c(tmp / "c", m.url(), "solo", "127.0.0.33");
  REQUIRE(wait_until([&] { return host_count(m) == 3; }, 20s));
  for (const auto& [id, h] : hosts_of(m)) CHECK_FALSE(h.at("approved").as_bool());
  auto listed = m.ctl({"hosts", "list"});
  CHECK(listed.out.find("awaiting approval") != std::string::npos);
  // Two identifiers claim the name "twin": recorded, shown, never merged.
  CHECK(listed.out.find("conflict") != std::string::npos);

  stdfs::create_directories(tmp / "app");
  write_file(tmp / "app/readme", "hello");
  REQUIRE(m.ctl({"package", "create", (tmp / "app").string(), "--name", "app", "--version", "1"}).exit_code ==
          0);
  auto refused = m.ctl({"job", "create", "install", "app", "1", "solo"});
  CHECK(refused.exit_code == 1);
  CHECK(refused.err.find("waiting for approval") != std::string::npos);

  auto approved = m.ctl({"hosts", "approve", "solo", "twin"});
  CHECK(approved.exit_code == 0);
  CHECK(approved.out.find("3 host(s) approved") != std::string::npos);
  auto unknown = m.ctl({"hosts", "approve", "ghost"});
  CHECK(unknown.exit_code == 4);
  const auto job = create_job(m, {"install", "app", "1", "solo"});
  CHECK(all_succeeded(wait_job(m, job, 60s)));
  auto twin = m.ctl({"job", "create", "install", "app", "1", "twin"});
  CHECK(twin.exit_code == 1);
  CHECK(twin.err.find("ambiguous") != std::string::npos);
}

TEST_CASE("bad relay input: loops, unreachable parents and malformed reports", "[relay]") {
  TempDir tmp;
  SECTION("a relay whose parent is itself is refused at start") {
    const std::string self = "https://127.0.0.41:18641";
    auto r = run({distribd_path(), "--role", "relay", "--state-dir", (tmp / "self").string(), "--listen",
                  "127.0.0.41", "--port", "18641", "--parent", self},
                 30s);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("is this relay itself") != std::string::npos);
    CHECK(r.err.starts_with("distribd: "));
  }
  SECTION("a relay whose parent is below it is refused at start") {
    ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
    ManagerProc r1(tmp / "relay1", relay_opts(m.url(), "relay1"), "127.0.0.21");
    ManagerProc r2(tmp / "relay2", relay_opts(r1.url(), "relay2"), "127.0.0.22");
    REQUIRE(wait_until([&] { return host_count(m) == 2; }, 20s));
    const auto port = std::to_string(r1.port());
    r1.stop();
    auto r = run({distribd_path(), "--role", "relay", "--state-dir", (tmp / "relay1").string(), "--listen",
                  "127.0.0.21", "--port", port, "--parent", r2.url()},
                 30s);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("is below this relay") != std::string::npos);
  }
  SECTION("an agent naming an unreachable parent keeps retrying with backoff and logs it") {
    AgentProc a(tmp / "a", "http://127.0.0.42:1", "lonely", "127.0.0.31");
    REQUIRE(wait_until(
        [&] {
          const auto log = a.log();
          return log.find("(backoff 400 ms)") != std::string::npos &&
                 log.find("(backoff 800 ms)") != std::string::npos;
        },
        20s));
    CHECK(a.running());
  }
  SECTION("malformed or unauthorised relay reports are refused and change nothing") {
    ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
    AgentProc a(tmp / "a", m.url(), "pc", "127.0.0.31");
    REQUIRE(wait_until([&] { return host_count(m) == 1; }, 20s));
    const auto agent_id = id_by_name(m, "pc");
    // As whom: nobody, the agent (its own certificate), an enrolled relay that never registered.
    const auto relay = enrol_test_host(m, tmp / "fake-relay", "fake-relay", "relay");
    auto post = [&](const std::string& body, std::vector<std::string> who) {
      std::vector<std::string> argv = {"/usr/bin/curl",
                                       "-s",
                                       "-o",
                                       "/dev/stderr",
                                       "-w",
                                       "%{http_code}",
                                       "--cacert",
                                       m.ca_file(),
                                       "-H",
                                       "Content-Type: application/json",
                                       "--data-binary",
                                       body,
                                       m.url() + "/v1/relay/sync"};
      argv.insert(argv.end(), who.begin(), who.end());
      return run(argv);
    };
    const std::vector<std::string> as_agent = {"--cert", (tmp / "a/identity/host.crt").string(), "--key",
                                               (tmp / "a/identity/host.key").string()};
    const std::vector<std::string> as_relay = {"--cert", relay.cert_file, "--key", relay.key_file};
    const auto fake =
        R"({"host_id": ")" + agent_id +
        R"(", "hosts": [{"host_id": "99999999-9999-4999-8999-999999999999", "name": "fake", "parent": ")" +
        agent_id + R"("}]})";
    auto r = post(fake, {});
    CHECK(r.out == "401");
    // An agent is not a relay: it cannot report for others.
    r = post(fake, as_agent);
    CHECK(r.out == "403");
    CHECK(r.err.find("is for relays") != std::string::npos);
    r = post("{not json", as_relay);
    CHECK(r.out == "400");
    CHECK(r.err.find("malformed JSON") != std::string::npos);
    r = post(R"({"host_id": "nope"})", as_relay);
    CHECK(r.out == "400");
    // A relay speaks for itself only, and only once registered here.
    r = post(fake, as_relay);
    CHECK(r.out == "403");
    CHECK(r.err.find("may not act for host " + agent_id) != std::string::npos);
    r = post(R"({"host_id": ")" + relay.host_id + R"(", "hosts": []})", as_relay);
    CHECK(r.out == "403");
    CHECK(r.err.find("not a relay registered directly") != std::string::npos);
    r = post(
        R"({"host_id": ")" + relay.host_id + R"(", "hosts": [{"host_id": "bad", "name": "", "parent": ""}]})",
        as_relay);
    CHECK(r.out == "400");
    CHECK(host_count(m) == 1);  // nothing was added
  }
}
