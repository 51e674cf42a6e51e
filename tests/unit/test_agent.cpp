// The agent's parts on their own (services/agent/): the shared context, the link's durable
// reports and journal without a parent, the record of installs, and file collection's checks
// before anything is sent. The agent as a process is tested in tests/integration.
#include "services/agent/collection.h"
#include "services/agent/install.h"
#include "services/agent/orders.h"

#include "harness.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <functional>

using namespace distrib;
using namespace distrib::test;
using distrib::agent::Context;
using distrib::agent::FileCollector;
using distrib::agent::InstalledSet;
using distrib::agent::Link;

namespace {
AgentSettings settings_in(const stdfs::path& dir) {
  AgentSettings s;
  s.state_dir = dir;
  s.parents = {"http://127.0.0.1:9"};
  return s;
}

ErrorKind kind_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.kind();
  }
  FAIL("no error thrown");
  return ErrorKind::internal;
}
}  // namespace

TEST_CASE("the agent's context needs a parent, prepares the state directory and keeps its host id",
          "[agent]") {
  TempDir dir;
  auto none = settings_in(dir.path());
  none.parents.clear();
  CHECK(kind_of([&] { Context ctx(none); }) == ErrorKind::invalid_argument);

  std::string id;
  {
    Context ctx(settings_in(dir / "state"));
    id = ctx.host_id;
    CHECK(is_valid_host_id(id));
    CHECK(stdfs::is_directory(ctx.outbox_dir()));
    CHECK(stdfs::is_directory(dir / "state" / "entries"));
    CHECK(ctx.http == nullptr);
    CHECK_FALSE(ctx.registered);
  }
  Context again(settings_in(dir / "state"));
  CHECK(again.host_id == id);
}

TEST_CASE("the agent abandons an entry at a stop, or at the end of the stop phase", "[agent]") {
  TempDir dir;
  Context ctx(settings_in(dir.path()));
  CHECK_FALSE(ctx.abandoning());
  ctx.request_stop();
  CHECK(ctx.abandoning());
  ctx.in_stop_phase = true;
  ctx.stop_deadline = std::chrono::steady_clock::now() + 1h;
  CHECK_FALSE(ctx.abandoning());
  ctx.stop_deadline = std::chrono::steady_clock::now() - 1s;
  CHECK(ctx.abandoning());
  // Stopping: a sleep returns at once.
  const auto before = std::chrono::steady_clock::now();
  ctx.sleep_ms(60'000);
  CHECK(std::chrono::steady_clock::now() - before < 30s);
}

TEST_CASE("without a parent a report stays in the outbox, numbered after every queued one", "[agent]") {
  TempDir dir;
  Context ctx(settings_in(dir.path()));
  std::ofstream(ctx.outbox_dir() / "0000000000000041.json") << "{}";
  stdfs::create_directories(dir / "entries" / "default");  // made at registration
  Link link(ctx);
  CHECK(kind_of([&] { link.call("GET", "/v1/agent/work", nullptr); }) == ErrorKind::unavailable);

  link.report(7, 2, EntryState::transferring, "segment 1 of 2");
  CHECK(stdfs::exists(ctx.outbox_dir() / "0000000000000042.json"));
  CHECK(fs::read_file(dir / "seq") == "43");
  CHECK(link.journal_state(7, 2) == EntryState::transferring);
  CHECK_FALSE(link.journal_state(7, 1));  // another attempt
  CHECK_FALSE(link.journal_state(8, 2));

  // A restart numbers on from the seq file.
  Link later(ctx);
  later.report(7, 2, EntryState::transferred);
  CHECK(stdfs::exists(ctx.outbox_dir() / "0000000000000043.json"));
}

TEST_CASE("the record of installs reads as empty when missing or unreadable", "[agent]") {
  TempDir dir;
  CHECK(InstalledSet::load(dir.path()).all().empty());
  std::ofstream(dir / "installed.json") << "not json";
  CHECK(InstalledSet::load(dir.path()).all().empty());
  // The older form, keyed by payload digest, reads as packages whose files are not known.
  std::ofstream(dir / "installed.json") << R"({"abc":{"name":"app","version":"1.0","directory":"/nowhere"}})";
  auto set = InstalledSet::load(dir.path());
  REQUIRE(set.find("app", "1.0") != nullptr);
  CHECK(set.find("app", "1.0")->payload_digest == "abc");
  CHECK_FALSE(set.find("app", "1.0")->files_known);
  CHECK(distrib::agent::check_installed(*set.find("app", "1.0")) == "/nowhere is missing");
}

TEST_CASE("file collection refuses before sending: no allowlist, or a file outside it", "[agent]") {
  TempDir dir;
  stdfs::create_directories(dir / "allowed");
  stdfs::create_directories(dir / "secret");
  std::ofstream(dir / "allowed" / "a.log") << "a";
  std::ofstream(dir / "secret" / "b.key") << "b";
  const auto item = [&](std::vector<std::string> paths) {
    boost::json::array a;
    for (auto& p : paths) a.emplace_back(p);
    return boost::json::object{{"job_id", 5}, {"collect", boost::json::object{{"paths", a}}}};
  };

  auto s = settings_in(dir / "state");
  {
    Context ctx(s);
    Link link(ctx);
    FileCollector files(ctx, link);
    CHECK(kind_of([&] { files.collect_files(item({(dir / "allowed" / "a.log").string()}), 1, 1); }) ==
          ErrorKind::forbidden);
  }
  s.collect_allow = {(dir / "allowed").string()};
  Context ctx(s);
  Link link(ctx);
  FileCollector files(ctx, link);
  CHECK(kind_of([&] {
          files.collect_files(
              item({(dir / "allowed" / "*.log").string(), (dir / "secret" / "b.key").string()}), 1, 1);
        }) == ErrorKind::forbidden);
  CHECK(kind_of([&] { files.collect_files(item({(dir / "allowed" / "*.txt").string()}), 1, 1); }) ==
        ErrorKind::not_found);
  CHECK(kind_of([&] {
          files.collect_files(boost::json::object{{"job_id", 5}}, 1, 1);
        }) == ErrorKind::invalid_argument);
  CHECK_FALSE(stdfs::exists(ctx.outbox_dir() / "0000000000000001.json"));  // nothing reported
}

TEST_CASE("orders carried out are remembered by the top's entry and attempt, and dropped once expired",
          "[agent]") {
  TempDir dir;
  Context ctx(settings_in(dir.path()));
  distrib::agent::OrderCheck orders(ctx);
  security::Order o;
  o.entry = 42;
  o.attempt = 2;
  o.expires = distrib::fs::now_unix() + 3600;
  CHECK_FALSE(orders.carried_out(o));
  orders.remember(o, EntryState::succeeded);
  CHECK(orders.carried_out(o) == EntryState::succeeded);
  auto retry = o;
  retry.attempt = 3;  // a retry is a new order
  CHECK_FALSE(orders.carried_out(retry));
  auto old = o;
  old.entry = 7;
  old.expires = 1000;
  orders.remember(old, EntryState::failed);
  write_file(dir.path() / "orders" / "junk.json", "not json");
  CHECK(orders.prune(distrib::fs::now_unix()) == 2);  // the expired one and the unreadable one
  CHECK_FALSE(orders.carried_out(old));
  CHECK(orders.carried_out(o) == EntryState::succeeded);
}
