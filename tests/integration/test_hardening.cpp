// A compromised relay, played by editing its database between two runs (what root on the relay's
// machine can do): it alters a manifest's install command, alters the paths of a collect order,
// drops an order's signature, and replays an order that was carried out. The agent below it
// refuses each, reports why, and nothing runs; the honest path through the same relay works.
#include "ctl_json.h"
#include "harness.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

using namespace distrib::test;
namespace bj = boost::json;

namespace {

// One statement on a stopped relay's SQLite database.
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
    const auto shown = wait_job(m, job, 60s);
    INFO(shown);
    CHECK(only_entry(shown, "state") == "failed");
    CHECK(only_entry(shown, "message").find("is not the one the order names") != std::string::npos);
    CHECK_FALSE(stdfs::exists(tmp / "pwned.log"));
    CHECK(read_file(tmp / "ran.log") == "ran\n");
    // The failure is an event at the top, naming the reason.
    const auto events = m.ctl({"events", "--type", "entry.failed"}, true);
    CHECK(events.out.find("order refused") != std::string::npos);
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
