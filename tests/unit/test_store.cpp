// Store conformance: every backend path reachable in the run passes the same cases: SQLite
// embedded, SQLite through ODBC (sqliteodbc), and with the run's PostgreSQL server (CTest's
// "postgres" fixture sets DISTRIB_TEST_PG) PostgreSQL natively and through psqlODBC.
#include <distrib/error.h>
#include <distrib/store/store.h>

#include "harness.h"
#include "store/connection.h"
#include "store/dialect.h"
#include "store/soci/item_catalogue.h"

#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <atomic>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <set>
#include <sstream>

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

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
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

// A database of its own for the test using `tmp` (the same one when opened again).
std::string pg_database(const TempDir& tmp, const std::string& prefix) {
  std::string name = prefix;
  for (char c : tmp.path().filename().string())
    name += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
  return pg_create_database(name);
}

// Every backend path reachable in this run: the embedded database and SQLite through ODBC
// always, PostgreSQL natively and through ODBC when the run provides a server.
std::vector<std::string> backends() {
  std::vector<std::string> out = {"sqlite", "odbc-sqlite"};
  if (!pg_server().empty()) {
    out.push_back("postgresql");
    out.push_back("odbc-postgresql");
  }
  return out;
}

StoreSettings settings_for(const std::string& backend, const TempDir& tmp) {
  StoreSettings s;
  s.backend = backend;
  s.path = (tmp / "test.db").string();
  if (backend == "odbc-sqlite") {
    s.backend = "odbc";
    s.connection = "DRIVER={SQLite3};Database=" + s.path + ";";
  } else if (backend == "postgresql") {
    s.connection = pg_connection(pg_database(tmp, "n_"));
  } else if (backend == "odbc-postgresql") {
    s.backend = "odbc";
    s.connection = pg_odbc_connection(pg_database(tmp, "o_"));
  }
  return s;
}

std::unique_ptr<Store> open_store(const std::string& backend, const TempDir& tmp) {
  StoreRegistry registry;
  register_builtin_stores(registry);
  return registry.open(settings_for(backend, tmp));
}

// The kind of the Error `fn` throws; nullopt when it throws none.
template <class Fn>
std::optional<ErrorKind> error_kind(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.kind();
  }
  return std::nullopt;
}

// The store's clock (std::time reads a coarse clock that may still show the last second).
std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Registers `n` agents "pc000", "pc001", ... and returns their ids in that order.
std::vector<std::string> register_agents(Store& store, int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    char id[40], name[16];
    std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012d", i);
    std::snprintf(name, sizeof name, "pc%03d", i);
    store.upsert_host(host(id, name));
    ids.emplace_back(id);
  }
  return ids;
}

// The entry of `host_id` in the job.
JobEntry entry_of(Store& store, std::int64_t job_id, const std::string& host_id) {
  for (auto& e : store.job_entries(job_id))
    if (e.host_id == host_id) return e;
  FAIL("job " << job_id << " has no entry for host " << host_id);
  return {};
}
}  // namespace

TEST_CASE("store conformance", "[store]") {
  const std::string backend = GENERATE(from_range(backends()));
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
    CHECK(store->entries_to_push(kA, 100).empty());   // an agent has nothing below it
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
    store->apply_report(kC, r);                           // changed after it was read...
    store->reports_forwarded({{local, fwd[0].version}});  // ...so this does not clear it
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
  CHECK_THROWS_WITH(registry.open(s),
                    Catch::Contains("unknown database backend") && Catch::Contains("sqlite"));
  CHECK_THROWS_WITH(registry.add("sqlite", nullptr), Catch::Contains("registered twice"));
}

TEST_CASE("a database newer than the binary is refused", "[store]") {
  TempDir tmp;
  open_store("sqlite", tmp).reset();
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((tmp / "test.db").c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "INSERT INTO schema_version VALUES (999, 0)", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  sqlite3_close(db);
  CHECK_THROWS_WITH(open_store("sqlite", tmp), Catch::Contains("newer than this distribd"));
}

TEST_CASE("a file that is not a database is a clear error", "[store]") {
  TempDir tmp;
  write_file(tmp / "test.db", std::string(8192, 'x'));
  CHECK_THROWS_WITH(open_store("sqlite", tmp), Catch::Contains("database"));
}

TEST_CASE("store conformance: host groups", "[store]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  store->upsert_host(host(kA, "web1"));
  store->upsert_host(host(kB, "web2"));
  store->upsert_host(host(kR, "relay1"));

  HostGroup web;
  web.name = "web";
  web.description = "web servers";
  web.members = {kB, kA};
  store->create_host_group(web);
  CHECK(error_kind([&] { store->create_host_group(web); }) == ErrorKind::conflict);
  HostGroup empty;
  empty.name = "empty";
  store->create_host_group(empty);

  auto found = store->find_host_group("web");
  REQUIRE(found);
  CHECK(found->description == "web servers");
  CHECK(found->created_at > 0);
  CHECK(found->members == std::vector<std::string>{kA, kB});  // by host name
  CHECK_FALSE(store->find_host_group("nosuch"));

  auto all = store->list_host_groups();
  REQUIRE(all.size() == 2);
  CHECK(all[0].name == "empty");
  CHECK(all[0].members.empty());
  CHECK(all[1].name == "web");
  CHECK(all[1].members == std::vector<std::string>{kA, kB});

  CHECK(store->change_host_group("web", {kA}, {}) == 0);    // already a member
  CHECK(store->change_host_group("web", {kR}, {kB}) == 2);  // one in, one out
  CHECK(store->change_host_group("web", {}, {kB}) == 0);    // not a member any more
  CHECK(store->change_host_group("web", {kR, kB}, {kA}) == 2);
  CHECK(store->find_host_group("web")->members == std::vector<std::string>{kR, kB});
  CHECK(store->find_host_group("empty")->members.empty());
  CHECK(error_kind([&] { store->change_host_group("nosuch", {kA}, {}); }) == ErrorKind::not_found);

  CHECK(store->delete_host_group("web"));
  CHECK_FALSE(store->delete_host_group("web"));
  CHECK_FALSE(store->find_host_group("web"));
  CHECK(store->list_host_groups().size() == 1);
  // The name is free again, and the old memberships went with the group.
  HostGroup again;
  again.name = "web";
  store->create_host_group(again);
  CHECK(store->find_host_group("web")->members.empty());
}

TEST_CASE("store conformance: ID groups and standing jobs", "[store]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  store->upsert_host(host(kA, "web1"));
  store->upsert_host(host(kB, "web2"));
  auto relay = host(kR, "relay1");
  relay.role = HostRole::relay;
  store->upsert_host(relay);
  store->insert_package(manifest("app", "1.0"));

  IdGroup g;
  g.name = "g";
  g.owner = kR;
  store->create_id_group(g);
  CHECK(error_kind([&] { store->create_id_group(g); }) == ErrorKind::conflict);
  CHECK(error_kind([&] { store->join_id_group("nosuch", {kA}, JoinMethod::admin); }) == ErrorKind::not_found);
  CHECK(error_kind([&] { store->leave_id_group("nosuch", {kA}); }) == ErrorKind::not_found);
  CHECK(error_kind([&] {
          store->join_id_group("g", {"55555555-5555-4555-8555-555555555555"}, JoinMethod::admin);
        }) == ErrorKind::not_found);

  auto standing = app_job({"id:g"});
  standing.id_groups = {"g"};
  // No members yet: the jobs stand, with no entries.
  auto first = store->create_job(standing, {});
  auto second = store->create_job(standing, {});
  CHECK(first.entries == 0);
  CHECK(second.entries == 0);
  CHECK(first.vias.empty());
  CHECK(store->find_job(first.job.id)->id_groups == std::vector<std::string>{"g"});
  auto jobs = store->standing_jobs("g");
  REQUIRE(jobs.size() == 2);
  CHECK(jobs[0].id == first.job.id);
  CHECK(jobs[1].id == second.job.id);

  // A host joining receives every standing job, oldest first, marked late-join.
  auto joined = store->join_id_group("g", {kA}, JoinMethod::command);
  CHECK(joined.changed == 1);
  CHECK(joined.entries == 2);
  CHECK(joined.vias == std::vector<std::string>{kA});
  auto open = store->open_entries_for_host(kA);
  REQUIRE(open.size() == 2);
  CHECK(open[0].job_id == first.job.id);
  CHECK(open[1].job_id == second.job.id);
  for (const auto& e : open) {
    CHECK(e.late_join);
    CHECK(e.state == EntryState::waiting);
  }
  CHECK(store->id_groups_of(kA) == std::vector<std::string>{"g"});
  auto found = store->find_id_group("g");
  REQUIRE(found);
  CHECK(found->owner == kR);
  REQUIRE(found->members.size() == 1);
  CHECK(found->members[0].host_id == kA);
  CHECK(found->members[0].host_name == "web1");
  CHECK(found->members[0].how == JoinMethod::command);
  std::map<std::string, std::int64_t> member_counts;
  CHECK(store->list_id_groups(&member_counts).size() == 1);
  CHECK(member_counts["g"] == 1);

  // Joining again changes nothing.
  auto again = store->join_id_group("g", {kA}, JoinMethod::command);
  CHECK(again.changed == 0);
  CHECK(again.entries == 0);
  CHECK(again.vias.empty());
  CHECK(store->open_entries_for_host(kA).size() == 2);

  // A job created after the join includes the member directly, once.
  auto third = store->create_job(standing, {kA});
  CHECK(third.entries == 1);
  CHECK(third.vias == std::vector<std::string>{kA});
  CHECK_FALSE(entry_of(*store, third.job.id, kA).late_join);

  // Members must be of the role the job needs: a relay gets no install entry...
  auto relay_joined = store->join_id_group("g", {kR}, JoinMethod::admin);
  CHECK(relay_joined.changed == 1);
  CHECK(relay_joined.entries == 0);
  CHECK(store->open_entries_for_host(kR).empty());
  auto fourth = store->create_job(standing, {});
  CHECK(fourth.entries == 1);
  CHECK(store->job_entries(fourth.job.id).size() == 1);
  CHECK(store->job_entries(fourth.job.id)[0].host_id == kA);
  // ...and an agent no transfer to a relay.
  auto staging = standing;
  staging.type = JobType::transfer_to_relay;
  auto staged = store->create_job(staging, {});
  CHECK(staged.entries == 1);
  CHECK(store->job_entries(staged.job.id)[0].host_id == kR);

  // Leaving cancels the host's entries of the group's jobs that have not started.
  const auto started = entry_of(*store, second.job.id, kA).id;
  REQUIRE(store->apply_report(kA, {started, 1, 1, EntryState::transferring, {}, "", ""}).kind ==
          ReportOutcome::Kind::applied);
  auto other = store->create_job(app_job({"web1"}), {kA});  // not a job of the group
  auto left = store->leave_id_group("g", {kA});
  CHECK(left.changed == 1);
  CHECK(left.entries == 3);
  CHECK(left.vias == std::vector<std::string>{kA});
  for (auto id : {first.job.id, third.job.id, fourth.job.id}) {
    const auto e = entry_of(*store, id, kA);
    INFO("job " << id);
    CHECK(e.state == EntryState::cancelled);
    CHECK_THAT(e.message, Catch::Contains("left ID group"));
  }
  CHECK(entry_of(*store, second.job.id, kA).state == EntryState::transferring);
  CHECK(entry_of(*store, other.job.id, kA).state == EntryState::waiting);
  CHECK(store->id_groups_of(kA).empty());
  auto left_again = store->leave_id_group("g", {kA});
  CHECK(left_again.changed == 0);
  CHECK(left_again.entries == 0);

  // Later jobs to the group do not include the host that left.
  auto later = store->create_job(standing, {});
  CHECK(later.entries == 0);

  // Deleting the group ends its standing jobs; their entries stay.
  CHECK(store->delete_id_group("g"));
  CHECK_FALSE(store->delete_id_group("g"));
  CHECK_FALSE(store->find_id_group("g"));
  CHECK(store->standing_jobs("g").empty());
  CHECK(store->job_entries(first.job.id).size() == 1);
}

TEST_CASE("store conformance: staged rollouts", "[store]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  store->insert_package(manifest("app", "1.0"));

  SECTION("waves are held until released and the last release completes the rollout") {
    const auto ids = register_agents(*store, 10);
    auto job = app_job({});
    job.rollout.waves = {20, 60, 100};
    const auto created = store->create_job(job, ids);
    const auto id = created.job.id;
    CHECK(created.entries == 10);
    CHECK(created.vias.size() == 2);  // only the first wave is woken
    auto found = store->find_job(id);
    REQUIRE(found);
    CHECK(found->rollout_state == RolloutState::running);
    CHECK(found->current_wave == 1);
    CHECK(found->rollout.waves == std::vector<int>{20, 60, 100});

    auto counts = store->wave_counts(id);
    REQUIRE(counts.size() == 3);
    CHECK(counts[0].wave == 1);
    CHECK(counts[0].total == 2);
    CHECK(counts[1].wave == 2);
    CHECK(counts[1].total == 4);
    CHECK(counts[2].wave == 3);
    CHECK(counts[2].total == 4);
    for (const auto& e : store->job_entries(id)) {
      INFO("wave " << e.wave);
      if (e.wave == 1) {
        CHECK(e.ready_at == 0);
      } else {
        CHECK(e.ready_at == kHeldUntilReleased);
      }
    }
    auto running = store->running_rollouts();
    REQUIRE(running.size() == 1);
    CHECK(running[0].id == id);

    const auto before = now_unix();
    CHECK(store->release_wave(id, 2).size() == 4);
    const auto after = now_unix();
    for (const auto& e : store->job_entries(id)) {
      INFO("wave " << e.wave);
      if (e.wave == 2) {
        CHECK(e.ready_at >= before);
        CHECK(e.ready_at <= after);
      }
      if (e.wave == 3) CHECK(e.ready_at == kHeldUntilReleased);
    }
    CHECK(store->find_job(id)->current_wave == 2);
    CHECK(store->find_job(id)->rollout_state == RolloutState::running);
    REQUIRE(store->running_rollouts().size() == 1);
    CHECK(store->running_rollouts()[0].id == id);

    CHECK(store->release_wave(id, 3).size() == 4);
    found = store->find_job(id);
    CHECK(found->rollout_state == RolloutState::completed);
    CHECK(found->current_wave == 3);
    CHECK(store->running_rollouts().empty());
    for (const auto& e : store->job_entries(id)) CHECK(e.ready_at < kHeldUntilReleased);
  }

  SECTION("hosts are drawn into waves at random") {
    const auto ids = register_agents(*store, 200);
    auto job = app_job({});
    job.rollout.waves = {5, 25, 100};
    const auto id = store->create_job(job, ids).job.id;
    auto counts = store->wave_counts(id);
    REQUIRE(counts.size() == 3);
    CHECK(counts[0].total == 10);
    CHECK(counts[1].total == 40);
    CHECK(counts[2].total == 150);
    std::set<std::string> first_wave, first_given(ids.begin(), ids.begin() + 10);
    for (const auto& e : store->job_entries(id))
      if (e.wave == 1) first_wave.insert(e.host_id);
    CHECK(first_wave.size() == 10);
    CHECK(first_wave != first_given);  // not the registration order (odds of a fluke: 1 in 2e16)
  }

  SECTION("stopping a rollout cancels the held entries") {
    const auto ids = register_agents(*store, 10);
    auto job = app_job({});
    job.rollout.waves = {20, 60, 100};
    const auto id = store->create_job(job, ids).job.id;
    const std::string reason = "error threshold exceeded: 2 of 2 released entries failed (limit 10 %)";
    store->stop_rollout(id, reason);
    for (const auto& e : store->job_entries(id)) {
      INFO("wave " << e.wave);
      if (e.wave == 1) {
        CHECK(e.state == EntryState::waiting);  // released entries run on
      } else {
        CHECK(e.state == EntryState::cancelled);
        CHECK_THAT(e.message, Catch::StartsWith("rollout stopped: "));
        CHECK_THAT(e.message, Catch::Contains(reason));
      }
    }
    auto found = store->find_job(id);
    CHECK(found->rollout_state == RolloutState::stopped);
    CHECK(found->rollout_message == reason);
    CHECK(store->running_rollouts().empty());
  }
}

TEST_CASE("store conformance: expiry and start times", "[store]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  store->upsert_host(host(kA, "web1"));
  store->upsert_host(host(kB, "web2"));
  store->insert_package(manifest("app", "1.0"));
  const auto now = now_unix();

  // Validation is the manager's; the store takes an expiry already past.
  auto expiring = app_job({"web1", "web2"});
  expiring.schedule.expires_at = now - 60;
  const auto expired_id = store->create_job(expiring, {kA, kB}).job.id;
  // web2's entry is installing: an install under way is never expired.
  const auto b_entry = entry_of(*store, expired_id, kB).id;
  EntryReport r{b_entry, 1, 1, EntryState::transferring, {}, "", ""};
  REQUIRE(store->apply_report(kB, r).kind == ReportOutcome::Kind::applied);
  r.seq = 2;
  r.state = EntryState::transferred;
  REQUIRE(store->apply_report(kB, r).kind == ReportOutcome::Kind::applied);
  r.seq = 3;
  r.state = EntryState::installing;
  REQUIRE(store->apply_report(kB, r).kind == ReportOutcome::Kind::applied);

  auto later = app_job({"web1"});
  later.schedule.start_at = now + 3600;
  const auto later_created = store->create_job(later, {kA});
  CHECK(later_created.vias.empty());  // nothing to deliver yet
  const auto waiting = entry_of(*store, later_created.job.id, kA);
  CHECK(waiting.ready_at == now + 3600);
  CHECK(store->vias_ready_between(now + 3599, now + 3600) == std::vector<std::string>{kA});
  CHECK(store->vias_ready_between(now, now + 3599).empty());
  CHECK(store->vias_ready_between(now + 3600, now + 7200).empty());  // (after, upto]

  CHECK(store->expire_entries(now, now + 60).empty());  // no expiry in that span
  CHECK(store->expire_entries(0, now) == std::vector<std::string>{kA});
  const auto expired = entry_of(*store, expired_id, kA);
  CHECK(expired.state == EntryState::expired);
  CHECK_THAT(expired.message, Catch::Contains("expired"));
  CHECK(entry_of(*store, expired_id, kB).state == EntryState::installing);
  CHECK(entry_of(*store, later_created.job.id, kA).state == EntryState::waiting);  // no expiry set
  CHECK(store->expire_entries(0, now).empty());                                    // nothing left to expire
  auto open = store->open_entries_for_host(kA);
  REQUIRE(open.size() == 1);
  CHECK(open[0].job_id == later_created.job.id);
}

TEST_CASE("store conformance: automatic and operator retries", "[store]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  store->upsert_host(host(kA, "web1"));
  store->upsert_host(host(kB, "web2"));
  store->insert_package(manifest("app", "1.0"));

  SECTION("a transfer failure is retried with backoff until the retries are used up") {
    auto job = app_job({"web1"});
    job.schedule.max_retries = 1;
    job.schedule.retry_backoff_seconds = 30;
    const auto id = store->create_job(job, {kA}).job.id;
    const auto entry = entry_of(*store, id, kA).id;
    const auto before = now_unix();
    EntryReport r{entry, 1, 1, EntryState::transferring, {}, "", ""};
    REQUIRE(store->apply_report(kA, r).kind == ReportOutcome::Kind::applied);
    r.seq = 2;
    r.state = EntryState::failed;
    r.message = "connection reset";
    auto out = store->apply_report(kA, r);
    CHECK(out.kind == ReportOutcome::Kind::applied);
    CHECK(out.retried);
    CHECK(out.current == EntryState::waiting);
    CHECK(out.retry_at >= before + 30);
    auto e = entry_of(*store, id, kA);
    CHECK(e.state == EntryState::waiting);
    CHECK(e.attempt == 2);
    CHECK(e.ready_at == out.retry_at);
    CHECK(e.ready_at > now_unix());
    CHECK_THAT(e.message, Catch::Contains("attempt 1 failed (connection reset)"));
    CHECK(store->open_entries_for_host(kA).size() == 1);

    // A late report of the first attempt changes nothing.
    r.seq = 3;
    r.state = EntryState::transferring;
    CHECK(store->apply_report(kA, r).kind == ReportOutcome::Kind::duplicate);

    // The second attempt fails too: that is final.
    r.attempt = 2;
    r.seq = 4;
    REQUIRE(store->apply_report(kA, r).kind == ReportOutcome::Kind::applied);
    r.seq = 5;
    r.state = EntryState::failed;
    out = store->apply_report(kA, r);
    CHECK(out.kind == ReportOutcome::Kind::applied);
    CHECK_FALSE(out.retried);
    CHECK(out.current == EntryState::failed);
    e = entry_of(*store, id, kA);
    CHECK(e.state == EntryState::failed);
    CHECK(e.attempt == 2);
    CHECK(store->open_entries_for_host(kA).empty());
  }

  SECTION("an install failure is retried only when the job asks") {
    auto fail_install = [&](std::int64_t job_id, std::int64_t first_seq) {
      const auto entry = entry_of(*store, job_id, kA).id;
      EntryReport r{entry, 1, first_seq, EntryState::transferring, {}, "", ""};
      for (auto s : {EntryState::transferring, EntryState::transferred, EntryState::installing}) {
        r.state = s;
        REQUIRE(store->apply_report(kA, r).kind == ReportOutcome::Kind::applied);
        ++r.seq;
      }
      r.state = EntryState::failed;
      r.exit_code = 1;
      return store->apply_report(kA, r);
    };
    auto job = app_job({"web1"});
    job.schedule.max_retries = 3;
    const auto plain = store->create_job(job, {kA}).job.id;
    auto out = fail_install(plain, 1);
    CHECK(out.kind == ReportOutcome::Kind::applied);
    CHECK_FALSE(out.retried);
    CHECK(entry_of(*store, plain, kA).state == EntryState::failed);
    CHECK(entry_of(*store, plain, kA).exit_code == 1);

    job.schedule.retry_installs = true;
    const auto retrying = store->create_job(job, {kA}).job.id;
    CHECK(store->find_job(retrying)->schedule.retry_installs);
    out = fail_install(retrying, 10);
    CHECK(out.kind == ReportOutcome::Kind::applied);
    CHECK(out.retried);
    const auto e = entry_of(*store, retrying, kA);
    CHECK(e.state == EntryState::waiting);
    CHECK(e.attempt == 2);
    CHECK(e.ready_at > now_unix());
  }

  SECTION("an operator's retry puts failed entries back to waiting") {
    const auto id = store->create_job(app_job({"web1", "web2"}), {kA, kB}).job.id;
    EntryReport r{entry_of(*store, id, kA).id, 1, 1, EntryState::failed, 2, "no space", ""};
    REQUIRE(store->apply_report(kA, r).kind == ReportOutcome::Kind::applied);  // no retries set
    EntryReport ok{entry_of(*store, id, kB).id, 1, 1, EntryState::succeeded, 0, "", ""};
    REQUIRE(store->apply_report(kB, ok).kind == ReportOutcome::Kind::applied);
    CHECK(entry_of(*store, id, kA).state == EntryState::failed);

    const auto before = now_unix();
    auto [count, vias] = store->retry_failed(id);
    CHECK(count == 1);
    CHECK(vias == std::vector<std::string>{kA});
    const auto e = entry_of(*store, id, kA);
    CHECK(e.state == EntryState::waiting);
    CHECK(e.attempt == 2);
    CHECK(e.ready_at >= before);
    CHECK(e.ready_at <= now_unix());
    CHECK_FALSE(e.exit_code);
    CHECK(e.message == "retry requested by operator");
    CHECK(entry_of(*store, id, kB).state == EntryState::succeeded);
    CHECK(store->retry_failed(id).first == 0);
    CHECK(error_kind([&] { store->retry_failed(id + 100); }) == ErrorKind::not_found);

    // The new attempt is reported under its number.
    r.attempt = 2;
    r.seq = 2;
    r.state = EntryState::transferring;
    CHECK(store->apply_report(kA, r).kind == ReportOutcome::Kind::applied);
  }
}

TEST_CASE("store conformance: inventory", "[store]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  store->upsert_host(host(kA, "web1"));
  store->upsert_host(host(kB, "web2"));

  InventoryReport r;
  r.host_id = kA;
  r.items = {{"system.os.version", "12"}, {"system.disk./.free_bytes", "100"}, {"software.dpkg.bash", "5.2"}};
  auto first = store->ingest_inventory(r, 1000);
  CHECK(first.first);
  CHECK(first.changes.empty());
  CHECK(first.items == 3);

  // Only a volatile value moved: stored, not recorded.
  r.items["system.disk./.free_bytes"] = "90";
  auto same = store->ingest_inventory(r, 1010);
  CHECK(same.unchanged);
  CHECK_FALSE(same.first);
  auto inv = store->find_inventory(kA);
  REQUIRE(inv);
  CHECK(inv->items.at("system.disk./.free_bytes") == "90");
  CHECK(inv->reported_at == 1010);

  // A software report replaces software items only.
  InventoryReport sw;
  sw.host_id = kA;
  sw.scope = InventoryScope::software;
  sw.items = {{"software.dpkg.bash", "5.3"}, {"software.distrib.demo", "1.0"}};
  auto changed = store->ingest_inventory(sw, 1020);
  CHECK_FALSE(changed.unchanged);
  REQUIRE(changed.changes.size() == 2);
  inv = store->find_inventory(kA);
  CHECK(inv->items.at("system.os.version") == "12");
  CHECK(inv->items.at("software.dpkg.bash") == "5.3");
  CHECK(inv->items.size() == 4);

  const auto history = store->inventory_history(kA, 10);
  REQUIRE(history.size() == 3);  // newest first: the two changes, then the first report
  CHECK(history.back().key == "*");
  CHECK(history.front().at == 1020);
  bool saw_bash = false;
  for (const auto& c : history)
    if (c.key == "software.dpkg.bash") {
      saw_bash = true;
      CHECK(c.kind == InventoryChange::Kind::changed);
      CHECK(c.old_value == "5.2");
      CHECK(c.new_value == "5.3");
    }
  CHECK(saw_bash);

  InventoryReport other;
  other.host_id = kB;
  other.items = {{"software.dpkg.bash", "5.1"}, {"system.disk./data.free_bytes", "7"}};
  store->ingest_inventory(other, 1030);
  CHECK(store->inventory_values("software.dpkg.bash", false).size() == 2);
  const auto disks = store->inventory_values("system.disk.", true);
  CHECK(disks.size() == 2);
  CHECK(store->inventoried_hosts().size() == 2);
  CHECK_FALSE(store->find_inventory(kC));

  // Matching by key: each stored value judged by the predicates, hosts told apart by their items.
  {
    int asked = 0;
    auto m = store->match_inventory(
        "software.dpkg.bash", false, [](std::string_view) { return true; },
        [&](std::string_view, std::string_view v) {
          ++asked;
          return v == "5.3";
        });
    CHECK(m.having.size() == 2);
    CHECK(m.accepted == std::vector<std::string>{kA});
    CHECK(asked <= 3);  // three distinct values stored (5.2 stays in the catalogue), whatever the hosts
    m = store->match_inventory(
        "system.disk.", true, [](std::string_view k) { return k.ends_with(".free_bytes"); },
        [](std::string_view, std::string_view v) { return v == "7"; });
    CHECK(m.having.size() == 2);
    CHECK(m.accepted == std::vector<std::string>{kB});
    m = store->match_inventory(
        "software.dpkg.zsh", false, [](std::string_view) { return true; },
        [](std::string_view, std::string_view) { return true; });
    CHECK(m.having.empty());
  }

  // The digest handshake: stable items left out, their digests named.
  {
    auto inv_b = store->find_inventory(kB);
    REQUIRE(inv_b);
    InventoryReport digest_only;
    digest_only.host_id = kB;
    digest_only.stable_elided = true;
    digest_only.system_digest = inventory_digest(inv_b->items, InventoryScope::system);
    digest_only.software_digest = inventory_digest(inv_b->items, InventoryScope::software);
    digest_only.items = {{"system.disk./data.free_bytes", "6"}};
    auto res = store->ingest_inventory(digest_only, 1035);
    CHECK(res.unchanged);
    CHECK_FALSE(res.digest_unknown);
    CHECK(res.system_digest == digest_only.system_digest);
    inv_b = store->find_inventory(kB);
    CHECK(inv_b->items.at("system.disk./data.free_bytes") == "6");
    CHECK(inv_b->items.at("software.dpkg.bash") == "5.1");
    CHECK(inv_b->reported_at == 1035);
    // Digests of items the store does not hold: nothing stored, the full report asked for.
    digest_only.software_digest = std::string(64, 'e');
    digest_only.items = {{"system.disk./data.free_bytes", "1"}};
    res = store->ingest_inventory(digest_only, 1036);
    CHECK(res.digest_unknown);
    CHECK(store->find_inventory(kB)->items.at("system.disk./data.free_bytes") == "6");
    CHECK(store->find_inventory(kB)->reported_at == 1035);
  }

  // Pairs are interned: a third host with the same items adds nothing to the catalogue.
  {
    auto catalogue_rows = [&] {
      for (const auto& t : store->summarize().tables)
        if (t.name == "inventory_catalogue") return t.rows;
      return std::int64_t{-1};
    };
    const auto before = catalogue_rows();
    CHECK(before >= 4);
    const std::string kD = "55555555-5555-4555-8555-555555555555";
    store->upsert_host(host(kD, "web4"));
    InventoryReport same_as_b;
    same_as_b.host_id = kD;
    same_as_b.items = {{"software.dpkg.bash", "5.1"}, {"system.disk./data.free_bytes", "3"}};
    CHECK(store->ingest_inventory(same_as_b, 1037).first);
    CHECK(catalogue_rows() == before);
    CHECK(store->find_inventory(kD)->items ==
          InventoryItems{{"software.dpkg.bash", "5.1"}, {"system.disk./data.free_bytes", "3"}});
    CHECK(store->inventory_values("software.dpkg.bash", false).size() == 3);
  }

  // A host that never registered is refused, and nothing is written for it.
  InventoryReport stranger;
  stranger.host_id = kC;
  stranger.items = {{"system.os.version", "1"}};
  CHECK(error_kind([&] { store->ingest_inventory(stranger, 1040); }) == ErrorKind::not_found);
  CHECK(store->inventory_values("system.os.version", false).size() == 1);

  // Field definitions and collected files.
  store->put_inventory_field({"site", InventoryFieldType::choice, {"tokyo", "osaka"}, "where"});
  store->put_inventory_field({"site", InventoryFieldType::choice, {"tokyo"}, "replaced"});
  const auto fields = store->list_inventory_fields();
  REQUIRE(fields.size() == 1);
  CHECK(fields[0].allowed == std::vector<std::string>{"tokyo"});
  CHECK(store->delete_inventory_field("site"));
  CHECK_FALSE(store->delete_inventory_field("site"));

  CollectedFile f;
  f.job_id = 7;
  f.host_id = kA;
  f.path = "/var/log/a.log";
  f.size = 5;
  f.sha256 = std::string(64, 'a');
  store->record_collected_file(f);
  f.size = 6;
  store->record_collected_file(f);  // the same file again replaces it
  const auto files = store->collected_files(7);
  REQUIRE(files.size() == 1);
  CHECK(files[0].size == 6);
  CHECK(files[0].host_name == "web1");
  CHECK(store->collected_files(8).empty());
}

// --- enrolment with approval: requests, decisions and tokens as the tests make them
namespace {
// A fingerprint of key `key` (one character stands for a key).
std::string fingerprint_of(char key) {
  return "sha256:" + std::string(64, key);
}

// A certificate request of host `id` with key `key`, made at `at`.
Enrolment enrolment_request(const std::string& id, const std::string& name, char key, std::int64_t at) {
  Enrolment e;
  e.host_id = id;
  e.name = name;
  e.role = "agent";
  e.address = "10.0.0.1";
  e.fingerprint = fingerprint_of(key);
  e.request_pem = "-----BEGIN CERTIFICATE REQUEST-----\n" + std::string(40, key) +
                  "\n-----END CERTIFICATE REQUEST-----\n";
  e.requested_at = at;
  return e;
}

// The decision `state` on `request`: accepted ones carry a certificate with `serial`.
Enrolment decision(const Enrolment& request, EnrolmentState state, std::uint64_t serial, std::int64_t at,
                   const std::string& by, const std::string& token_id = "") {
  Enrolment d = request;
  d.state = state;
  d.certificate_pem =
      "-----BEGIN CERTIFICATE-----\n" + std::to_string(serial) + "\n-----END CERTIFICATE-----\n";
  d.serial = serial;
  d.not_after = at + 86400;
  d.decided_at = at;
  d.decided_by = by;
  d.token_id = token_id;
  return d;
}

std::vector<std::string> enrolled_ids(const std::vector<Enrolment>& v) {
  std::vector<std::string> out;
  for (const auto& e : v) out.push_back(e.host_id);
  return out;
}

EnrolToken enrol_token(const std::string& id, char secret, int uses, std::int64_t expires_at = 0) {
  EnrolToken t;
  t.id = id;
  t.secret_hash = std::string(64, secret);
  t.created_at = 100;
  t.expires_at = expires_at;
  t.uses_left = uses;
  t.group = "web";
  t.created_by = "admin";
  return t;
}
}  // namespace

// --- dialects, the schema model, connection strings and whole-database moves
namespace {
using distrib::store::Dialect;

std::string upper_case(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// The words of a statement that are neither in a string literal nor a quoted identifier.
std::vector<std::string> bare_words(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '\'' || c == '"') {
      const auto end = s.find(c, i + 1);
      i = end == std::string::npos ? s.size() : end + 1;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      std::size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back(s.substr(i, j - i));
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

bool has_lower(const std::string& w) {
  return std::any_of(w.begin(), w.end(),
                     [](char c) { return std::islower(static_cast<unsigned char>(c)) != 0; });
}

// Every migration statement rendered with `d`, in order, with the shared statement it came from.
struct Rendered {
  int version;
  std::string shared;
  std::string sql;
};
std::vector<Rendered> render_all(const Dialect& d) {
  std::vector<Rendered> out;
  for (const auto& m : distrib::store::migrations())
    for (const auto& st : m.statements)
      for (auto& r : distrib::store::render(st, d)) out.push_back({m.version, st, std::move(r)});
  return out;
}

// The rendering of the one shared statement starting with `prefix`.
std::vector<std::string> render_of(const std::string& prefix, const Dialect& d) {
  for (const auto& m : distrib::store::migrations())
    for (const auto& st : m.statements)
      if (st.rfind(prefix, 0) == 0) return distrib::store::render(st, d);
  return {};
}

const std::vector<const Dialect*>& all_dialects() {
  static const std::vector<const Dialect*> d = {
      &distrib::store::sqlite_dialect(), &distrib::store::postgresql_dialect(),
      &distrib::store::sqlserver_dialect(), &distrib::store::oracle_dialect()};
  return d;
}

// The message of the distrib::Error `fn` throws ("<no Error>" when it throws none).
template <class Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no Error>";
}

std::string replace_first(std::string s, const std::string& from, const std::string& to) {
  const auto pos = s.find(from);
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

std::size_t occurrences(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + what.size())) ++n;
  return n;
}

void check_same_summary(const DataSummary& got, const DataSummary& want) {
  CHECK(got.schema_version == want.schema_version);
  REQUIRE(got.tables.size() == want.tables.size());
  for (std::size_t i = 0; i < want.tables.size(); ++i) {
    INFO("table " << want.tables[i].name);
    CHECK(got.tables[i].name == want.tables[i].name);
    CHECK(got.tables[i].rows == want.tables[i].rows);
    CHECK(got.tables[i].checksum == want.tables[i].checksum);
  }
}

void check_empty(Store& store) {
  const auto s = store.summarize();
  CHECK(s.tables.size() == distrib::store::schema_tables().size());
  for (const auto& t : s.tables) {
    INFO("table " << t.name);
    CHECK(t.rows == 0);
  }
}
}  // namespace

TEST_CASE("dialects: SQL Server and Oracle DDL from the shared migrations", "[store][dialect]") {
  const auto identifiers = distrib::store::schema_identifiers();
  REQUIRE_FALSE(identifiers.empty());
  for (const Dialect* d : all_dialects()) {
    INFO("dialect " << d->name);
    for (const auto& id : identifiers) {
      INFO("identifier " << id);
      CHECK(id.size() <= d->max_identifier);
      // No identifier of the schema as it stands needs quoting anywhere.
      CHECK(std::find(d->reserved.begin(), d->reserved.end(), upper_case(id)) == d->reserved.end());
    }
    const auto all = render_all(*d);
    for (const auto& r : all) {
      INFO("v" << r.version << ": " << r.sql);
      for (const auto& w : bare_words(r.sql)) {
        if (!has_lower(w)) continue;  // keywords and types are upper case, identifiers lower
        INFO("word " << w);
        CHECK(std::find(d->reserved.begin(), d->reserved.end(), upper_case(w)) == d->reserved.end());
        CHECK(w.size() <= d->max_identifier);
      }
      if (r.shared.rfind("DROP INDEX ", 0) == 0) {
        if (d->name == "sqlserver") {
          CHECK(r.sql == "DROP INDEX job_entries_job ON job_entries");
        } else {
          CHECK(r.sql == "DROP INDEX job_entries_job");
          CHECK(r.sql.find(" ON ") == std::string::npos);
        }
      }
      CHECK(r.sql.find("${") == std::string::npos);  // every placeholder substituted
      if (d->name != "oracle") CHECK(r.sql.rfind("CREATE SEQUENCE", 0) != 0);
    }
  }

  SECTION("oracle") {
    const auto& d = distrib::store::oracle_dialect();
    const auto all = render_all(d);
    std::vector<std::string> sqls;
    for (const auto& r : all) {
      INFO("v" << r.version << ": " << r.sql);
      sqls.push_back(r.sql);
      CHECK(r.sql.find("BIGINT") == std::string::npos);
      CHECK(r.sql.find("INTEGER") == std::string::npos);
      CHECK(r.sql.find("VARCHAR(") == std::string::npos);
      CHECK(r.sql.find("TEXT") == std::string::npos);
      CHECK(r.sql.find("DEFAULT '' NOT NULL") == std::string::npos);
      // "size" is reserved: it only ever appears quoted, in the v5 table and the v6 rename.
      const auto bare = bare_words(r.sql);
      CHECK(std::find(bare.begin(), bare.end(), "size") == bare.end());
      if (r.sql.find("\"SIZE\"") != std::string::npos) {
        CHECK(r.version >= 5);
        CHECK(r.shared.find("collected_files") != std::string::npos);
      }
    }
    // Identity tables: their sequence first, then the table that draws from it.
    for (const auto& t : distrib::store::schema_tables()) {
      if (t.identity.empty()) continue;
      INFO("table " << t.name);
      const auto seq = std::find(sqls.begin(), sqls.end(), "CREATE SEQUENCE " + t.name + "_seq");
      const auto table = std::find_if(sqls.begin(), sqls.end(), [&](const std::string& s) {
        return s.rfind("CREATE TABLE " + t.name + " (", 0) == 0;
      });
      REQUIRE(seq != sqls.end());
      REQUIRE(table != sqls.end());
      CHECK(seq + 1 == table);
      CHECK(table->find(t.identity + " NUMBER(19) DEFAULT " + t.name + "_seq.NEXTVAL PRIMARY KEY") !=
            std::string::npos);
    }
    // One sequence per identity table, and no other.
    const auto identity_tables =
        std::count_if(distrib::store::schema_tables().begin(), distrib::store::schema_tables().end(),
                      [](const auto& t) { return !t.identity.empty(); });
    CHECK(identity_tables ==
          6);  // jobs, job_entries, inventory_history, cluster_takeovers, events, audit_log
    CHECK(std::count_if(sqls.begin(), sqls.end(), [](const std::string& s) {
            return s.rfind("CREATE SEQUENCE", 0) == 0;
          }) == identity_tables);

    CHECK(render_of("CREATE TABLE inventory_fields", d) ==
          std::vector<std::string>{
              "CREATE TABLE inventory_fields (name VARCHAR2(64) PRIMARY KEY, field_type VARCHAR2(16) "
              "NOT NULL, allowed CLOB NOT NULL, description CLOB)"});
    CHECK(render_of("CREATE TABLE collected_files", d) ==
          std::vector<std::string>{
              "CREATE TABLE collected_files (job_id NUMBER(19) NOT NULL, host_id VARCHAR2(36) NOT "
              "NULL, path VARCHAR2(1024) NOT NULL, \"SIZE\" NUMBER(19) NOT NULL, sha256 "
              "VARCHAR2(64) NOT NULL, stored_at NUMBER(19) NOT NULL, PRIMARY KEY (job_id, "
              "host_id, path))"});
    CHECK(render_of("ALTER TABLE collected_files RENAME", d) ==
          std::vector<std::string>{"ALTER TABLE collected_files RENAME COLUMN \"SIZE\" TO byte_size"});
    CHECK(render_of("CREATE TABLE jobs", d) ==
          std::vector<std::string>{
              "CREATE SEQUENCE jobs_seq",
              "CREATE TABLE jobs (id NUMBER(19) DEFAULT jobs_seq.NEXTVAL PRIMARY KEY, type "
              "VARCHAR2(32) NOT NULL, package_name VARCHAR2(128) NOT NULL, package_version "
              "VARCHAR2(64) NOT NULL, destinations CLOB NOT NULL, key_mode VARCHAR2(16) NOT NULL, "
              "created_by VARCHAR2(255), created_at NUMBER(19) NOT NULL, cancel_requested "
              "NUMBER(10) NOT NULL)"});
    CHECK(render_of("ALTER TABLE hosts ADD via", d) ==
          std::vector<std::string>{"ALTER TABLE hosts ADD via VARCHAR2(36) DEFAULT ''"});
    CHECK(render_of("ALTER TABLE jobs ADD timing", d) ==
          std::vector<std::string>{"ALTER TABLE jobs ADD timing VARCHAR2(16) DEFAULT 'immediate' NOT NULL"});
    CHECK(render_of("CREATE TABLE packages", d).at(0).find("payload_digest CHAR(64) NOT NULL") !=
          std::string::npos);
  }

  SECTION("sql server") {
    const auto& d = distrib::store::sqlserver_dialect();
    for (const auto& r : render_all(d)) {
      INFO("v" << r.version << ": " << r.sql);
      // Every character type is the Unicode one, text is NVARCHAR(MAX).
      for (auto pos = r.sql.find("VARCHAR"); pos != std::string::npos; pos = r.sql.find("VARCHAR", pos + 1)) {
        REQUIRE(pos > 0);
        CHECK(r.sql[pos - 1] == 'N');
      }
      for (auto pos = r.sql.find("CHAR("); pos != std::string::npos; pos = r.sql.find("CHAR(", pos + 1)) {
        REQUIRE(pos > 0);
        CHECK(r.sql[pos - 1] != ' ');
      }
      CHECK(r.sql.find("TEXT") == std::string::npos);
      CHECK(r.sql.find("AUTOINCREMENT") == std::string::npos);
      CHECK(r.sql.find("GENERATED") == std::string::npos);
    }
    CHECK(render_of("CREATE TABLE inventory_fields", d) ==
          std::vector<std::string>{
              "CREATE TABLE inventory_fields (name NVARCHAR(64) PRIMARY KEY, field_type "
              "NVARCHAR(16) NOT NULL, allowed NVARCHAR(MAX) NOT NULL, description NVARCHAR(MAX))"});
    CHECK(render_of("CREATE TABLE job_entries", d) ==
          std::vector<std::string>{
              "CREATE TABLE job_entries (id BIGINT IDENTITY(1,1) PRIMARY KEY, job_id BIGINT NOT "
              "NULL REFERENCES jobs (id), host_id NVARCHAR(36) NOT NULL, state NVARCHAR(16) NOT "
              "NULL, attempt INTEGER NOT NULL, last_seq BIGINT NOT NULL, exit_code INTEGER, "
              "message NVARCHAR(MAX), output_tail NVARCHAR(MAX), updated_at BIGINT NOT NULL)"});
    const auto jobs = render_of("CREATE TABLE jobs", d);
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0].rfind("CREATE TABLE jobs (id BIGINT IDENTITY(1,1) PRIMARY KEY, ", 0) == 0);
    CHECK(render_of("CREATE TABLE packages", d).at(0).find("payload_digest NCHAR(64) NOT NULL") !=
          std::string::npos);
    CHECK(render_of("DROP INDEX", d) ==
          std::vector<std::string>{"DROP INDEX job_entries_job ON job_entries"});
    CHECK(render_of("ALTER TABLE collected_files RENAME", d) ==
          std::vector<std::string>{"EXEC sp_rename 'collected_files.size', 'byte_size', 'COLUMN'"});
    CHECK(render_of("ALTER TABLE hosts ADD via", d) ==
          std::vector<std::string>{"ALTER TABLE hosts ADD via NVARCHAR(36) DEFAULT '' NOT NULL"});
  }

  SECTION("sqlite and postgresql") {
    for (const Dialect* d : {&distrib::store::sqlite_dialect(), &distrib::store::postgresql_dialect()}) {
      INFO("dialect " << d->name);
      CHECK(render_of("DROP INDEX", *d) == std::vector<std::string>{"DROP INDEX job_entries_job"});
      CHECK(render_of("ALTER TABLE collected_files RENAME", *d) ==
            std::vector<std::string>{"ALTER TABLE collected_files RENAME COLUMN size TO byte_size"});
      CHECK(
          render_of("CREATE TABLE inventory_fields", *d) ==
          std::vector<std::string>{"CREATE TABLE inventory_fields (name VARCHAR(64) PRIMARY KEY, field_type "
                                   "VARCHAR(16) NOT NULL, allowed TEXT NOT NULL, description TEXT)"});
      CHECK(render_of("CREATE TABLE jobs", *d).size() == 1);
    }
    CHECK(render_of("CREATE TABLE jobs", distrib::store::sqlite_dialect())
              .at(0)
              .rfind("CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, ", 0) == 0);
    CHECK(render_of("CREATE TABLE jobs", distrib::store::postgresql_dialect())
              .at(0)
              .rfind("CREATE TABLE jobs (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ", 0) == 0);
  }
}

TEST_CASE("dialects: paging, upsert and identity", "[store][dialect]") {
  const auto& lite = distrib::store::sqlite_dialect();
  const auto& pg = distrib::store::postgresql_dialect();
  const auto& ms = distrib::store::sqlserver_dialect();
  const auto& ora = distrib::store::oracle_dialect();

  CHECK(lite.limit(10) == " LIMIT 10");
  CHECK(pg.limit(10) == " LIMIT 10");
  CHECK(ms.limit(10) == " OFFSET 0 ROWS FETCH NEXT 10 ROWS ONLY");
  CHECK(ora.limit(10) == " FETCH FIRST 10 ROWS ONLY");

  const std::string on_conflict =
      "INSERT INTO inventory_fields (name, field_type, allowed) VALUES (:name, :field_type, :allowed) ON "
      "CONFLICT "
      "(name) DO UPDATE SET field_type = excluded.field_type, allowed = excluded.allowed";
  CHECK(lite.upsert("inventory_fields", {"name"}, {"field_type", "allowed"}) == on_conflict);
  CHECK(pg.upsert("inventory_fields", {"name"}, {"field_type", "allowed"}) == on_conflict);
  CHECK(ms.upsert("inventory_fields", {"name"}, {"field_type", "allowed"}) ==
        "MERGE INTO inventory_fields WITH (HOLDLOCK) AS d USING (SELECT :name AS name, :field_type AS "
        "field_type, "
        ":allowed AS allowed) AS s ON (d.name = s.name) WHEN MATCHED THEN UPDATE SET d.field_type = "
        "s.field_type, "
        "d.allowed = s.allowed WHEN NOT MATCHED THEN INSERT (name, field_type, allowed) VALUES (s.name, "
        "s.field_type, s.allowed);");
  CHECK(ora.upsert("inventory_fields", {"name"}, {"field_type", "allowed"}) ==
        "MERGE INTO inventory_fields d USING (SELECT :name AS name, :field_type AS field_type, :allowed AS "
        "allowed "
        "FROM dual) s ON (d.name = s.name) WHEN MATCHED THEN UPDATE SET d.field_type = s.field_type, "
        "d.allowed = "
        "s.allowed WHEN NOT MATCHED THEN INSERT (name, field_type, allowed) VALUES (s.name, s.field_type, "
        "s.allowed)");

  // Keys only: insert when absent, else nothing.
  CHECK(lite.upsert("host_group_members", {"group_name", "host_id"}, {}) ==
        "INSERT INTO host_group_members (group_name, host_id) VALUES (:group_name, :host_id) ON CONFLICT "
        "(group_name, host_id) DO NOTHING");
  CHECK(
      ms.upsert("host_group_members", {"group_name", "host_id"}, {}) ==
      "MERGE INTO host_group_members WITH (HOLDLOCK) AS d USING (SELECT :group_name AS group_name, :host_id "
      "AS "
      "host_id) AS s ON (d.group_name = s.group_name AND d.host_id = s.host_id) WHEN NOT MATCHED THEN INSERT "
      "(group_name, host_id) VALUES (s.group_name, s.host_id);");
  CHECK(ora.upsert("host_group_members", {"group_name", "host_id"}, {}).find("WHEN MATCHED") ==
        std::string::npos);

  CHECK(lite.last_id_query("jobs") == "SELECT last_insert_rowid()");
  CHECK(pg.last_id_query("jobs") == "SELECT currval(pg_get_serial_sequence('jobs', 'id'))");
  CHECK(ms.last_id_query("jobs") == "SELECT CAST(@@IDENTITY AS BIGINT)");
  CHECK(ora.last_id_query("jobs") == "SELECT jobs_seq.CURRVAL FROM dual");

  CHECK(lite.reset_identity("jobs", "id").empty());
  const auto pg_reset = pg.reset_identity("jobs", "id");
  REQUIRE(pg_reset.size() == 1);
  CHECK_THAT(pg_reset[0], Catch::Contains("setval"));
  CHECK_THAT(pg_reset[0], Catch::Contains("pg_get_serial_sequence('jobs', 'id')"));
  CHECK_THAT(pg_reset[0], Catch::Contains("MAX(id) FROM jobs"));
  CHECK(ms.reset_identity("jobs", "id").empty());  // IDENTITY_INSERT keeps the identity past them
  CHECK(ms.explicit_ids_on == "SET IDENTITY_INSERT %T ON");
  const auto ora_reset = ora.reset_identity("jobs", "id");
  REQUIRE(ora_reset.size() == 1);
  CHECK_THAT(ora_reset[0], Catch::Contains("ALTER SEQUENCE jobs_seq RESTART START WITH"));
  CHECK_THAT(ora_reset[0], Catch::Contains("MAX(id), 0) + 1 INTO n FROM jobs"));

  CHECK(ora.sequence_name("jobs") == "jobs_seq");
  CHECK(distrib::store::find_dialect("mysql") == nullptr);
  CHECK(distrib::store::find_dialect("") == nullptr);
  CHECK(distrib::store::find_dialect("oracle") == &ora);
  CHECK(distrib::store::find_dialect("sqlserver") == &ms);
  CHECK(distrib::store::find_dialect("postgresql") == &pg);
  CHECK(distrib::store::find_dialect("sqlite") == &lite);
  CHECK(distrib::store::dialect_names() == "sqlite, postgresql, sqlserver, oracle");
}

TEST_CASE("schema model follows the migrations", "[store][dialect]") {
  const auto& tables = distrib::store::schema_tables();
  auto index_of = [&](const std::string& name) {
    const auto it = std::find_if(tables.begin(), tables.end(),
                                 [&](const distrib::store::TableDef& t) { return t.name == name; });
    return it == tables.end() ? tables.size() : static_cast<std::size_t>(it - tables.begin());
  };
  auto table = [&](const std::string& name) -> const distrib::store::TableDef& {
    const auto i = index_of(name);
    if (i == tables.size()) FAIL("no table " << name);
    return tables[i];
  };
  auto column_names = [](const distrib::store::TableDef& t) {
    std::vector<std::string> out;
    for (const auto& c : t.columns) out.push_back(c.name);
    return out;
  };
  for (const std::string name :
       {"hosts", "packages", "jobs", "job_entries", "collected_files", "inventory_items", "inventory_history",
        "host_groups", "id_groups", "enrolments", "revoked_certificates", "enrol_tokens"}) {
    INFO("table " << name);
    CHECK(index_of(name) < tables.size());
  }
  CHECK(index_of("jobs") < index_of("job_entries"));

  const auto files = column_names(table("collected_files"));
  CHECK(std::find(files.begin(), files.end(), "byte_size") != files.end());
  CHECK(std::find(files.begin(), files.end(), "size") == files.end());
  CHECK(table("collected_files").primary_key == std::vector<std::string>{"job_id", "host_id", "path"});

  CHECK(table("jobs").identity == "id");
  CHECK(table("job_entries").identity == "id");
  CHECK(table("inventory_history").identity == "id");
  CHECK(table("hosts").identity.empty());
  CHECK(table("jobs").primary_key == std::vector<std::string>{"id"});
  CHECK(table("hosts").primary_key == std::vector<std::string>{"host_id"});
  CHECK(table("packages").primary_key == std::vector<std::string>{"name", "version"});
  CHECK(table("inventory_items").primary_key == std::vector<std::string>{"host_id", "item_key"});
  CHECK(table("enrolments").primary_key == std::vector<std::string>{"host_id"});
  CHECK(table("enrol_tokens").primary_key == std::vector<std::string>{"id"});
  CHECK(table("revoked_certificates").primary_key == std::vector<std::string>{"serial"});
  CHECK(table("enrol_tokens").identity.empty());

  // Columns added by later migrations are there; integer-ness follows the declared type.
  const auto& jobs = table("jobs");
  const auto jobs_cols = column_names(jobs);
  for (const std::string c : {"upstream_id", "start_at", "rollout_message", "split_size", "params"}) {
    INFO("column " << c);
    CHECK(std::find(jobs_cols.begin(), jobs_cols.end(), c) != jobs_cols.end());
  }
  for (const auto& c : jobs.columns) {
    INFO("column " << c.name);
    if (c.name == "id" || c.name == "created_at" || c.name == "cancel_requested" || c.name == "max_retries") {
      CHECK(c.integer);
    }
    if (c.name == "type" || c.name == "destinations" || c.name == "timing" || c.name == "params") {
      CHECK_FALSE(c.integer);
    }
  }

  // The identifiers: sorted, unique, with sequences of identity tables and the indexes.
  const auto ids = distrib::store::schema_identifiers();
  CHECK(std::is_sorted(ids.begin(), ids.end()));
  CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
  for (const std::string id : {"jobs_seq", "job_entries_seq", "inventory_history_seq", "job_entries_job_host",
                               "hosts_name", "byte_size", "enrolments_state", "enrol_tokens_secret"}) {
    INFO("identifier " << id);
    CHECK(std::binary_search(ids.begin(), ids.end(), id));
  }
  CHECK_FALSE(std::binary_search(ids.begin(), ids.end(), std::string("hosts_seq")));
  CHECK_FALSE(std::binary_search(ids.begin(), ids.end(), std::string("size")));

  // What SQLite built from the migrations has exactly the model's columns.
  TempDir tmp;
  open_store("sqlite", tmp).reset();
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((tmp / "test.db").c_str(), &db) == SQLITE_OK);
  for (const auto& t : tables) {
    INFO("table " << t.name);
    sqlite3_stmt* st = nullptr;
    const std::string sql = "PRAGMA table_info(" + t.name + ")";
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::set<std::string> actual;
    while (sqlite3_step(st) == SQLITE_ROW)
      actual.insert(reinterpret_cast<const char*>(sqlite3_column_text(st, 1)));
    sqlite3_finalize(st);
    const auto names = column_names(t);
    const std::set<std::string> expected(names.begin(), names.end());
    CHECK(expected.size() == names.size());  // no column listed twice
    CHECK(actual == expected);
  }
  sqlite3_close(db);
}

TEST_CASE("connection strings name the wrong part", "[store][connection]") {
  using distrib::store::check_odbc_connection;
  using distrib::store::check_postgresql_connection;
  using distrib::store::parse_odbc_connection;

  SECTION("libpq") {
    auto typo = error_message([] { check_postgresql_connection("host=127.0.0.1 prot=5432 dbname=x", 5); });
    CHECK_THAT(typo, Catch::Contains("\"prot\""));
    CHECK_THAT(typo, Catch::Contains("did you mean port"));
    CHECK(error_kind([] { check_postgresql_connection("host=127.0.0.1 prot=5432 dbname=x", 5); }) ==
          ErrorKind::invalid_argument);
    auto bare = error_message([] { check_postgresql_connection("host=127.0.0.1 port", 5); });
    CHECK_THAT(bare, Catch::Contains("\"port\""));
    CHECK_THAT(bare, Catch::Contains("KEY=VALUE"));
    CHECK(check_postgresql_connection("host=127.0.0.1 port=5432 dbname=x", 5) ==
          "host=127.0.0.1 port=5432 dbname=x connect_timeout=5");
    CHECK(check_postgresql_connection("host=127.0.0.1 connect_timeout=2 dbname=x", 5) ==
          "host=127.0.0.1 connect_timeout=2 dbname=x");
    CHECK(check_postgresql_connection("host=h password='a b' dbname=x", 5) ==
          "host=h password='a b' dbname=x connect_timeout=5");
    // URIs become keywords (SOCI's PostgreSQL backend takes only those), percent-decoded.
    CHECK(check_postgresql_connection("postgresql://u:p%40ss@127.0.0.1:5432/x?sslmode=disable", 5) ==
          "host='127.0.0.1' port='5432' user='u' password='p@ss' dbname='x' sslmode='disable' "
          "connect_timeout=5");
    CHECK_THROWS_WITH(check_postgresql_connection("postgresql://h/x?prot=1", 5),
                      Catch::Contains("did you mean port"));
    CHECK_THAT(error_message([] { check_postgresql_connection("", 5); }), Catch::Contains("empty"));
    CHECK_THAT(error_message([] { check_postgresql_connection("host=h password='open", 5); }),
               Catch::Contains("closing quote"));
  }

  SECTION("odbc") {
    const auto parts = parse_odbc_connection("DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PWD={a;b}");
    REQUIRE(parts.size() == 3);
    CHECK(parts[0].key == "DRIVER");
    CHECK(parts[0].value == "PostgreSQL Unicode");
    CHECK(parts[1].key == "SERVER");
    CHECK(parts[1].value == "127.0.0.1");
    CHECK(parts[2].key == "PWD");
    CHECK(parts[2].value == "a;b");
    CHECK(parse_odbc_connection("DSN=x;;").size() == 1);
    CHECK_THAT(error_message([] { parse_odbc_connection("DRIVER={open;SERVER=x"); }),
               Catch::Contains("no closing }"));

    const std::vector<std::string> installed = {"PostgreSQL Unicode", "SQLite3"};
    auto missing =
        error_message([&] { check_odbc_connection("DRIVER={PostgreSQL Unicod};SERVER=x", "", installed); });
    CHECK_THAT(missing, Catch::Contains("\"PostgreSQL Unicod\""));
    CHECK_THAT(missing, Catch::Contains("did you mean PostgreSQL Unicode"));
    CHECK_THAT(missing, Catch::Contains("installed: PostgreSQL Unicode, SQLite3"));
    CHECK_THAT(error_message([] { check_odbc_connection("DRIVER={X};SERVER=x", "", {}); }),
               Catch::Contains("installed: none"));
    CHECK_THAT(error_message([&] { check_odbc_connection("SERVER=x;UID=u", "", installed); }),
               Catch::Contains("neither DRIVER"));
    auto dialect =
        error_message([&] { check_odbc_connection("DRIVER={SQLite3};Database=x", "sqlserve", installed); });
    CHECK_THAT(dialect, Catch::Contains("\"sqlserve\""));
    CHECK_THAT(dialect, Catch::Contains("did you mean sqlserver"));

    CHECK(check_odbc_connection("DRIVER={PostgreSQL Unicode};SERVER=x", "", installed) == "postgresql");
    CHECK(check_odbc_connection("driver={SQLite3};Database=x", "", installed) == "sqlite");
    CHECK(check_odbc_connection("DRIVER={ODBC Driver 18 for SQL Server};SERVER=x", "",
                                {"PostgreSQL Unicode", "ODBC Driver 18 for SQL Server"}) == "sqlserver");
    auto unknown = error_message([&] { check_odbc_connection("DSN=warehouse", "", installed); });
    CHECK_THAT(unknown, Catch::Contains("\"warehouse\""));
    CHECK_THAT(unknown, Catch::Contains("set it"));
    CHECK_THAT(unknown, Catch::Contains("database-dialect"));
    CHECK(check_odbc_connection("DSN=warehouse", "oracle", installed) == "oracle");
    CHECK(check_odbc_connection("DRIVER={PostgreSQL Unicode};SERVER=x", "postgresql", installed) ==
          "postgresql");
    // A driver given by its library path is not looked up among the installed ones.
    CHECK(check_odbc_connection("DRIVER=/usr/lib/libsqlite3odbc.so;Database=x", "", installed) == "sqlite");
  }

  CHECK(distrib::store::nearest("prot", {"host", "port"}) == "port");
  CHECK(distrib::store::nearest("zzzzzz", {"host", "port"}).empty());
}

TEST_CASE("store conformance: export and import between backends", "[store][export]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("target backend " << backend);

  // The source: an embedded database with a row in most tables.
  TempDir tmp_source;
  auto source = open_store("sqlite", tmp_source);
  const auto ids = register_agents(*source, 3);
  REQUIRE(source->insert_package(manifest("app", "1.0")));
  REQUIRE(source->insert_package(manifest("tool", "2.0", 'e')));
  const auto job = source->create_job(app_job({"pc000", "pc001", "pc002"}), ids).job;
  const auto entry0 = entry_of(*source, job.id, ids[0]).id;
  const auto entry1 = entry_of(*source, job.id, ids[1]).id;
  REQUIRE(source->apply_report(ids[0], {entry0, 1, 1, EntryState::transferring, {}, "", ""}).kind ==
          ReportOutcome::Kind::applied);
  REQUIRE(
      source
          ->apply_report(ids[1], {entry1, 1, 1, EntryState::failed, 2, "no space left", "tail \"quoted\"\n"})
          .kind == ReportOutcome::Kind::applied);
  InventoryReport inv;
  inv.host_id = ids[0];
  inv.items = {{"system.os.version", "12"},
               {"software.dpkg.bash", "5.2"},
               {"system.note", "caf\xc3\xa9 \xe6\x9d\xb1"}};
  source->ingest_inventory(inv, 1000);
  inv.items["software.dpkg.bash"] = "5.3";
  source->ingest_inventory(inv, 1010);  // a row in the history
  source->put_inventory_field({"site", InventoryFieldType::choice, {"tokyo", "osaka"}, "where"});
  CollectedFile f;
  f.job_id = job.id;
  f.host_id = ids[0];
  f.path = "/var/log/a.log";
  f.size = 5;
  f.sha256 = std::string(64, 'a');
  source->record_collected_file(f);
  HostGroup web;
  web.name = "web";
  web.description = "web servers";
  web.members = {ids[0], ids[1]};
  source->create_host_group(web);
  IdGroup g;
  g.name = "g";
  g.owner = ids[2];
  source->create_id_group(g);
  source->join_id_group("g", {ids[2]}, JoinMethod::admin);
  // Enrolments (one accepted then revoked, one pending), a revoked serial and a token.
  const auto enrolled = enrolment_request(ids[0], "pc000", 'a', 1000);
  source->request_enrolment(enrolled);
  REQUIRE(source->decide_enrolment(
      decision(enrolled, EnrolmentState::accepted, 0x8000000000000002ULL, 1100, "admin \"quoted\"")));
  REQUIRE(source->revoke_enrolment(ids[0], 1200, "admin"));
  source->request_enrolment(enrolment_request(ids[1], "pc001", 'b', 1300));
  source->create_enrol_token(enrol_token("t-export", '1', 2, 5000));

  std::stringstream exported;
  std::vector<std::string> progressed;
  const auto written =
      source->export_data(exported, [&](const std::string& t, std::int64_t) { progressed.push_back(t); });
  const auto want = source->summarize();
  check_same_summary(written, want);
  CHECK(want.schema_version == latest_schema_version());
  for (const auto& t : want.tables) {
    INFO("table " << t.name);
    if (t.name == "hosts") CHECK(t.rows == 3);
    if (t.name == "jobs") CHECK(t.rows == 1);
    if (t.name == "job_entries") CHECK(t.rows == 3);
    if (t.name == "inventory_history") CHECK(t.rows >= 1);
    if (t.name == "enrolments") CHECK(t.rows == 2);
    if (t.name == "revoked_certificates") CHECK(t.rows == 1);
    if (t.name == "enrol_tokens") CHECK(t.rows == 1);
  }
  for (const std::string name : {"enrolments", "revoked_certificates", "enrol_tokens"}) {
    INFO("table " << name);
    CHECK(std::any_of(want.tables.begin(), want.tables.end(),
                      [&](const TableSummary& t) { return t.name == name; }));
  }
  CHECK(progressed.size() >= want.tables.size());
  const std::string text = exported.str();

  SECTION("a copy holds the same rows") {
    TempDir tmp_target;
    auto target = open_store(backend, tmp_target);
    std::istringstream in(text);
    const auto declared = target->import_data(in, nullptr);
    check_same_summary(declared, want);
    const auto got = target->summarize();
    check_same_summary(got, want);

    CHECK(target->list_hosts().size() == 3);
    const auto packages = target->list_packages();
    REQUIRE(packages.size() == 2);
    CHECK(packages[0].name == "app");
    CHECK(packages[1].name == "tool");
    CHECK(target->find_package("tool", "2.0")->payload_digest == std::string(64, 'e'));
    const auto entries = target->job_entries(job.id);
    REQUIRE(entries.size() == 3);
    CHECK(entry_of(*target, job.id, ids[0]).state == EntryState::transferring);
    const auto failed = entry_of(*target, job.id, ids[1]);
    CHECK(failed.state == EntryState::failed);
    CHECK(failed.exit_code == 2);
    CHECK(failed.message == "no space left");
    CHECK(failed.output_tail == "tail \"quoted\"\n");
    CHECK(entry_of(*target, job.id, ids[2]).state == EntryState::waiting);
    CHECK(target->find_inventory(ids[0])->items.at("system.note") == "caf\xc3\xa9 \xe6\x9d\xb1");
    CHECK(target->find_host_group("web")->members.size() == 2);
    CHECK(target->id_groups_of(ids[2]) == std::vector<std::string>{"g"});
    CHECK(target->collected_files(job.id).size() == 1);
    const auto revoked = target->find_enrolment(ids[0]);
    REQUIRE(revoked);
    CHECK(revoked->state == EnrolmentState::revoked);
    CHECK(revoked->serial == 0x8000000000000002ULL);
    CHECK(revoked->request_pem == enrolled.request_pem);
    CHECK(target->revoked_serials() == std::vector<std::uint64_t>{0x8000000000000002ULL});
    CHECK(enrolled_ids(target->list_enrolments(EnrolmentState::pending)) == std::vector<std::string>{ids[1]});
    const auto tokens = target->list_enrol_tokens();
    REQUIRE(tokens.size() == 1);
    CHECK(tokens[0].id == "t-export");
    CHECK(tokens[0].expires_at == 5000);
    CHECK(target->use_enrol_token(std::string(64, '1'), 1000)->uses_left == 2);

    // Identities continue after the imported ids.
    const auto next = target->create_job(app_job({"pc000"}), {ids[0]});
    CHECK(next.job.id > job.id);
    CHECK(target->job_entries(next.job.id).at(0).id > entry1);

    SECTION("importing again into a database that holds data is refused and changes nothing") {
      const auto before = target->summarize();
      std::istringstream again(text);
      const auto message = error_message([&] { target->import_data(again, nullptr); });
      CHECK_THAT(message, Catch::Contains("not empty"));
      check_same_summary(target->summarize(), before);
      std::istringstream again2(text);
      CHECK(error_kind([&] { target->import_data(again2, nullptr); }) == ErrorKind::conflict);
    }
  }

  SECTION("a corrupted row is refused and nothing is kept") {
    // A value in job_entries, after hosts, packages and jobs were already written (the first
    // occurrence; the entry.failed event that came with it repeats the text later).
    REQUIRE(occurrences(text, "no space left") >= 1);
    REQUIRE(text.find("no space left") > text.find("{\"table\":\"job_entries\""));
    REQUIRE(text.find("no space left") < text.find("{\"end\":\"job_entries\""));
    const auto altered = replace_first(text, "no space left", "no spade left");
    TempDir tmp_target;
    auto target = open_store(backend, tmp_target);
    std::istringstream in(altered);
    CHECK_THAT(error_message([&] { target->import_data(in, nullptr); }), Catch::Contains("corrupted"));
    check_empty(*target);

    // A host name altered likewise.
    REQUIRE(occurrences(text, "\"pc001\"") >= 1);
    std::istringstream in2(replace_first(text, "\"pc001\"", "\"pc00X\""));
    CHECK_THAT(error_message([&] { target->import_data(in2, nullptr); }), Catch::Contains("corrupted"));
    check_empty(*target);
  }

  SECTION("a truncated export is refused and nothing is kept") {
    std::vector<std::string> lines;
    std::istringstream split(text);
    for (std::string line; std::getline(split, line);) lines.push_back(line);
    REQUIRE(lines.size() > 4);
    TempDir tmp_target;
    auto target = open_store(backend, tmp_target);
    for (const std::size_t keep : {lines.size() / 2, lines.size() - 1}) {
      INFO("first " << keep << " of " << lines.size() << " lines");
      std::string half;
      for (std::size_t i = 0; i < keep; ++i) half += lines[i] + "\n";
      std::istringstream in(half);
      CHECK_THAT(error_message([&] { target->import_data(in, nullptr); }), Catch::Contains("truncated"));
      check_empty(*target);
    }
  }

  SECTION("an export of a newer schema is refused") {
    const std::string version = "\"schema_version\":" + std::to_string(latest_schema_version());
    REQUIRE(text.substr(0, text.find('\n')).find(version) != std::string::npos);
    TempDir tmp_target;
    auto target = open_store(backend, tmp_target);
    std::istringstream in(replace_first(text, version, "\"schema_version\":999"));
    const auto message = error_message([&] { target->import_data(in, nullptr); });
    CHECK_THAT(message, Catch::Contains("newer"));
    CHECK_THAT(message, Catch::Contains("999"));
    check_empty(*target);
  }

  SECTION("a file that is not an export is refused") {
    TempDir tmp_target;
    auto target = open_store(backend, tmp_target);
    std::istringstream hello("hello\n");
    CHECK_THAT(error_message([&] { target->import_data(hello, nullptr); }),
               Catch::Contains("not a distrib database export"));
    std::istringstream other("{\"format\":\"something-else\"}\n");
    CHECK_THAT(error_message([&] { target->import_data(other, nullptr); }),
               Catch::Contains("not a distrib database export"));
    std::istringstream nothing("");
    CHECK_THAT(error_message([&] { target->import_data(nothing, nullptr); }),
               Catch::Contains("not a distrib database export"));
    check_empty(*target);
  }
}

TEST_CASE("store conformance: the active lease and fencing", "[store][cluster]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto a = open_store(backend, tmp);  // two nodes on one database
  auto b = open_store(backend, tmp);
  const std::int64_t t0 = 1'800'000'000'000;

  auto la = a->acquire_lease("c", "node-a", t0, 3000);
  CHECK(la.holder == "node-a");
  CHECK(la.token == 1);
  // Held and unexpired: the other node is refused and learns who holds it.
  auto lb = b->acquire_lease("c", "node-b", t0 + 1000, 3000);
  CHECK(lb.holder == "node-a");
  CHECK(lb.token == 1);
  CHECK(a->renew_lease("c", "node-a", 1, t0 + 2000, 3000));  // now expires at t0 + 5000
  CHECK_FALSE(b->renew_lease("c", "node-b", 1, t0 + 2000, 3000));
  CHECK(b->acquire_lease("c", "node-b", t0 + 4900, 3000).holder == "node-a");

  // Expired: the other node takes over with a greater token; the old holder cannot renew.
  lb = b->acquire_lease("c", "node-b", t0 + 5001, 3000);
  CHECK(lb.holder == "node-b");
  CHECK(lb.token == 2);
  CHECK_FALSE(a->renew_lease("c", "node-a", 1, t0 + 5002, 3000));
  auto history = a->takeovers("c", 10);
  REQUIRE(history.size() == 2);
  // Each takeover is an event, written with it.
  std::vector<Event> takeover_events;
  for (const auto& e : a->events_after(0, 100))
    if (e.type == "cluster.takeover") takeover_events.push_back(e);
  REQUIRE(takeover_events.size() == 2);
  CHECK(takeover_events[0].subject == "node-a");
  CHECK(takeover_events[1].subject == "node-b");
  CHECK(takeover_events[1].severity == Severity::warning);
  CHECK(takeover_events[1].message.find("taking over from node-a") != std::string::npos);
  CHECK(history[0].holder == "node-b");
  CHECK(history[0].previous == "node-a");
  CHECK(history[0].token == 2);
  CHECK(history[0].gap_ms == 1);
  CHECK(history[1].holder == "node-a");

  // Release: an orderly stop hands over without waiting for the expiry.
  b->release_lease("c", "node-b", 2, t0 + 6000);
  CHECK(a->acquire_lease("c", "node-a", t0 + 6001, 3000).token == 3);
  CHECK(a->read_lease("c")->holder == "node-a");
}

TEST_CASE("store conformance: a fenced store writes nothing once its lease is gone", "[store][cluster]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto a = open_store(backend, tmp);
  auto b = open_store(backend, tmp);
  const auto now = unix_ms_now();
  const auto la = a->acquire_lease("c", "node-a", now, 60000);
  a->set_fencing("c", la.token);
  a->upsert_host(host(kA, "web1"));  // holds the lease: writes
  // node-a "sleeps" past its lease; node-b takes over (simulated by an expiry in the past).
  const auto lb = b->acquire_lease("c", "node-b", now + 60001, 60000);
  REQUIRE(lb.holder == "node-b");
  b->set_fencing("c", lb.token);
  CHECK_THROWS_WITH(a->upsert_host(host(kB, "web2")), Catch::Contains("fenced"));
  CHECK_THROWS_WITH(a->create_job(app_job({"web1"}), {kA}), Catch::Contains("fenced"));
  CHECK_THROWS_WITH(a->request_enrolment(enrolment_request(kB, "web2", 'a', 1)), Catch::Contains("fenced"));
  CHECK(b->list_hosts().size() == 1);  // nothing of node-a's late writes
  b->upsert_host(host(kB, "web2"));    // the new holder writes
  CHECK(b->list_hosts().size() == 2);
  a->set_fencing("c", 0);  // unfenced (not clustered): writes again
  a->touch_hosts({{kA, 5}});
}

TEST_CASE("store conformance: a fenced store refuses every write method", "[store][cluster]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto a = open_store(backend, tmp);
  auto b = open_store(backend, tmp);
  const auto now = unix_ms_now();
  const auto la = a->acquire_lease("c", "node-a", now, 60000);
  a->set_fencing("c", la.token);
  // What the write methods below act on, written while node-a holds the lease.
  a->upsert_host(host(kA, "web1"));
  a->insert_package(manifest("app", "1.0"));
  auto expiring = app_job({"web1"});
  expiring.schedule.expires_at = now / 1000 + 3600;
  const auto job = a->create_job(expiring, {kA}).job;
  const auto entry = a->job_entries(job.id).front();
  HostGroup hg;
  hg.name = "hg";
  a->create_host_group(hg);
  IdGroup ig;
  ig.name = "ig";
  a->create_id_group(ig);
  a->request_enrolment(enrolment_request(kB, "web2", 'a', 1));
  InventoryField field;
  field.name = "site";
  a->put_inventory_field(field);
  // node-a sleeps past its lease; node-b takes over.
  const auto lb = b->acquire_lease("c", "node-b", now + 60001, 60000);
  REQUIRE(lb.holder == "node-b");
  b->set_fencing("c", lb.token);
  const auto before = b->summarize();

  EntryReport report;
  report.entry_id = entry.id;
  report.attempt = 1;
  report.seq = 1;
  report.state = EntryState::transferring;
  InventoryReport inv;
  inv.host_id = kA;
  inv.items = {{"system.os.name", "x"}};
  CollectedFile file;
  file.job_id = job.id;
  file.host_id = kA;
  file.path = "/var/log/x";
  Event ev;
  ev.type = "host.changed";
  AuditRecord audit;
  audit.action = "POST /v1/jobs";
  EnrolToken token;
  token.id = "t1";
  token.secret_hash = std::string(64, 'e');
  RoutedEntry routed;
  routed.entry = entry;
  routed.entry.id = 999;
  routed.job = job;
  auto decision = enrolment_request(kB, "web2", 'a', 1);
  decision.state = EnrolmentState::rejected;
  const std::vector<std::pair<std::string, std::function<void()>>> writes = {
      {"upsert_host", [&] { a->upsert_host(host(kB, "web2")); }},
      {"approve_hosts", [&] { a->approve_hosts({kA}); }},
      {"remove_host", [&] { a->remove_host(kA); }},
      {"touch_hosts",
       [&] {
         a->touch_hosts({{kA, 5}});
       }},
      // These read first and write only when there is something to do: given something.
      {"mark_silent_hosts", [&] { a->mark_silent_hosts(now / 1000 + 1000000); }},
      {"insert_package", [&] { a->insert_package(manifest("other", "1.0", 'b')); }},
      {"touch_package", [&] { a->touch_package("app", "1.0", 5); }},
      {"delete_package", [&] { a->delete_package("app", "1.0"); }},
      {"create_host_group",
       [&] {
         a->create_host_group(HostGroup{"hg2", "", 0, {}, ""});
       }},
      {"change_host_group", [&] { a->change_host_group("hg", {kA}, {}); }},
      {"delete_host_group", [&] { a->delete_host_group("hg"); }},
      {"create_id_group",
       [&] {
         IdGroup other;
         other.name = "ig2";
         a->create_id_group(other);
       }},
      {"delete_id_group", [&] { a->delete_id_group("ig"); }},
      {"join_id_group", [&] { a->join_id_group("ig", {kA}, JoinMethod::admin); }},
      {"leave_id_group", [&] { a->leave_id_group("ig", {kA}); }},
      {"create_job", [&] { a->create_job(app_job({"web1"}), {kA}); }},
      {"apply_report", [&] { a->apply_report(kA, report); }},
      {"cancel_job_entries", [&] { a->cancel_job_entries(job.id); }},
      {"retry_failed", [&] { a->retry_failed(job.id); }},
      {"mark_pushed",
       [&] {
         a->mark_pushed(kA, {{entry.id, EntryState::waiting}});
       }},
      {"import_entries", [&] { a->import_entries({routed}); }},
      {"hosts_reported",
       [&] {
         a->hosts_reported({{kA, 1}});
       }},
      {"reports_forwarded",
       [&] {
         a->reports_forwarded({{entry.id, 1}});
       }},
      {"suspend_transfers", [&] { a->suspend_transfers(job.id, {}, true); }},
      {"clear_split", [&] { a->clear_split(job.id); }},
      {"expire_entries", [&] { a->expire_entries(0, now / 1000 + 7200); }},
      {"release_wave", [&] { a->release_wave(job.id, 1); }},
      {"stop_rollout", [&] { a->stop_rollout(job.id, "why"); }},
      {"ingest_inventory", [&] { a->ingest_inventory(inv, now / 1000); }},
      {"ingest_inventory_batch", [&] { a->ingest_inventory_batch({inv}, now / 1000); }},
      {"put_inventory_field", [&] { a->put_inventory_field(field); }},
      {"delete_inventory_field", [&] { a->delete_inventory_field("site"); }},
      {"record_collected_file", [&] { a->record_collected_file(file); }},
      {"set_event_cursor", [&] { a->set_event_cursor("sink", 5); }},
      {"prune_events", [&] { a->prune_events(now + 1000000000, 1000000); }},
      {"record_events", [&] { a->record_events({ev}); }},
      {"append_audit", [&] { a->append_audit({audit}); }},
      {"request_enrolment", [&] { a->request_enrolment(enrolment_request(kC, "web3", 'b', 2)); }},
      {"decide_enrolment", [&] { a->decide_enrolment(decision); }},
      {"renew_certificate", [&] { a->renew_certificate(kB, fingerprint_of('a'), "req", "cert", 7, 9); }},
      {"revoke_enrolment", [&] { a->revoke_enrolment(kB, 5, "admin"); }},
      {"create_enrol_token", [&] { a->create_enrol_token(token); }},
      {"use_enrol_token", [&] { a->use_enrol_token(std::string(64, 'e'), now / 1000); }},
      {"revoke_enrol_token", [&] { a->revoke_enrol_token("t1"); }},
  };
  for (const auto& [name, call] : writes) {
    INFO(name);
    CHECK_THROWS_WITH(call(), Catch::Contains("fenced"));
  }
  // Nothing of node-a's late writes reached the database.
  const auto after = b->summarize();
  REQUIRE(after.tables.size() == before.tables.size());
  for (std::size_t i = 0; i < after.tables.size(); ++i) {
    INFO(after.tables[i].name);
    CHECK(after.tables[i].checksum == before.tables[i].checksum);
  }
}

TEST_CASE("store conformance: events are written with the changes that cause them", "[store][events]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  store->upsert_host(host(kA, "web1"));
  store->upsert_host(host(kB, "web2"));
  store->upsert_host(host(kA, "web1"));  // again: no second event
  store->insert_package(manifest("app", "1.0"));
  const auto job = store->create_job(app_job({"web1", "web2"}), {kA, kB});
  auto report = [&](const std::string& host_id, EntryState state, std::int64_t seq,
                    const std::string& message = "") {
    EntryReport r;
    r.entry_id = entry_of(*store, job.job.id, host_id).id;
    r.seq = seq;
    r.state = state;
    r.message = message;
    return store->apply_report(host_id, r);
  };
  for (auto s : {EntryState::transferring, EntryState::transferred, EntryState::installing}) {
    report(kA, s, static_cast<std::int64_t>(s) + 1);
    report(kB, s, static_cast<std::int64_t>(s) + 1);
  }
  report(kA, EntryState::succeeded, 10);
  report(kB, EntryState::failed, 10, "exit 3\nmore");

  std::vector<std::string> types;
  const auto events = store->events_after(0, 100);
  for (const auto& e : events) types.push_back(e.type);
  CHECK(types == std::vector<std::string>{"host.registered", "host.registered", "package.registered",
                                          "job.created", "entry.succeeded", "entry.failed", "job.failed"});
  for (std::size_t i = 1; i < events.size(); ++i) CHECK(events[i].id > events[i - 1].id);
  CHECK(events[3].job_id == job.job.id);
  CHECK(events[3].subject == "app 1.0");
  CHECK(events[5].host_id == kB);
  CHECK(events[5].subject == "web2");
  CHECK(events[5].message == "job " + std::to_string(job.job.id) + " on web2: failed (exit 3)");
  CHECK(events[5].severity == Severity::warning);
  CHECK(events[6].severity == Severity::error);
  CHECK(store->events_after(events[4].id, 100).size() == 2);

  // A change that fails writes no event.
  const auto before = store->events_after(0, 100).size();
  CHECK_THROWS(store->insert_package(manifest("app", "1.0", 'b')));
  CHECK(store->events_after(0, 100).size() == before);

  // Cursors per sink.
  CHECK(store->event_cursor("ops") == -1);
  store->set_event_cursor("ops", events[2].id);
  store->set_event_cursor("ops", events[4].id);
  CHECK(store->event_cursor("ops") == events[4].id);
  CHECK(store->event_cursor("other") == -1);
}

TEST_CASE("store conformance: host changes, cancels, silence, the audit trail and counts",
          "[store][events]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  std::atomic<int> told{0};
  store->set_event_listener([&] { ++told; });
  store->upsert_host(host(kA, "web1"));
  CHECK(told == 1);
  CHECK(store->last_event_id() == store->events_after(0, 10).back().id);
  auto renamed = host(kA, "web1-new");
  renamed.addresses = {"10.0.0.9"};
  store->upsert_host(renamed);
  auto events = store->events_after(0, 10);
  REQUIRE(events.size() == 2);
  CHECK(events[1].type == "host.changed");
  CHECK(events[1].message == "host web1-new renamed from web1, address 10.0.0.1,10.0.0.2 -> 10.0.0.9");
  store->touch_hosts({{kA, 1000}});  // no event, no listener call
  CHECK(told == 2);

  // Silence: last seen before the cutoff → host.silent once; heard again → host.returned.
  CHECK(store->mark_silent_hosts(5000) == 0);  // last_seen is "now"
  store->upsert_host(host(kB, "web2"));
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  CHECK(store->mark_silent_hosts(now + 10) == 2);
  CHECK(store->mark_silent_hosts(now + 10) == 0);  // told once
  store->touch_hosts({{kA, now + 20}});
  CHECK(store->mark_silent_hosts(now + 10) == 1);
  std::vector<std::string> types;
  for (const auto& e : store->events_after(events[1].id, 20)) types.push_back(e.type);
  CHECK(types == std::vector<std::string>{"host.registered", "host.silent", "host.silent", "host.returned"});

  // A cancel is an event; counts follow.
  store->insert_package(manifest("app", "1.0"));
  const auto job = store->create_job(app_job({"web1-new", "web2"}), {kA, kB});
  auto counts = store->counts();
  CHECK(counts.hosts == 2);
  CHECK(counts.jobs == 1);
  CHECK(counts.open_jobs == 1);
  CHECK(counts.entries_by_state["waiting"] == 2);
  store->cancel_job(job.job.id);
  CHECK(store->events_after(0, 100).back().type == "job.cancelled");
  counts = store->counts();
  CHECK(counts.open_jobs == 0);
  CHECK(counts.entries_by_state["cancelled"] == 2);

  // The audit trail, newest first, paged backwards.
  std::vector<AuditRecord> recs;
  for (int i = 0; i < 5; ++i)
    recs.push_back({0, 1000 + i, "ops@console", "127.0.0.1", "POST /v1/jobs",
                    i % 2 ? "" : "job " + std::to_string(i), i == 4 ? 404 : 201,
                    i == 4 ? "package \"x\" 1 does not exist" : "ok"});
  store->append_audit(recs);
  const auto page = store->audit_records(3);
  REQUIRE(page.size() == 3);
  CHECK(page[0].at_ms == 1004);
  CHECK(page[0].status == 404);
  CHECK(page[0].result == "package \"x\" 1 does not exist");
  CHECK(page[1].target.empty());
  CHECK(page[2].target == "job 2");
  const auto older = store->audit_records(10, page[2].id);
  REQUIRE(older.size() == 2);
  CHECK(older[0].at_ms == 1001);
  CHECK(older[1].actor == "ops@console");

  const auto st = store->stats();
  CHECK(st.calls > 0);
  std::uint64_t in_buckets = 0;
  for (auto b : st.buckets) in_buckets += b;
  CHECK(in_buckets == st.calls);

  // Candidates for a key conflict: names without case, addresses inside the list.
  CHECK(store->hosts_with_key(HostKeyMode::name, "WEB2").size() == 1);
  const auto by_ip = store->hosts_with_key(HostKeyMode::ip, "10.0.0.9");
  REQUIRE(by_ip.size() == 1);
  CHECK(by_ip[0].host_id == kA);
  CHECK(store->hosts_with_key(HostKeyMode::name, "nobody").empty());
  CHECK(store->hosts_with_key(HostKeyMode::host_id, kA).empty());

  // Newest first, paged backwards.
  const auto newest = store->events_before(0, 2);
  REQUIRE(newest.size() == 2);
  CHECK(newest[0].id == store->last_event_id());
  CHECK(newest[1].id < newest[0].id);
  CHECK(store->events_before(newest[1].id, 100).front().id < newest[1].id);

  // Entries that expire are told one by one, then the job's end.
  auto expiring = app_job({"web1-new", "web2"});
  expiring.schedule.expires_at = 5000;
  const auto job2 = store->create_job(expiring, {kA, kB});
  const auto before = store->last_event_id();
  CHECK(store->expire_entries(4000, 6000).size() == 2);
  std::vector<std::string> after;
  for (const auto& e : store->events_after(before, 10)) {
    after.push_back(e.type);
    CHECK(e.job_id == job2.job.id);
  }
  CHECK(after == std::vector<std::string>{"entry.expired", "entry.expired", "job.failed"});

  // Pruning takes only what is older than the cutoff and at or below the sinks' position.
  const auto total = store->events_after(0, 1000).size();
  const auto mid = store->events_after(0, 1000)[2].id;
  CHECK(store->prune_events(0, mid) == 0);  // nothing is older than the epoch
  const auto far = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count() +
                   60000;
  CHECK(store->prune_events(far, mid) == 3);
  CHECK(store->events_after(0, 1000).size() == total - 3);
  CHECK(store->events_after(0, 1).front().id == mid + 1);
  CHECK(store->prune_events(far, mid) == 0);
  store->set_event_listener(nullptr);
}

TEST_CASE("enrolment states have names", "[store][enrolment]") {
  for (auto s :
       {EnrolmentState::pending, EnrolmentState::accepted, EnrolmentState::rejected, EnrolmentState::revoked})
    CHECK(parse_enrolment_state(to_string(s)) == s);
  CHECK(to_string(EnrolmentState::revoked) == "revoked");
  CHECK_THAT(error_message([] { parse_enrolment_state("approved"); }), Catch::Contains("\"approved\""));
  CHECK(error_kind([] { parse_enrolment_state(""); }) == ErrorKind::invalid_argument);
}

TEST_CASE("store conformance: enrolment requests, decisions, renewal and revocation", "[store][enrolment]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  CHECK(store->list_enrolments(std::nullopt).empty());
  CHECK_FALSE(store->find_enrolment(kA));
  CHECK(store->revoked_serials().empty());

  // A first request is pending, whatever state or decision it claims.
  auto a1 = enrolment_request(kA, "pc-a", 'a', 1000);
  a1.via = kR;
  a1.state = EnrolmentState::accepted;
  a1.serial = 99;
  a1.decided_by = "someone";
  auto stored = store->request_enrolment(a1);
  CHECK(stored.state == EnrolmentState::pending);
  CHECK(stored.serial == 0);
  CHECK(stored.decided_by.empty());
  auto found = store->find_enrolment(kA);
  REQUIRE(found);
  CHECK(found->name == "pc-a");
  CHECK(found->role == "agent");
  CHECK(found->address == "10.0.0.1");
  CHECK(found->via == kR);
  CHECK(found->fingerprint == fingerprint_of('a'));
  CHECK(found->request_pem == a1.request_pem);
  CHECK(found->state == EnrolmentState::pending);
  CHECK(found->certificate_pem.empty());
  CHECK(found->serial == 0);
  CHECK(found->requested_at == 1000);
  CHECK(found->decided_at == 0);

  // A pending request is replaced by a retry with a new key.
  const auto a2 = enrolment_request(kA, "pc-a", 'b', 1001);
  CHECK(store->request_enrolment(a2).fingerprint == fingerprint_of('b'));
  found = store->find_enrolment(kA);
  CHECK(found->fingerprint == fingerprint_of('b'));
  CHECK(found->via.empty());
  CHECK(found->requested_at == 1001);
  CHECK(store->list_enrolments(std::nullopt).size() == 1);

  // A decision made on the replaced request (another fingerprint) changes nothing.
  CHECK_FALSE(store->decide_enrolment(decision(a1, EnrolmentState::accepted, 7, 1100, "admin")));
  CHECK(store->find_enrolment(kA)->state == EnrolmentState::pending);
  CHECK(store->find_enrolment(kA)->serial == 0);
  // Nor one on a host that asked nothing.
  CHECK_FALSE(store->decide_enrolment(
      decision(enrolment_request(kB, "pc-b", 'b', 1), EnrolmentState::accepted, 7, 1100, "admin")));
  CHECK_FALSE(store->find_enrolment(kB));
  // Pending and revoked are no decisions.
  CHECK(error_kind([&] {
          store->decide_enrolment(decision(a2, EnrolmentState::revoked, 7, 1100, "admin"));
        }) == ErrorKind::invalid_argument);
  CHECK(error_kind([&] {
          store->decide_enrolment(decision(a2, EnrolmentState::pending, 7, 1100, "admin"));
        }) == ErrorKind::invalid_argument);

  // pending -> accepted.
  CHECK(store->decide_enrolment(decision(a2, EnrolmentState::accepted, 42, 1100, "admin")));
  found = store->find_enrolment(kA);
  CHECK(found->state == EnrolmentState::accepted);
  CHECK(found->serial == 42);
  CHECK(found->certificate_pem == decision(a2, EnrolmentState::accepted, 42, 1100, "admin").certificate_pem);
  CHECK(found->not_after == 1100 + 86400);
  CHECK(found->decided_at == 1100);
  CHECK(found->decided_by == "admin");
  CHECK(found->token_id.empty());
  // Decided once: a second decision (either way) changes nothing.
  CHECK_FALSE(store->decide_enrolment(decision(a2, EnrolmentState::rejected, 0, 1200, "other")));
  CHECK(store->find_enrolment(kA)->state == EnrolmentState::accepted);

  // The host asking again with the same key learns the outcome; the record is unchanged.
  auto again = store->request_enrolment(enrolment_request(kA, "pc-a-renamed", 'b', 2000));
  CHECK(again.state == EnrolmentState::accepted);
  CHECK(again.serial == 42);
  CHECK(again.name == "pc-a");
  CHECK(again.requested_at == 1001);
  // Another key while accepted is refused and changes nothing.
  CHECK(error_kind([&] { store->request_enrolment(enrolment_request(kA, "pc-a", 'c', 2001)); }) ==
        ErrorKind::conflict);
  CHECK_THAT(error_message([&] { store->request_enrolment(enrolment_request(kA, "pc-a", 'c', 2001)); }),
             Catch::Contains("is enrolled with another key; revoke it first"));
  found = store->find_enrolment(kA);
  CHECK(found->state == EnrolmentState::accepted);
  CHECK(found->fingerprint == fingerprint_of('b'));

  // Renewal replaces the key, request and certificate of an accepted enrolment.
  const std::uint64_t high = 0x8000000000000001ULL;  // a serial above INT64_MAX round-trips
  CHECK(store->renew_certificate(kA, fingerprint_of('c'), "request c", "certificate c", high, 90000));
  found = store->find_enrolment(kA);
  CHECK(found->state == EnrolmentState::accepted);
  CHECK(found->fingerprint == fingerprint_of('c'));
  CHECK(found->request_pem == "request c");
  CHECK(found->certificate_pem == "certificate c");
  CHECK(found->serial == high);
  CHECK(found->not_after == 90000);
  CHECK(found->decided_by == "admin");
  CHECK_FALSE(store->renew_certificate(kB, fingerprint_of('c'), "r", "c", 5, 90000));  // no enrolment
  CHECK(store->revoked_serials().empty());  // the certificate replaced expires by itself

  // pending -> rejected: no certificate kept; the same key asking again stays rejected.
  const auto b1 = enrolment_request(kB, "pc-b", 'd', 1300);
  store->request_enrolment(b1);
  CHECK(store->decide_enrolment(decision(b1, EnrolmentState::rejected, 77, 1400, "admin")));
  found = store->find_enrolment(kB);
  CHECK(found->state == EnrolmentState::rejected);
  CHECK(found->certificate_pem.empty());
  CHECK(found->serial == 0);
  CHECK(found->decided_at == 1400);
  CHECK(found->decided_by == "admin");
  CHECK(store->request_enrolment(b1).state == EnrolmentState::rejected);
  CHECK_FALSE(store->renew_certificate(kB, fingerprint_of('d'), "r", "c", 5, 90000));
  CHECK_FALSE(store->revoke_enrolment(kB, 1500, "admin"));
  CHECK(store->find_enrolment(kB)->state == EnrolmentState::rejected);
  // Rejected, then another key: a new pending request.
  stored = store->request_enrolment(enrolment_request(kB, "pc-b", 'e', 1500));
  CHECK(stored.state == EnrolmentState::pending);
  CHECK(stored.fingerprint == fingerprint_of('e'));
  CHECK(stored.decided_at == 0);
  CHECK(stored.decided_by.empty());
  CHECK(store->find_enrolment(kB)->state == EnrolmentState::pending);

  // Lists: by state, by requested_at then host id.
  auto r1 = enrolment_request(kR, "relay-1", 'r', 1500);
  r1.role = "relay";
  store->request_enrolment(r1);
  CHECK(enrolled_ids(store->list_enrolments(std::nullopt)) == std::vector<std::string>{kA, kB, kR});
  CHECK(enrolled_ids(store->list_enrolments(EnrolmentState::pending)) == std::vector<std::string>{kB, kR});
  CHECK(enrolled_ids(store->list_enrolments(EnrolmentState::accepted)) == std::vector<std::string>{kA});
  CHECK(store->list_enrolments(EnrolmentState::rejected).empty());
  CHECK(store->list_enrolments(EnrolmentState::revoked).empty());
  CHECK(store->find_enrolment(kR)->role == "relay");
  CHECK_FALSE(store->revoke_enrolment(kR, 1600, "admin"));  // pending: nothing to revoke

  // accepted -> revoked: the serial is kept and listed.
  CHECK(store->revoke_enrolment(kA, 3000, "admin2"));
  found = store->find_enrolment(kA);
  CHECK(found->state == EnrolmentState::revoked);
  CHECK(found->serial == high);
  CHECK(found->decided_at == 3000);
  CHECK(found->decided_by == "admin2");
  CHECK(store->revoked_serials() == std::vector<std::uint64_t>{high});
  CHECK_FALSE(store->revoke_enrolment(kA, 3001, "admin2"));
  CHECK_FALSE(store->renew_certificate(kA, fingerprint_of('c'), "r", "c", 5, 90000));
  CHECK(store->request_enrolment(enrolment_request(kA, "pc-a", 'c', 3100)).state == EnrolmentState::revoked);
  CHECK(enrolled_ids(store->list_enrolments(EnrolmentState::revoked)) == std::vector<std::string>{kA});

  // Revoked, then another key: pending again, and the revoked serial stays revoked.
  const auto a3 = enrolment_request(kA, "pc-a", 'f', 3200);
  CHECK(store->request_enrolment(a3).state == EnrolmentState::pending);
  CHECK(store->find_enrolment(kA)->serial == 0);
  CHECK(store->revoked_serials() == std::vector<std::uint64_t>{high});
  // A token accepts it this time.
  CHECK(store->decide_enrolment(decision(a3, EnrolmentState::accepted, 7, 3300, "", "t-1")));
  found = store->find_enrolment(kA);
  CHECK(found->state == EnrolmentState::accepted);
  CHECK(found->token_id == "t-1");
  CHECK(found->decided_by.empty());
  CHECK(store->revoke_enrolment(kA, 3400, "admin"));
  CHECK(store->revoked_serials() == std::vector<std::uint64_t>{7, high});
}

TEST_CASE("store conformance: enrolment tokens", "[store][enrolment]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  CHECK(store->list_enrol_tokens().empty());
  CHECK_FALSE(store->use_enrol_token(std::string(64, '1'), 1000));

  store->create_enrol_token(enrol_token("t-two", '1', 2));
  CHECK(error_kind([&] { store->create_enrol_token(enrol_token("t-two", '9', 1)); }) == ErrorKind::conflict);
  CHECK(error_kind([&] { store->create_enrol_token(enrol_token("t-other", '1', 1)); }) ==
        ErrorKind::conflict);
  auto tokens = store->list_enrol_tokens();
  REQUIRE(tokens.size() == 1);
  CHECK(tokens[0].id == "t-two");
  CHECK(tokens[0].secret_hash == std::string(64, '1'));
  CHECK(tokens[0].created_at == 100);
  CHECK(tokens[0].expires_at == 0);
  CHECK(tokens[0].uses_left == 2);
  CHECK(tokens[0].group == "web");
  CHECK(tokens[0].created_by == "admin");
  CHECK_FALSE(tokens[0].revoked);

  // Two uses, then refused; each use returns the token as it was before it.
  auto used = store->use_enrol_token(std::string(64, '1'), 1000);
  REQUIRE(used);
  CHECK(used->id == "t-two");
  CHECK(used->uses_left == 2);
  CHECK(used->group == "web");
  used = store->use_enrol_token(std::string(64, '1'), 1001);
  REQUIRE(used);
  CHECK(used->uses_left == 1);
  CHECK_FALSE(store->use_enrol_token(std::string(64, '1'), 1002));
  CHECK(store->list_enrol_tokens().at(0).uses_left == 0);

  // Unlimited.
  auto unlimited = enrol_token("t-any", '2', -1);
  unlimited.created_at = 200;
  unlimited.group.clear();
  store->create_enrol_token(unlimited);
  for (int i = 0; i < 3; ++i) {
    used = store->use_enrol_token(std::string(64, '2'), 1000 + i);
    REQUIRE(used);
    CHECK(used->uses_left == -1);
    CHECK(used->group.empty());
  }

  // Expiring: usable before its expiry only; a refusal takes no use.
  auto expiring = enrol_token("t-exp", '3', 3, 5000);
  expiring.created_at = 200;  // the same as t-any: listed by id then
  store->create_enrol_token(expiring);
  used = store->use_enrol_token(std::string(64, '3'), 4999);
  REQUIRE(used);
  CHECK(used->expires_at == 5000);
  CHECK_FALSE(store->use_enrol_token(std::string(64, '3'), 5000));
  CHECK_FALSE(store->use_enrol_token(std::string(64, '3'), 6000));

  // A wrong secret is refused and changes nothing.
  const auto before = store->summarize();
  CHECK_FALSE(store->use_enrol_token(std::string(64, '4'), 1000));
  CHECK_FALSE(store->use_enrol_token(std::string(64, '1'), 1000));  // used up
  check_same_summary(store->summarize(), before);

  // Revoked: refused from then on.
  CHECK(store->revoke_enrol_token("t-any"));
  CHECK_FALSE(store->revoke_enrol_token("t-any"));
  CHECK_FALSE(store->revoke_enrol_token("t-none"));
  CHECK_FALSE(store->use_enrol_token(std::string(64, '2'), 1000));

  tokens = store->list_enrol_tokens();
  REQUIRE(tokens.size() == 3);
  CHECK(tokens[0].id == "t-two");
  CHECK(tokens[1].id == "t-any");
  CHECK(tokens[1].revoked);
  CHECK(tokens[1].uses_left == -1);
  CHECK(tokens[2].id == "t-exp");
  CHECK(tokens[2].uses_left == 2);
  CHECK_FALSE(tokens[2].revoked);

  // created_at 0 is now.
  auto fresh = enrol_token("t-new", '5', 1);
  fresh.created_at = 0;
  store->create_enrol_token(fresh);
  CHECK(store->list_enrol_tokens().back().created_at >= now_unix() - 60);
}

namespace {
// A database at schema version `version`, as the distribd of that version made it: the shared
// migrations up to it, run straight on the database (not through the store), and one host.
void make_old_database(const std::string& backend, const TempDir& tmp, int version,
                       const std::vector<std::string>& extra = {}) {
  const bool pg = backend == "postgresql" || backend == "odbc-postgresql";
  const auto& dialect = pg ? distrib::store::postgresql_dialect() : distrib::store::sqlite_dialect();
  std::vector<std::string> statements = {dialect.create_version_table};
  for (const auto& m : distrib::store::migrations()) {
    if (m.version > version) break;
    for (const auto& st : m.statements)
      for (auto& r : distrib::store::render(st, dialect)) statements.push_back(std::move(r));
    statements.push_back("INSERT INTO schema_version (version, applied_at) VALUES (" +
                         std::to_string(m.version) + ", 0)");
  }
  statements.push_back(
      "INSERT INTO hosts (host_id, name, addresses, role, registered_at, last_seen) VALUES ('" + kA +
      "', 'old-host', '10.0.0.9', 'agent', 1, 1)");
  statements.insert(statements.end(), extra.begin(), extra.end());
  if (pg) {
    const auto db = pg_database(tmp, backend == "postgresql" ? "n_" : "o_");
    for (const auto& st : statements) pg_exec(st, db);
    return;
  }
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((tmp / "test.db").c_str(), &db) == SQLITE_OK);
  for (const auto& st : statements) {
    INFO(st);
    CHECK(sqlite3_exec(db, st.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  }
  sqlite3_close(db);
}
}  // namespace

TEST_CASE("store conformance: a schema 8 database is migrated to the enrolment tables",
          "[store][enrolment]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  make_old_database(backend, tmp, 8);
  auto store = open_store(backend, tmp);
  CHECK(store->version_at_open() == 8);
  CHECK(store->schema_version() == latest_schema_version());
  CHECK(latest_schema_version() == 12);
  REQUIRE(store->find_host(kA));
  CHECK(store->find_host(kA)->name == "old-host");
  // The host keys (schema 11) were derived from the hosts already stored.
  REQUIRE(store->hosts_with_key(HostKeyMode::name, "Old-Host").size() == 1);
  CHECK(store->hosts_with_key(HostKeyMode::ip, "10.0.0.9").at(0).host_id == kA);

  const auto req = enrolment_request(kA, "old-host", 'a', 1000);
  CHECK(store->request_enrolment(req).state == EnrolmentState::pending);
  CHECK(store->decide_enrolment(decision(req, EnrolmentState::accepted, 5, 1100, "admin")));
  CHECK(store->revoke_enrolment(kA, 1200, "admin"));
  CHECK(store->revoked_serials() == std::vector<std::uint64_t>{5});
  store->create_enrol_token(enrol_token("t", '1', 1));
  CHECK(store->use_enrol_token(std::string(64, '1'), 1000));

  std::map<std::string, std::int64_t> rows;
  for (const auto& t : store->summarize().tables) rows[t.name] = t.rows;
  CHECK(rows.at("hosts") == 1);
  CHECK(rows.at("enrolments") == 1);
  CHECK(rows.at("revoked_certificates") == 1);
  CHECK(rows.at("enrol_tokens") == 1);

  // Opened again: nothing left to migrate.
  store.reset();
  store = open_store(backend, tmp);
  CHECK(store->version_at_open() == latest_schema_version());
  CHECK(store->find_enrolment(kA)->state == EnrolmentState::revoked);
}

TEST_CASE("store conformance: a schema 11 inventory is interned", "[store]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  const InventoryItems items{{"software.dpkg.bash", "5.2"},
                             {"system.os.version", "12"},
                             {"system.disk./.free_bytes", "100"},
                             {"user.site", "tokyo"}};
  std::vector<std::string> extra = {
      "INSERT INTO inventory_hosts (host_id, collected_at, reported_at, system_digest, software_digest) "
      "VALUES "
      "('" +
      kA + "', 5, 6, '" + inventory_digest(items, InventoryScope::system) + "', '" +
      inventory_digest(items, InventoryScope::software) + "')"};
  for (const auto& [k, v] : items)
    extra.push_back("INSERT INTO inventory_items (host_id, item_key, item_value) VALUES ('" + kA + "', '" +
                    k + "', '" + v + "')");
  make_old_database(backend, tmp, 11, extra);
  auto store = open_store(backend, tmp);
  CHECK(store->version_at_open() == 11);
  const auto inv = store->find_inventory(kA);
  REQUIRE(inv);
  CHECK(inv->items == items);
  CHECK(inv->reported_at == 6);
  std::map<std::string, std::int64_t> rows;
  for (const auto& t : store->summarize().tables) rows[t.name] = t.rows;
  CHECK(rows.at("inventory_items") == 0);
  CHECK(rows.at("inventory_catalogue") == 3);  // the volatile value is kept apart
  CHECK(store->inventory_values("user.site", false).size() == 1);
  CHECK(store->inventory_values("system.disk.", true).at(0).value == "100");
  // The digests carried over: the handshake works on the migrated row.
  InventoryReport digest_only;
  digest_only.host_id = kA;
  digest_only.stable_elided = true;
  digest_only.system_digest = inventory_digest(items, InventoryScope::system);
  digest_only.software_digest = inventory_digest(items, InventoryScope::software);
  digest_only.items = {{"system.disk./.free_bytes", "99"}};
  CHECK(store->ingest_inventory(digest_only, 10).unchanged);
  // A changed package is a change against the migrated items.
  InventoryReport sw;
  sw.host_id = kA;
  sw.scope = InventoryScope::software;
  sw.items = {{"software.dpkg.bash", "5.3"}};
  const auto res = store->ingest_inventory(sw, 11);
  REQUIRE(res.changes.size() == 1);
  CHECK(res.changes[0].old_value == "5.2");
  CHECK(store->find_inventory(kA)->items.at("system.disk./.free_bytes") == "99");
}

TEST_CASE("inventory item sets: the text form", "[store]") {
  using distrib::store::decode_item_set;
  using distrib::store::encode_item_set;
  const distrib::store::ItemSet ids = {1, 2, 3, 31, 32, 33, 1000, 1001, 1u << 20, (1u << 31) + 7};
  const auto text = encode_item_set(ids);
  CHECK(decode_item_set(text) == ids);
  CHECK(encode_item_set({1, 2, 3}) == "111");
  CHECK(encode_item_set({}).empty());
  CHECK(decode_item_set("").empty());
  // Text it did not write is refused, not misread.
  CHECK_THROWS_AS(decode_item_set("1!"), distrib::Error);
  CHECK_THROWS_AS(decode_item_set("w"), distrib::Error);  // a number cut short
  // A host's ~860 dense ids take about a byte each.
  distrib::store::ItemSet many;
  for (distrib::store::ItemId i = 1; i <= 860; ++i) many.push_back(i * 3);
  CHECK(encode_item_set(many).size() == 860);
  CHECK(distrib::store::pair_hash("a", "bc") != distrib::store::pair_hash("ab", "c"));
}

TEST_CASE("store conformance: hosts are found by their keys through indexes", "[store]") {
  const std::string backend = GENERATE(from_range(backends()));
  INFO("backend " << backend);
  TempDir tmp;
  auto store = open_store(backend, tmp);
  auto a = host(kA, "Web1");
  a.addresses = {"10.0.0.1", "10.0.0.12"};
  store->upsert_host(a);
  store->upsert_host(host(kB, "web2"));

  // An address is matched whole: 10.0.0.1 is not found inside 10.0.0.12.
  CHECK(store->hosts_with_key(HostKeyMode::name, "WEB1").at(0).host_id == kA);
  CHECK(store->hosts_with_key(HostKeyMode::ip, "10.0.0.12").size() == 1);
  CHECK(store->hosts_with_key(HostKeyMode::ip, "10.0.0.").empty());
  CHECK(store->hosts_with_key(HostKeyMode::name, "web").empty());

  // Renamed and readdressed: the keys follow; the old ones find nothing.
  a.name = "db1";
  a.addresses = {"10.0.0.7"};
  store->upsert_host(a);
  CHECK(store->hosts_with_key(HostKeyMode::name, "web1").empty());
  CHECK(store->hosts_with_key(HostKeyMode::name, "DB1").size() == 1);
  CHECK(store->hosts_with_key(HostKeyMode::ip, "10.0.0.12").empty());
  CHECK(store->hosts_with_key(HostKeyMode::ip, "10.0.0.7").at(0).host_id == kA);

  // Two hosts on one address are both candidates; a removed host is none.
  auto b = host(kB, "web2");
  b.addresses = {"10.0.0.7"};
  store->upsert_host(b);
  CHECK(store->hosts_with_key(HostKeyMode::ip, "10.0.0.7").size() == 2);
  store->remove_host(kA);
  CHECK(store->hosts_with_key(HostKeyMode::ip, "10.0.0.7").size() == 1);
  CHECK(store->hosts_with_key(HostKeyMode::name, "db1").empty());

  // Every query of the registration and poll paths is served by an index.
  const auto plans = store->query_plans();
  if (backend == "sqlite" || backend == "postgresql") CHECK(plans.size() >= 9);
  for (const auto& p : plans) {
    INFO(p.name << ":\n" << p.plan);
    CHECK_FALSE(p.plan.empty());
    CHECK_FALSE(p.full_scan);
  }
}
