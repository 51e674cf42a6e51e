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
    Job job;
    job.package_name = "app";
    job.package_version = "1.0";
    job.destinations = {"web1", "web2"};
    job.key_mode = "name";
    auto created = store->create_job(job, {kA, kB});
    CHECK(created.id > 0);
    auto entries = store->job_entries(created.id);
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].host_name == "web1");
    CHECK(entries[0].state == EntryState::waiting);
    CHECK(store->open_entries_for_host(kA).size() == 1);
    CHECK(store->hosts_with_open_entries().size() == 2);

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
