#include <distrib/error.h>
#include <distrib/model/host.h>
#include <distrib/model/job.h>
#include <distrib/model/units.h>
#include <distrib/model/package.h>

#include <catch2/catch.hpp>

#include <set>

using namespace distrib;

namespace {
Host host(std::string id, std::string name, std::vector<std::string> addrs) {
  Host h;
  h.host_id = std::move(id);
  h.name = std::move(name);
  h.addresses = std::move(addrs);
  return h;
}
const std::string kA = "11111111-1111-4111-8111-111111111111";
const std::string kB = "22222222-2222-4222-8222-222222222222";
const std::string kC = "33333333-3333-4333-8333-333333333333";
}  // namespace

TEST_CASE("host key modes parse and print", "[model]") {
  CHECK(parse_host_key_mode("name") == HostKeyMode::name);
  CHECK(parse_host_key_mode("ip") == HostKeyMode::ip);
  CHECK(parse_host_key_mode("host-id") == HostKeyMode::host_id);
  CHECK(to_string(HostKeyMode::host_id) == "host-id");
  CHECK_THROWS_WITH(parse_host_key_mode("mac"), Catch::Contains("expected name, ip or host-id"));
}

TEST_CASE("host identifiers are version 4 UUIDs", "[model]") {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    auto id = make_host_id();
    CHECK(is_valid_host_id(id));
    CHECK(id[14] == '4');
    CHECK(std::string("89ab").find(id[19]) != std::string::npos);
    seen.insert(id);
  }
  CHECK(seen.size() == 200);
  CHECK_FALSE(is_valid_host_id("not-a-uuid"));
  CHECK_FALSE(is_valid_host_id("11111111-1111-4111-8111-11111111111G"));
  CHECK_FALSE(is_valid_host_id("11111111111141118111111111111111"));
}

TEST_CASE("destinations resolve by the configured key", "[model]") {
  std::vector<Host> hosts = {host(kA, "web1", {"10.0.0.1", "192.168.1.1"}),
                             host(kB, "Web2", {"10.0.0.2"}), host(kC, "db1", {"10.0.0.3"})};
  SECTION("by name, case-insensitive, overlapping keys give one entry per host") {
    auto r = resolve_destinations(hosts, HostKeyMode::name, {"web1", "WEB2", "web1"});
    CHECK(r.ok());
    CHECK(r.host_ids == std::vector<std::string>{kA, kB});
  }
  SECTION("by ip, any address matches") {
    auto r = resolve_destinations(hosts, HostKeyMode::ip, {"192.168.1.1", "10.0.0.3"});
    CHECK(r.host_ids == std::vector<std::string>{kA, kC});
  }
  SECTION("by host id") {
    auto r = resolve_destinations(hosts, HostKeyMode::host_id, {kB});
    CHECK(r.host_ids == std::vector<std::string>{kB});
  }
  SECTION("unknown keys are reported, not dropped") {
    auto r = resolve_destinations(hosts, HostKeyMode::name, {"web1", "nosuch"});
    CHECK_FALSE(r.ok());
    CHECK(r.unknown == std::vector<std::string>{"nosuch"});
  }
  SECTION("a key claimed by two hosts is ambiguous and a duplicate") {
    hosts.push_back(host("44444444-4444-4444-8444-444444444444", "web1", {"10.0.0.9"}));
    auto r = resolve_destinations(hosts, HostKeyMode::name, {"web1"});
    CHECK(r.ambiguous == std::vector<std::string>{"web1"});
    CHECK(duplicate_keys(hosts, HostKeyMode::name) == std::vector<std::string>{"web1"});
    CHECK(duplicate_keys(hosts, HostKeyMode::host_id).empty());
  }
}

TEST_CASE("every entry state transition is allowed or refused as specified", "[model]") {
  using S = EntryState;
  const std::set<std::pair<S, S>> allowed = {
      {S::waiting, S::transferring},   {S::waiting, S::succeeded},     {S::waiting, S::failed},
      {S::waiting, S::cancelled},      {S::waiting, S::expired},       {S::waiting, S::suspended},
      {S::transferring, S::transferred}, {S::transferring, S::waiting}, {S::transferring, S::suspended},
      {S::transferring, S::succeeded}, {S::transferring, S::failed},   {S::transferring, S::cancelled},
      {S::transferring, S::expired},   {S::transferred, S::installing}, {S::transferred, S::succeeded},
      {S::transferred, S::failed},     {S::transferred, S::cancelled}, {S::transferred, S::expired},
      {S::installing, S::succeeded},   {S::installing, S::failed},     {S::suspended, S::transferring},
      {S::suspended, S::waiting},      {S::suspended, S::cancelled},   {S::suspended, S::expired},
  };
  int checked = 0;
  for (auto from : kAllEntryStates) {
    for (auto to : kAllEntryStates) {
      const bool expect = allowed.count({from, to}) > 0;
      INFO(to_string(from) << " -> " << to_string(to));
      CHECK(can_transition(from, to) == expect);
      if (expect) {
        CHECK(transition(from, to) == to);
      } else {
        CHECK_THROWS_AS(transition(from, to), Error);
      }
      ++checked;
    }
  }
  CHECK(checked == 81);
  for (auto s : {S::succeeded, S::failed, S::cancelled, S::expired}) CHECK(is_final(s));
  for (auto s : {S::waiting, S::transferring, S::transferred, S::installing, S::suspended})
    CHECK_FALSE(is_final(s));
}

TEST_CASE("a relay's batched reports may skip states, never go back", "[model]") {
  using S = EntryState;
  CHECK(can_reach(S::waiting, S::installing));
  CHECK(can_reach(S::waiting, S::succeeded));
  CHECK(can_reach(S::transferring, S::installing));
  CHECK(can_reach(S::suspended, S::succeeded));
  CHECK_FALSE(can_reach(S::installing, S::waiting));
  CHECK_FALSE(can_reach(S::installing, S::cancelled));
  CHECK_FALSE(can_reach(S::succeeded, S::failed));
  for (auto s : kAllEntryStates)
    if (is_final(s)) CHECK_FALSE(can_reach(s, s));
  // Everything one step allows, several steps allow too.
  for (auto from : kAllEntryStates)
    for (auto to : kAllEntryStates)
      if (can_transition(from, to)) CHECK(can_reach(from, to));
}

TEST_CASE("the parent path follows parents to the top and stops at cycles", "[model]") {
  auto h = [](std::string id, std::string parent) {
    Host x;
    x.host_id = std::move(id);
    x.parent = std::move(parent);
    return x;
  };
  std::vector<Host> hosts = {h("agent", "relay2"), h("relay2", "relay1"), h("relay1", ""),
                             h("loop-a", "loop-b"), h("loop-b", "loop-a")};
  CHECK(parent_path(hosts, "agent") == std::vector<std::string>{"agent", "relay2", "relay1"});
  CHECK(parent_path(hosts, "relay1") == std::vector<std::string>{"relay1"});
  CHECK(parent_path(hosts, "loop-a") == std::vector<std::string>{"loop-a", "loop-b"});
  CHECK(parent_path(hosts, "ghost") == std::vector<std::string>{"ghost"});
}

TEST_CASE("byte sizes parse with binary units", "[model]") {
  CHECK(parse_byte_size("1048576") == 1048576);
  CHECK(parse_byte_size("512KiB") == 512 * 1024);
  CHECK(parse_byte_size("100 MiB") == 100ull << 20);
  CHECK(parse_byte_size("10GiB") == 10ull << 30);
  CHECK(parse_byte_size("2g") == 2ull << 30);
  CHECK(parse_byte_size("1TB") == 1ull << 40);
  for (auto bad : {"", "MiB", "10 parsecs", "-5", "99999999999999999999", "20000000TiB"})
    CHECK_THROWS_WITH(parse_byte_size(bad), Catch::Contains("is not a size"));
  CHECK(format_byte_size(17) == "17 B");
  CHECK(format_byte_size(3ull << 29) == "1.5 GiB");
}

TEST_CASE("job types parse by name", "[model]") {
  for (auto t : {JobType::install, JobType::transfer_to_relay, JobType::delete_package})
    CHECK(parse_job_type(to_string(t)) == t);
  CHECK_THROWS_WITH(parse_job_type("reboot"), Catch::Contains("transfer-to-relay"));
}

TEST_CASE("entry states parse by name", "[model]") {
  for (auto s : kAllEntryStates) CHECK(parse_entry_state(to_string(s)) == s);
  CHECK_THROWS_WITH(parse_entry_state("done"), Catch::Contains("known: waiting"));
}

TEST_CASE("job progress counts entries by state", "[model]") {
  std::vector<JobEntry> entries(4);
  entries[0].state = EntryState::succeeded;
  entries[1].state = EntryState::failed;
  entries[2].state = EntryState::installing;
  entries[3].state = EntryState::succeeded;
  auto p = summarize(entries);
  CHECK(p.total == 4);
  CHECK(p.final_count == 3);
  CHECK(p.count(EntryState::succeeded) == 2);
  CHECK_FALSE(p.done());
}

TEST_CASE("package names, versions and paths are validated", "[model]") {
  CHECK(is_valid_package_name("hello-app_2.x+y"));
  CHECK_FALSE(is_valid_package_name(""));
  CHECK_FALSE(is_valid_package_name("-x"));
  CHECK_FALSE(is_valid_package_name("a/b"));
  CHECK(is_valid_package_version("1.0.0~rc1"));
  CHECK_FALSE(is_valid_package_version("1 0"));

  CHECK(is_safe_relative_path("bin/hello"));
  CHECK(is_safe_relative_path("dir/"));
  CHECK_FALSE(is_safe_relative_path("/etc/passwd"));
  CHECK_FALSE(is_safe_relative_path("../x"));
  CHECK_FALSE(is_safe_relative_path("a/../../x"));
  CHECK_FALSE(is_safe_relative_path("a//b"));
  CHECK_FALSE(is_safe_relative_path("./a"));
  CHECK_FALSE(is_safe_relative_path("a\\b"));

  CHECK(is_contained_symlink("share/link", "../bin/hello"));
  CHECK(is_contained_symlink("link", "bin/hello"));
  CHECK_FALSE(is_contained_symlink("link", "../outside"));
  CHECK_FALSE(is_contained_symlink("share/link", "../../outside"));
  CHECK_FALSE(is_contained_symlink("link", "/etc/passwd"));
}

TEST_CASE("manifests round-trip through JSON and are validated", "[model]") {
  Manifest m;
  m.name = "app";
  m.version = "1.2.0";
  m.payload_digest = std::string(64, 'a');
  m.payload_size = 10;
  m.chunks = {{std::string(64, 'b'), 4}, {std::string(64, 'c'), 6}};
  m.files = {{"bin/app", 10, std::string(64, 'd'), 0755, "file", ""},
             {"bin", 0, "", 0755, "dir", ""},
             {"link", 0, "", 0777, "symlink", "bin/app"}};
  m.install.command = "./setup.sh";
  m.install.directory = "/opt/app";
  m.install.timeout_seconds = 42;
  validate_manifest(m);
  auto back = manifest_from_json(manifest_to_json(m));
  CHECK(back.name == m.name);
  CHECK(back.chunks.size() == 2);
  CHECK(back.chunks[1].size == 6);
  CHECK(back.files[2].link_target == "bin/app");
  CHECK(back.install.timeout_seconds == 42);
  CHECK(manifest_to_json(back) == manifest_to_json(m));

  SECTION("chunk sizes must add up") {
    m.payload_size = 11;
    CHECK_THROWS_WITH(validate_manifest(m), Catch::Contains("do not add up"));
  }
  SECTION("unsafe paths are refused") {
    m.files[0].path = "../../etc/cron.d/x";
    CHECK_THROWS_WITH(validate_manifest(m), Catch::Contains("unsafe path"));
  }
  SECTION("escaping symlinks are refused") {
    m.files[2].link_target = "../../etc";
    CHECK_THROWS_WITH(validate_manifest(m), Catch::Contains("points outside"));
  }
  SECTION("relative install directories are refused") {
    m.install.directory = "opt/app";
    CHECK_THROWS_WITH(validate_manifest(m), Catch::Contains("absolute"));
  }
  SECTION("malformed JSON is a clear error") {
    CHECK_THROWS_WITH(manifest_from_json("{\"name\": "), Catch::Contains("malformed JSON"));
    CHECK_THROWS_WITH(manifest_from_json("{\"name\": 3}"), Catch::Contains("\"name\" must be a string"));
  }
}
