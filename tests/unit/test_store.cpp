// Store conformance: every registered backend must pass these (SQLite here; more backends join
// the GENERATE list as they are added).
#include <distrib/error.h>
#include <distrib/store/store.h>

#include "harness.h"

#include <catch2/catch.hpp>
#include <sqlite3.h>

using namespace distrib;
using namespace distrib::test;

namespace {
const std::string kA = "11111111-1111-4111-8111-111111111111";
const std::string kB = "22222222-2222-4222-8222-222222222222";
const std::string kR = "33333333-3333-4333-8333-333333333333";  // a relay
const std::string kC = "44444444-4444-4444-8444-444444444444";  // an agent below the relay

Host host(const std::string& id, const std::string& name) {
  Host h;
  h.host_id = id;
  h.name = name;
  h.addresses = {"10.0.0.1", "10.0.0.2"};
  h.os = "TestOS";
  return h;
}

Manifest manifest(const std::string& name, const std::string& version, char digest_char = 'a') {
  Manifest m;
  m.name = name;
  m.version = version;
  m.payload_digest = std::string(64, digest_char);
  m.payload_size = 5;
  m.chunks = {{std::string(64, 'c'), 5}};
  m.files = {{"f", 5, std::string(64, 'd'), 0644, "file", ""}};
  return m;
}

// An install job of app 1.0 to `destinations` (names).
Job app_job(std::vector<std::string> destinations) {
  Job job;
  job.package_name = "app";
  job.package_version = "1.0";
  job.destinations = std::move(destinations);
  job.key_mode = "name";
  return job;
}

std::unique_ptr<Store> open_store(const std::string& backend, const TempDir& tmp) {
  StoreRegistry registry;
  register_builtin_stores(registry);
  StoreSettings s;
  s.backend = backend;
  s.path = (tmp / "test.db").string();
  return registry.open(s);
}
}  // namespace

TEST_CASE("store conformance", "[store]") {
  const std::string backend = GENERATE(as<std::string>{}, "sqlite");
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  CHECK(store->schema_version() == latest_schema_version());

  SECTION("hosts are upserted by identifier and keep their first registration time") {
    auto h = host(kA, "web1");
    h.registered_at = 1000;
    h.last_seen = 1000;
    store->upsert_host(h);
    h.name = "web1-renamed";
    h.registered_at = 2000;
    h.last_seen = 2000;
    store->upsert_host(h);
    auto all = store->list_hosts();
    REQUIRE(all.size() == 1);
    CHECK(all[0].name == "web1-renamed");
    CHECK(all[0].registered_at == 1000);
    CHECK(all[0].last_seen == 2000);
    CHECK(all[0].addresses == std::vector<std::string>{"10.0.0.1", "10.0.0.2"});
    CHECK(store->find_host(kA)->os == "TestOS");
    CHECK_FALSE(store->find_host(kB));
  }

  SECTION("packages are immutable") {
    CHECK(store->insert_package(manifest("app", "1.0")));
    CHECK_FALSE(store->insert_package(manifest("app", "1.0")));  // identical: idempotent
    CHECK_THROWS_WITH(store->insert_package(manifest("app", "1.0", 'b')),
                      Catch::Contains("already exists with other content"));
    CHECK(store->find_package("app", "1.0")->payload_digest == std::string(64, 'a'));
    CHECK_FALSE(store->find_package("app", "2.0"));
    CHECK(store->list_packages().size() == 1);
  }

  SECTION("jobs, entries and idempotent reports") {
    store->upsert_host(host(kA, "web1"));
    store->upsert_host(host(kB, "web2"));
    store->insert_package(manifest("app", "1.0"));
    const auto job = app_job({"web1", "web2"});
    auto created = store->create_job(job, {kA, kB}).job;
    CHECK(created.id > 0);
    auto entries = store->job_entries(created.id);
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].host_name == "web1");
    CHECK(entries[0].state == EntryState::waiting);
    CHECK(store->open_entries_for_host(kA).size() == 1);
    CHECK(store->children_with_work().size() == 2);

    const auto entry = entries[0].id;
    EntryReport r{entry, 1, 5, EntryState::transferring, {}, "", ""};
    CHECK(store->apply_report(kA, r).kind == ReportOutcome::Kind::applied);
    CHECK(store->apply_report(kA, r).kind == ReportOutcome::Kind::duplicate);  // same seq again
    r.seq = 4;
    r.state = EntryState::succeeded;
    CHECK(store->apply_report(kA, r).kind == ReportOutcome::Kind::duplicate);  // older seq
    r.seq = 6;
    CHECK(store->apply_report(kB, r).kind == ReportOutcome::Kind::unknown_entry);  // not B's entry
    r.state = EntryState::installing;  // transferring -> installing skips transferred
    auto refused = store->apply_report(kA, r);
    CHECK(refused.kind == ReportOutcome::Kind::refused);
    CHECK(refused.current == EntryState::transferring);
    r.seq = 7;
    r.state = EntryState::failed;
    r.exit_code = 3;
    r.output_tail = "boom";
    CHECK(store->apply_report(kA, r).kind == ReportOutcome::Kind::applied);
    auto after = store->job_entries(created.id);
    CHECK(after[0].state == EntryState::failed);
    CHECK(after[0].exit_code == 3);
    CHECK(after[0].output_tail == "boom");
    CHECK(store->open_entries_for_host(kA).empty());

    auto listing = store->list_jobs(10);
    REQUIRE(listing.size() == 1);
    CHECK(listing[0].progress.total == 2);
    CHECK(listing[0].progress.count(EntryState::failed) == 1);
    CHECK(listing[0].progress.count(EntryState::waiting) == 1);

    auto cancelled = store->cancel_job(created.id);
    CHECK(cancelled == std::vector<std::string>{kB});
    CHECK(store->find_job(created.id)->cancel_requested);
    CHECK(store->job_entries(created.id)[1].state == EntryState::cancelled);
    CHECK_THROWS_WITH(store->cancel_job(created.id + 100), Catch::Contains("does not exist"));
  }

  SECTION("a host's moves, renames and approval are changes; a bare contact is not") {
    auto h = host(kA, "web1");
    auto first = store->upsert_host(h);
    CHECK(first.created);
    CHECK(store->find_host(kA)->via == kA);  // registered directly
    CHECK_FALSE(store->upsert_host(h).changed);
    h.name = "web1-new";
    auto renamed = store->upsert_host(h);
    CHECK(renamed.changed);
    CHECK(renamed.previous_via == kA);
    h.via = kR;
    h.parent = kR;
    auto moved = store->upsert_host(h);
    CHECK(moved.changed);
    CHECK(moved.previous_via == kA);
    CHECK(store->list_hosts().size() == 1);  // one host, never duplicated

    auto pending = host(kB, "web2");
    pending.approved = false;
    store->upsert_host(pending);
    CHECK_FALSE(store->find_host(kB)->approved);
    pending.approved = true;  // a later registration does not approve it
    store->upsert_host(pending);
    CHECK_FALSE(store->find_host(kB)->approved);
    CHECK(store->approve_hosts({kB}) == 1);
    CHECK(store->find_host(kB)->approved);
    CHECK(store->approve_hosts({kB}) == 0);

    store->touch_hosts({{kB, 4'000'000'000}, {"55555555-5555-4555-8555-555555555555", 1}});
    CHECK(store->find_host(kB)->last_seen == 4'000'000'000);
    store->remove_host(kB);
    CHECK_FALSE(store->find_host(kB));
  }

  SECTION("entries below a relay are pushed to it until acknowledged, and cancels follow") {
    auto relay = host(kR, "relay1");
    relay.role = HostRole::relay;
    store->upsert_host(relay);
    auto below = host(kC, "branch-pc");
    below.via = kR;
    below.parent = kR;
    store->upsert_host(below);
    store->upsert_host(host(kA, "web1"));
    store->insert_package(manifest("app", "1.0"));
    const auto job = app_job({"branch-pc", "web1"});
    auto created = store->create_job(job, {kC, kA}).job;
    auto children = store->children_with_work();
    std::sort(children.begin(), children.end());
    CHECK(children == std::vector<std::string>{kA, kR});

    auto push = store->entries_to_push(kR, 100);
    REQUIRE(push.size() == 1);
    CHECK(push[0].entry.host_id == kC);
    CHECK(push[0].job.package_name == "app");
    CHECK(store->entries_to_push(kA, 100).empty());  // an agent has nothing below it
    CHECK(store->open_entries_for_host(kR).empty());  // not the relay's own work

    store->mark_pushed(kR, {{push[0].entry.id, EntryState::transferring}});  // stale ack: ignored
    CHECK(store->entries_to_push(kR, 100).size() == 1);
    store->mark_pushed(kR, {{push[0].entry.id, EntryState::waiting}});
    CHECK(store->entries_to_push(kR, 100).empty());

    // The relay forwards the state of the whole path in one report; only it may do so.
    EntryReport r{push[0].entry.id, 1, 9, EntryState::installing, {}, "", ""};
    CHECK(store->apply_report(kR, r, false).kind == ReportOutcome::Kind::unknown_entry);
    CHECK(store->apply_report(kA, r, true).kind == ReportOutcome::Kind::unknown_entry);
    CHECK(store->apply_report(kR, r, true).kind == ReportOutcome::Kind::applied);
    r.seq = 10;
    r.state = EntryState::waiting;  // backwards: not reachable
    CHECK(store->apply_report(kR, r, true).kind == ReportOutcome::Kind::refused);

    auto vias = store->cancel_job(created.id);
    std::sort(vias.begin(), vias.end());
    CHECK(vias == std::vector<std::string>{kA});  // the relay's entry is installing: not cancellable

    // A waiting entry below the relay that gets cancelled is pushed again, as cancelled.
    auto second = store->create_job(job, {kC}).job;
    auto p2 = store->entries_to_push(kR, 100);
    REQUIRE(p2.size() == 1);
    store->mark_pushed(kR, {{p2[0].entry.id, EntryState::waiting}});
    CHECK(store->cancel_job(second.id) == std::vector<std::string>{kR});
    auto p3 = store->entries_to_push(kR, 100);
    REQUIRE(p3.size() == 1);
    CHECK(p3[0].entry.state == EntryState::cancelled);
  }

  SECTION("a relay imports entries, runs them locally and forwards their states") {
    auto agent = host(kC, "branch-pc");
    store->upsert_host(agent);
    RoutedEntry x;
    x.entry.id = 500;
    x.entry.host_id = kC;
    x.entry.state = EntryState::waiting;
    x.job.id = 70;
    x.job.package_name = "app";
    x.job.package_version = "1.0";
    CHECK(store->import_entries({x}) == std::vector<std::string>{kC});
    CHECK(store->import_entries({x}).empty());  // idempotent: already here
    auto open = store->open_entries_for_host(kC);
    REQUIRE(open.size() == 1);
    const auto local = open[0].id;
    auto jobs = store->list_jobs(10);
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0].job.upstream_id == 70);
    CHECK(store->reports_to_forward(10).empty());

    EntryReport r{local, 1, 3, EntryState::transferring, {}, "", ""};
    REQUIRE(store->apply_report(kC, r).kind == ReportOutcome::Kind::applied);
    r.seq = 4;
    r.state = EntryState::transferred;
    REQUIRE(store->apply_report(kC, r).kind == ReportOutcome::Kind::applied);
    auto fwd = store->reports_to_forward(10);
    REQUIRE(fwd.size() == 1);  // two changes, one report: the latest state
    CHECK(fwd[0].report.entry_id == 500);
    CHECK(fwd[0].report.state == EntryState::transferred);
    CHECK(fwd[0].report.seq == 4);
    r.seq = 5;
    r.state = EntryState::installing;
    store->apply_report(kC, r);                             // changed after it was read...
    store->reports_forwarded({{local, fwd[0].version}});    // ...so this does not clear it
    REQUIRE(store->reports_to_forward(10).size() == 1);
    auto again = store->reports_to_forward(10);
    store->reports_forwarded({{local, again[0].version}});
    CHECK(store->reports_to_forward(10).empty());

    // Hosts to report upward, with the same change counter rule.
    auto hosts = store->hosts_to_report(10);
    REQUIRE(hosts.size() == 1);
    store->hosts_reported({{kC, hosts[0].version}});
    CHECK(store->hosts_to_report(10).empty());

    // Cancel from the parent reaches a waiting local entry of another job.
    x.entry.id = 501;
    x.job.id = 71;
    store->import_entries({x});
    x.entry.state = EntryState::cancelled;
    store->import_entries({x});
    auto entries = store->job_entries(store->list_jobs(10)[0].job.id);
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].state == EntryState::cancelled);
  }

  SECTION("a package still needed by an open entry cannot be deleted") {
    store->upsert_host(host(kA, "web1"));
    store->insert_package(manifest("app", "1.0"));
    store->insert_package(manifest("app", "2.0", 'e'));
    store->create_job(app_job({"web1"}), {kA});
    CHECK_THROWS_WITH(store->delete_package("app", "1.0"), Catch::Contains("still needed by job"));
    CHECK(store->delete_package("app", "2.0"));
    CHECK_FALSE(store->delete_package("app", "2.0"));
    store->touch_package("app", "1.0", 1234);
    CHECK(store->list_packages()[0].last_used == 1234);
  }

  SECTION("data survives reopening") {
    store->upsert_host(host(kA, "web1"));
    store.reset();
    auto again = open_store(backend, tmp);
    CHECK(again->list_hosts().size() == 1);
  }
}

TEST_CASE("store registry names what it knows", "[store]") {
  StoreRegistry registry;
  register_builtin_stores(registry);
  StoreSettings s;
  s.backend = "oracle-native";
  CHECK_THROWS_WITH(registry.open(s), Catch::Contains("unknown database backend") && Catch::Contains("sqlite"));
  CHECK_THROWS_WITH(registry.add("sqlite", nullptr), Catch::Contains("registered twice"));
}

TEST_CASE("a database newer than the binary is refused", "[store]") {
  TempDir tmp;
  open_store("sqlite", tmp).reset();
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((tmp / "test.db").c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "INSERT INTO schema_version VALUES (999, 0)", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  CHECK_THROWS_WITH(open_store("sqlite", tmp), Catch::Contains("newer than this distribd"));
}

TEST_CASE("a file that is not a database is a clear error", "[store]") {
  TempDir tmp;
  write_file(tmp / "test.db", std::string(8192, 'x'));
  CHECK_THROWS_WITH(open_store("sqlite", tmp), Catch::Contains("database"));
}
