// Host groups, ID groups with standing jobs, scheduling and staged rollouts, on real manager,
// relay and agent processes on their own 127.0.0.x addresses.
#include "ctl_json.h"
#include "harness.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <cstdio>
#include <ctime>
#include <thread>

using namespace distrib::test;
namespace bj = boost::json;

namespace {

// A small package whose install command appends "NAME VERSION" to the agent's install log
// (STATE_DIR/packages/order), or exits with `exit_code`.
void make_app(const ManagerProc& m, const TempDir& tmp, const std::string& name, const std::string& version,
              int exit_code = 0) {
  const auto dir = tmp / ("src-" + name + "-" + version);
  stdfs::create_directories(dir);
  write_file(dir / "README", name + " " + version + "\n");
  const auto cmd = exit_code ? "exit " + std::to_string(exit_code)
                             : std::string(
                                   "echo \"$DISTRIB_PACKAGE_NAME $DISTRIB_PACKAGE_VERSION\" >> "
                                   "\"$DISTRIB_INSTALL_DIR/../../order\"");
  auto r = m.ctl(
      {"package", "create", dir.string(), "--name", name, "--version", version, "--install-command", cmd});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

// What the agent installed, in order.
std::string installs(const AgentProc& a) {
  std::error_code ec;
  return stdfs::exists(a.state_dir() / "packages" / "order", ec)
             ? read_file(a.state_dir() / "packages" / "order")
             : "";
}

bj::object show(const ManagerProc& m, const std::string& job) {
  return ctl_json(m, {"job", "show", job});
}

std::int64_t count_of(const bj::object& shown, const char* state) {
  return shown.at("progress").at(state).as_int64();
}

std::int64_t job_count(const ManagerProc& m) {
  return static_cast<std::int64_t>(ctl_json(m, {"job", "list"}).at("jobs").as_array().size());
}

// The state of the only entry of a job.
std::string only_state(const ManagerProc& m, const std::string& job) {
  const auto o = show(m, job);
  const auto& e = o.at("entries").as_array();
  return e.size() == 1 ? std::string(e[0].at("state").as_string()) : "entries: " + std::to_string(e.size());
}

std::vector<std::string> agent_cmd(const AgentProc& a, const std::string& server, const std::string& address,
                                   std::vector<std::string> more) {
  std::vector<std::string> v = {
      distribd_path(),  "--role", "agent",       "--state-dir", a.state_dir().string(), "--server", server,
      "--bind-address", address,  "--host-name", a.name()};
  v.insert(v.end(), more.begin(), more.end());
  return v;
}

}  // namespace

TEST_CASE("a host joining an ID group later receives its standing jobs, oldest first", "[groups]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  REQUIRE(m.ctl({"idgroup", "create", "branch", "--password", "s3cret"}).exit_code == 0);
  // Two jobs sent to the ID group before any host joined it.
  make_app(m, tmp, "app", "1");
  make_app(m, tmp, "app", "2");
  const auto j1 = create_job(m, {"install", "app", "1", "id:branch"});
  const auto j2 = create_job(m, {"install", "app", "2", "id:branch"});
  CHECK(show(m, j1).at("progress").at("total").as_int64() == 0);

  // pc1 joins by its configuration, and installs both, in order.
  AgentProc pc1(tmp / "pc1", m.url(), "pc1", "127.0.0.41", {"--id-group", "branch:s3cret"});
  REQUIRE(wait_until([&] { return count_of(show(m, j2), "succeeded") == 1; }, 30s));
  CHECK(count_of(show(m, j1), "succeeded") == 1);
  CHECK(installs(pc1) == "app 1\napp 2\n");
  const auto entry = show(m, j1).at("entries").as_array().at(0).as_object();
  CHECK(entry.at("late_join").as_bool());
  CHECK(m.ctl({"job", "show", j1}).out.find("pc1 (joined later)") != std::string::npos);
  auto members = ctl_json(m, {"idgroup", "show", "branch"}).at("members").as_array();
  REQUIRE(members.size() == 1);
  CHECK(members[0].at("how").as_string() == "config");

  // pc2 joins by a command on its machine: a wrong password is refused and changes nothing.
  AgentProc pc2(tmp / "pc2", m.url(), "pc2", "127.0.0.42");
  REQUIRE(wait_until([&] { return !id_by_name(m, "pc2").empty(); }, 20s));
  auto bad =
      run(agent_cmd(pc2, m.url(), "127.0.0.42", {"--join-group", "branch", "--group-password", "wrong"}));
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("wrong password for ID group \"branch\"") != std::string::npos);
  CHECK(ctl_json(m, {"idgroup", "show", "branch"}).at("members").as_array().size() == 1);
  auto none = run(agent_cmd(pc2, m.url(), "127.0.0.42", {"--join-group", "nosuch"}));
  CHECK(none.exit_code != 0);
  CHECK(none.err.find("no ID group \"nosuch\"") != std::string::npos);
  CHECK(installs(pc2).empty());

  auto good =
      run(agent_cmd(pc2, m.url(), "127.0.0.42", {"--join-group", "branch", "--group-password", "s3cret"}));
  INFO(good.err);
  CHECK(good.exit_code == 0);
  CHECK(good.out.find("joined ID group branch (2 standing jobs to receive)") != std::string::npos);
  // The running agent gets the work on its next contact: it was waiting in a long poll.
  REQUIRE(wait_until([&] { return count_of(show(m, j2), "succeeded") == 2; }, 30s));
  CHECK(installs(pc2) == "app 1\napp 2\n");

  SECTION("a member that leaves gets no further job of the group") {
    auto left = run(agent_cmd(pc2, m.url(), "127.0.0.42", {"--leave-group", "branch"}));
    INFO(left.err);
    CHECK(left.exit_code == 0);
    CHECK(left.out.find("left ID group branch") != std::string::npos);
    make_app(m, tmp, "app", "3");
    const auto j3 = create_job(m, {"install", "app", "3", "id:branch"});
    REQUIRE(wait_until([&] { return count_of(show(m, j3), "succeeded") == 1; }, 30s));
    const auto shown = show(m, j3);
    REQUIRE(shown.at("entries").as_array().size() == 1);
    CHECK(shown.at("entries").as_array()[0].at("host_name").as_string() == "pc1");
    CHECK(installs(pc1) == "app 1\napp 2\napp 3\n");
    CHECK(installs(pc2) == "app 1\napp 2\n");
  }

  SECTION("the administrator and a join policy make members too") {
    REQUIRE(m.ctl({"idgroup", "create", "lab", "--match-name", "pc[12]"}).exit_code == 0);
    auto lab = ctl_json(m, {"idgroup", "show", "lab"}).at("members").as_array();
    CHECK(lab.size() == 2);
    CHECK(lab[0].at("how").as_string() == "policy");
    // A host registering later with a matching name joins by the policy at registration.
    REQUIRE(m.ctl({"idgroup", "create", "late", "--match-ip", "127.0.0.43/32"}).exit_code == 0);
    AgentProc pc3(tmp / "pc3", m.url(), "pc3", "127.0.0.43");
    CHECK(wait_until(
        [&] {
          return ctl_json(m, {"idgroup", "show", "late"}).at("members").as_array().size() == 1;
        },
        20s));
    REQUIRE(m.ctl({"idgroup", "create", "ops"}).exit_code == 0);
    auto added = ctl_json(m, {"idgroup", "add", "ops", "pc1", "pc3"});
    CHECK(added.at("joined").as_int64() == 2);
    auto removed = ctl_json(m, {"idgroup", "remove", "ops", "pc3"});
    CHECK(removed.at("left").as_int64() == 1);
    CHECK(ctl_json(m, {"idgroup", "list"}).at("id_groups").as_array().size() == 4);
    REQUIRE(m.ctl({"idgroup", "delete", "ops"}).exit_code == 0);
    CHECK(m.ctl({"idgroup", "show", "ops"}).exit_code == 4);
  }
}

TEST_CASE("ID groups through relays: owned at the manager or at a relay", "[groups]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  ManagerProc r(
      tmp / "relay",
      {"--parent", m.url(), "--host-name", "relay1", "--poll-timeout", "5", "--sync-interval-ms", "200"},
      "127.0.0.21");
  make_app(m, tmp, "tool", "1");
  REQUIRE(m.ctl({"idgroup", "create", "fleet"}).exit_code == 0);
  const auto job = create_job(m, {"install", "tool", "1", "id:fleet"});
  // A relay owns its own ID group; its administrator sends jobs to it at the relay.
  REQUIRE(r.ctl({"idgroup", "create", "local", "--password", "pw"}).exit_code == 0);
  // The agent below the relay joins the manager's group (forwarded up) and the relay's own.
  AgentProc leaf(tmp / "leaf", r.url(), "leaf", "127.0.0.51",
                 {"--id-group", "fleet", "--id-group", "local:pw", "--accept-relay-orders"});
  REQUIRE(wait_until([&] { return count_of(show(m, job), "succeeded") == 1; }, 40s));
  CHECK(ctl_json(m, {"idgroup", "show", "fleet"}).at("members").as_array().size() == 1);
  CHECK(ctl_json(r, {"idgroup", "show", "local"}).at("members").as_array().size() == 1);
  // A job at the relay to its own group: the package comes from the manager through the relay.
  make_app(m, tmp, "tool", "2");
  const auto local = create_job(r, {"install", "tool", "2", "id:local"});
  REQUIRE(wait_until([&] { return count_of(show(r, local), "succeeded") == 1; }, 40s));
  CHECK(installs(leaf) == "tool 1\ntool 2\n");
  // "relay:NAME" names every host below the relay (the relay itself is not an agent).
  make_app(m, tmp, "tool", "3");
  const auto below = create_job(m, {"install", "tool", "3", "relay:relay1"});
  const auto entries = show(m, below).at("entries").as_array();
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].at("host_name").as_string() == "leaf");
  CHECK(m.ctl({"job", "create", "install", "tool", "3", "relay:nowhere"})
            .err.find("relay:nowhere (no such relay)") != std::string::npos);
}

TEST_CASE("a staged rollout stops at the error threshold and a good one runs every wave", "[groups]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  std::vector<std::unique_ptr<AgentProc>> agents;
  std::vector<std::string> names;
  for (int i = 0; i < 10; ++i) {
    names.push_back("node" + std::to_string(i));
    agents.push_back(std::make_unique<AgentProc>(tmp / names.back(), m.url(), names.back(),
                                                 "127.0.0." + std::to_string(60 + i)));
  }
  REQUIRE(wait_until([&] { return host_count(m) == 10; }, 30s));
  std::vector<std::string> create = {"group", "create", "all"};
  create.insert(create.end(), names.begin(), names.end());
  REQUIRE(m.ctl(create).exit_code == 0);
  CHECK(ctl_json(m, {"group", "show", "all"}).at("members").as_array().size() == 10);
  // Membership changes, listing and deletion of host groups.
  REQUIRE(m.ctl({"group", "create", "pair", "node0"}).exit_code == 0);
  CHECK(ctl_json(m, {"group", "add", "pair", "node1"}).at("group").as_string() == "pair");
  REQUIRE(m.ctl({"group", "remove", "pair", "node0"}).exit_code == 0);
  const auto pair = ctl_json(m, {"group", "show", "pair"}).at("hosts").as_array();
  REQUIRE(pair.size() == 1);
  CHECK(pair[0].at("name").as_string() == "node1");
  CHECK(ctl_json(m, {"group", "list"}).at("groups").as_array().size() == 2);
  REQUIRE(m.ctl({"group", "delete", "pair"}).exit_code == 0);
  CHECK(m.ctl({"group", "show", "pair"}).exit_code == 4);

  make_app(m, tmp, "broken", "1", 3);
  const auto bad = create_job(m, {"install", "broken", "1", "group:all", "--waves", "20,60,100",
                                  "--success-threshold", "100", "--error-threshold", "10"});
  REQUIRE(wait_until(
      [&] { return show(m, bad).at("job").at("rollout").at("state").as_string() == "stopped"; }, 40s));
  const auto stopped = show(m, bad);
  INFO(bj::serialize(stopped));
  // Only the first wave (20 % of 10 hosts) ran; everything held was cancelled.
  CHECK(count_of(stopped, "failed") == 2);
  CHECK(count_of(stopped, "cancelled") == 8);
  CHECK(stopped.at("waves").as_array()[0].at("failed").as_int64() == 2);
  CHECK(stopped.at("job").at("rollout").at("message").as_string().find("error threshold exceeded") == 0);
  for (const auto& e : stopped.at("entries").as_array())
    if (e.at("state").as_string() == "cancelled")
      CHECK(e.at("message").as_string().find("rollout stopped") == 0);
  auto table = m.ctl({"job", "show", bad});
  CHECK(table.out.find("WAVE") != std::string::npos);
  CHECK(table.out.find("stopped") != std::string::npos);

  make_app(m, tmp, "fine", "1");
  const auto good = create_job(m, {"install", "fine", "1", "group:all", "--waves", "20,60,100"});
  const auto done = wait_job(m, good, 60s);
  CHECK(all_succeeded(done));
  const auto shown = show(m, good);
  CHECK(shown.at("job").at("rollout").at("state").as_string() == "completed");
  const auto& waves = shown.at("waves").as_array();
  REQUIRE(waves.size() == 3);
  CHECK(waves[0].at("total").as_int64() == 2);
  CHECK(waves[1].at("total").as_int64() == 4);
  CHECK(waves[2].at("total").as_int64() == 4);
}

TEST_CASE("install timing, start time, expiry and retries", "[groups]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  AgentProc pc(tmp / "pc", m.url(), "pc", "127.0.0.71");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 20s));

  SECTION("an at-start job installs only when the agent restarts") {
    make_app(m, tmp, "boot", "1");
    const auto job = create_job(m, {"install", "boot", "1", "pc", "--timing", "at-start"});
    std::this_thread::sleep_for(3s);
    CHECK(only_state(m, job) == "waiting");
    pc.stop();
    pc.start();
    REQUIRE(wait_until([&] { return only_state(m, job) == "succeeded"; }, 30s));
    CHECK(installs(pc) == "boot 1\n");
  }

  SECTION("an at-stop job installs during the agent's orderly stop") {
    make_app(m, tmp, "bye", "1");
    const auto job = create_job(m, {"install", "bye", "1", "pc", "--timing", "at-stop"});
    std::this_thread::sleep_for(2s);
    CHECK(only_state(m, job) == "waiting");
    pc.stop();  // SIGTERM: the stop phase installs it before the process exits
    CHECK(only_state(m, job) == "succeeded");
    CHECK(installs(pc) == "bye 1\n");
  }

  SECTION("a window job installs only while its daily window is open") {
    // Minutes of the manager's local day: a window that opened a minute ago, one two hours away.
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    const int now_min = tm.tm_hour * 60 + tm.tm_min;
    auto hhmm = [](int minute) {
      minute = ((minute % 1440) + 1440) % 1440;
      char buf[16];
      std::snprintf(buf, sizeof buf, "%02d:%02d", minute / 60 % 24, minute % 60);
      return std::string(buf);
    };
    make_app(m, tmp, "night", "1");
    make_app(m, tmp, "open", "1");
    const auto closed = create_job(
        m, {"install", "night", "1", "pc", "--window", hhmm(now_min + 120) + "-" + hhmm(now_min + 180)});
    const auto open = create_job(
        m, {"install", "open", "1", "pc", "--window", hhmm(now_min - 1) + "-" + hhmm(now_min + 60)});
    REQUIRE(wait_until([&] { return only_state(m, open) == "succeeded"; }, 20s));
    std::this_thread::sleep_for(2s);
    CHECK(only_state(m, closed) == "waiting");
    CHECK(installs(pc) == "open 1\n");
  }

  SECTION("entries wait for their start time; an entry not final by its expiry becomes expired") {
    make_app(m, tmp, "later", "1");
    const auto job = create_job(m, {"install", "later", "1", "pc", "--start", "+4s"});
    std::this_thread::sleep_for(1500ms);
    CHECK(only_state(m, job) == "waiting");
    CHECK(m.ctl({"job", "show", job}).out.find("waiting until") != std::string::npos);
    REQUIRE(wait_until([&] { return only_state(m, job) == "succeeded"; }, 20s));

    pc.stop();
    make_app(m, tmp, "missed", "1");
    const auto exp = create_job(m, {"install", "missed", "1", "pc", "--expires", "+2s"});
    REQUIRE(wait_until([&] { return only_state(m, exp) == "expired"; }, 15s));
    pc.start();
    std::this_thread::sleep_for(2s);
    CHECK(only_state(m, exp) == "expired");
    CHECK(installs(pc) == "later 1\n");
  }

  SECTION("failed installs are retried with backoff when asked, and on the operator's request") {
    make_app(m, tmp, "flaky", "1", 7);
    const auto job = create_job(
        m, {"install", "flaky", "1", "pc", "--retries", "1", "--retry-installs", "--retry-backoff", "1"});
    REQUIRE(wait_until([&] { return only_state(m, job) == "failed"; }, 30s));
    auto e = show(m, job).at("entries").as_array().at(0).as_object();
    CHECK(e.at("attempt").as_int64() == 2);
    CHECK(e.at("exit_code").as_int64() == 7);
    auto retried = ctl_json(m, {"job", "retry", job});
    CHECK(retried.at("retried").as_int64() == 1);
    REQUIRE(wait_until(
        [&] {
          auto x = show(m, job).at("entries").as_array().at(0).as_object();
          return x.at("attempt").as_int64() == 3 && x.at("state").as_string() == "failed";
        },
        30s));
  }
}

TEST_CASE("bad job destinations and schedules are refused and nothing is written", "[groups]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  AgentProc pc(tmp / "pc", m.url(), "pc", "127.0.0.81");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 20s));
  make_app(m, tmp, "app", "1");
  REQUIRE(m.ctl({"group", "create", "empty"}).exit_code == 0);
  const auto before = job_count(m);

  auto r = m.ctl({"job", "create", "install", "app", "1", "pc", "group:nope", "id:ghosts"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("group:nope (no such host group)") != std::string::npos);
  CHECK(r.err.find("id:ghosts (no such ID group here)") != std::string::npos);
  CHECK(r.err.find("no job was created") != std::string::npos);

  r = m.ctl({"job", "create", "install", "app", "1", "group:empty"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("the destinations name no agent") != std::string::npos);

  r = m.ctl({"job", "create", "install", "app", "1", "pc", "--start", "+2h", "--expires", "+1h"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("is not before the expiry") != std::string::npos);

  r = m.ctl({"job", "create", "install", "app", "1", "pc", "--waves", "50,20"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("waves must be increasing") != std::string::npos);
  r = m.ctl({"job", "create", "install", "app", "1", "pc", "--timing", "sometimes"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("unknown install timing") != std::string::npos);
  r = m.ctl({"job", "create", "install", "app", "1", "pc", "--start", "tomorrow"});
  CHECK(r.exit_code == 2);
  CHECK(job_count(m) == before);

  // Groups: duplicate names, unknown hosts and bad names are refused whole.
  r = m.ctl({"group", "create", "empty"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("already exists") != std::string::npos);
  r = m.ctl({"group", "create", "mixed", "pc", "ghost"});
  CHECK(r.exit_code == 4);
  CHECK(r.err.find("no host answers to ghost") != std::string::npos);
  CHECK(m.ctl({"group", "show", "mixed"}).exit_code == 4);
  r = m.ctl({"idgroup", "create", "bad name!"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("may only hold letters") != std::string::npos);
  r = m.ctl({"idgroup", "create", "net", "--match-ip", "10.0.0.0/99"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("is not an address or CIDR range") != std::string::npos);

  // A malformed join straight to the agent API: a clear 400, the daemon keeps serving.
  const auto prober = enrol_test_host(m, tmp / "prober", "prober");
  auto raw =
      run({"/usr/bin/curl", "-s", "-w", " %{http_code}", "-X", "POST", "--cacert", m.ca_file(), "--cert",
           prober.cert_file, "--key", prober.key_file, "-H", "Content-Type: application/json", "--data",
           "{\"host_id\": \"x\", \"group\": \"g\"}", m.url() + "/v1/agent/join"});
  CHECK(raw.out.find("host_id must be a host UUID") != std::string::npos);
  CHECK(raw.out.find(" 400") != std::string::npos);
  CHECK(host_count(m) == 1);
}
