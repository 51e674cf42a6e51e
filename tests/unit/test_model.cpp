#include <distrib/error.h>
#include <distrib/model/group.h>
#include <distrib/model/host.h>
#include <distrib/model/job.h>
#include <distrib/model/package.h>
#include <distrib/model/units.h>

#include <model/json_codec.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <ctime>
#include <random>
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
  std::vector<Host> hosts = {host(kA, "web1", {"10.0.0.1", "192.168.1.1"}), host(kB, "Web2", {"10.0.0.2"}),
                             host(kC, "db1", {"10.0.0.3"})};
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
      {S::waiting, S::transferring},     {S::waiting, S::succeeded},
      {S::waiting, S::failed},           {S::waiting, S::cancelled},
      {S::waiting, S::expired},          {S::waiting, S::suspended},
      {S::transferring, S::transferred}, {S::transferring, S::waiting},
      {S::transferring, S::suspended},   {S::transferring, S::succeeded},
      {S::transferring, S::failed},      {S::transferring, S::cancelled},
      {S::transferring, S::expired},     {S::transferred, S::installing},
      {S::transferred, S::succeeded},    {S::transferred, S::failed},
      {S::transferred, S::cancelled},    {S::transferred, S::expired},
      {S::installing, S::succeeded},     {S::installing, S::failed},
      {S::suspended, S::transferring},   {S::suspended, S::waiting},
      {S::suspended, S::cancelled},      {S::suspended, S::expired},
      {S::waiting, S::not_applicable},   {S::transferring, S::not_applicable},
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
  CHECK(checked == 100);
  for (auto s : {S::succeeded, S::failed, S::cancelled, S::expired, S::not_applicable}) CHECK(is_final(s));
  CHECK(is_success(S::not_applicable));
  CHECK_FALSE(is_success(S::failed));
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

  // Resolution through the tree's other links, as the kernel would.
  using Links = std::vector<std::pair<std::string, std::string>>;
  CHECK(first_escaping_symlink({}).empty());
  CHECK(first_escaping_symlink(Links{{"a/up", ".."}, {"b", "a/up/a"}, {"bin/sh", "../lib/x"}}).empty());
  CHECK(first_escaping_symlink(Links{{"a/up", ".."}, {"esc", "a/up/.."}}) == "esc");
  CHECK(first_escaping_symlink(Links{{"a/up", ".."}, {"esc2", "a/up/../.."}}) == "esc2");
  CHECK(first_escaping_symlink(Links{{"a/b/up", "../.."}, {"x", "a/b/up/a/b/up/.."}}) == "x");
  CHECK(first_escaping_symlink(Links{{"l1", "l2"}, {"l2", "l1"}}) == "l1");  // a loop
  CHECK(first_escaping_symlink(Links{{"self", "self/x"}}) == "self");
  CHECK(first_escaping_symlink(Links{{"d/", "."}, {"x", "d/d/d/file"}}).empty());
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

TEST_CASE("install timings parse and print", "[model]") {
  for (auto t :
       {InstallTiming::immediate, InstallTiming::at_start, InstallTiming::at_stop, InstallTiming::window})
    CHECK(parse_install_timing(to_string(t)) == t);
  CHECK(to_string(InstallTiming::at_start) == "at-start");
  CHECK(to_string(InstallTiming::at_stop) == "at-stop");
  CHECK(parse_install_timing("window") == InstallTiming::window);
  CHECK_THROWS_WITH(parse_install_timing("at_start"), Catch::Contains("expected immediate, at-start"));
  CHECK_THROWS_AS(parse_install_timing(""), Error);
}

TEST_CASE("daily windows parse, print and may wrap past midnight", "[model]") {
  SECTION("a window within one day") {
    auto w = parse_daily_window("08:00-17:30");
    CHECK(w.start_minute == 8 * 60);
    CHECK(w.end_minute == 17 * 60 + 30);
    CHECK(to_string(w) == "08:00-17:30");
    CHECK(w.contains(8 * 60));
    CHECK(w.contains(12 * 60));
    CHECK_FALSE(w.contains(17 * 60 + 30));  // the end is not inside
    CHECK_FALSE(w.contains(7 * 60 + 59));
    CHECK_FALSE(w.contains(23 * 60));
  }
  SECTION("a window that wraps past midnight") {
    auto w = parse_daily_window("22:00-05:30");
    CHECK(w.start_minute == 22 * 60);
    CHECK(w.end_minute == 5 * 60 + 30);
    CHECK(to_string(w) == "22:00-05:30");
    CHECK(w.contains(22 * 60));
    CHECK(w.contains(23 * 60 + 59));
    CHECK(w.contains(0));
    CHECK(w.contains(5 * 60 + 29));
    CHECK_FALSE(w.contains(5 * 60 + 30));
    CHECK_FALSE(w.contains(12 * 60));
    CHECK_FALSE(w.contains(21 * 60 + 59));
  }
  SECTION("bad texts are refused, naming the text") {
    for (auto bad : {"25:00-01:00", "abc", "", "10:60-11:00", "10:00-11:00x", "10:00", "24:30-01:00"}) {
      INFO(bad);
      CHECK_THROWS_WITH(parse_daily_window(bad), Catch::Contains("is not HH:MM-HH:MM"));
    }
    CHECK_THROWS_WITH(parse_daily_window("25:00-01:00"), Catch::Contains("\"25:00-01:00\""));
    CHECK_THROWS_WITH(parse_daily_window("10:00-10:00"), Catch::Contains("is empty"));
  }
}

TEST_CASE("schedules that cannot work are refused", "[model]") {
  const std::int64_t now = 1'000'000;
  JobSchedule s;
  validate_schedule(s, now);  // nothing set: fine
  SECTION("a start and expiry in the right order are accepted") {
    s.start_at = now + 60;
    s.expires_at = now + 3600;
    CHECK_NOTHROW(validate_schedule(s, now));
    s.start_at = now - 60;  // a start in the past only means "now"
    CHECK_NOTHROW(validate_schedule(s, now));
  }
  SECTION("a start after the expiry is refused") {
    s.start_at = now + 7200;
    s.expires_at = now + 3600;
    CHECK_THROWS_WITH(validate_schedule(s, now), Catch::Contains("is not before the expiry"));
    s.start_at = s.expires_at;
    CHECK_THROWS_WITH(validate_schedule(s, now), Catch::Contains("is not before the expiry"));
  }
  SECTION("an expiry in the past is refused") {
    s.expires_at = now - 1;
    CHECK_THROWS_WITH(validate_schedule(s, now), Catch::Contains("already past"));
    s.expires_at = now;
    CHECK_THROWS_WITH(validate_schedule(s, now), Catch::Contains("already past"));
  }
  SECTION("retries, backoff and windows are checked") {
    s.max_retries = -1;
    CHECK_THROWS_WITH(validate_schedule(s, now), Catch::Contains("retries"));
    s.max_retries = 3;
    s.retry_backoff_seconds = 0;
    CHECK_THROWS_WITH(validate_schedule(s, now), Catch::Contains("backoff"));
    s.retry_backoff_seconds = 30;
    s.timing = InstallTiming::window;
    CHECK_THROWS_WITH(validate_schedule(s, now), Catch::Contains("needs a window"));
    s.window = parse_daily_window("22:00-05:30");
    CHECK_NOTHROW(validate_schedule(s, now));
  }
}

TEST_CASE("retry delays double from the backoff and stop at one hour", "[model]") {
  JobSchedule s;
  s.retry_backoff_seconds = 30;
  CHECK(retry_delay(s, 2) == 30);
  CHECK(retry_delay(s, 3) == 60);
  CHECK(retry_delay(s, 4) == 120);
  CHECK(retry_delay(s, 5) == 240);
  CHECK(retry_delay(s, 8) == 1920);
  CHECK(retry_delay(s, 9) == 3600);  // 3840 capped
  CHECK(retry_delay(s, 100) == 3600);
  s.retry_backoff_seconds = 3000;
  CHECK(retry_delay(s, 2) == 3000);
  CHECK(retry_delay(s, 3) == 3600);
  s.retry_backoff_seconds = 7200;  // even the first retry waits at most an hour
  CHECK(retry_delay(s, 2) == 3600);
}

TEST_CASE("rollout waves are increasing percentages ending at 100", "[model]") {
  CHECK(parse_waves("5,25,100") == std::vector<int>{5, 25, 100});
  CHECK(parse_waves("100") == std::vector<int>{100});
  CHECK(parse_waves("10%,100%") == std::vector<int>{10, 100});
  CHECK_THROWS_WITH(parse_waves("50,20"), Catch::Contains("increasing"));
  CHECK_THROWS_WITH(parse_waves("5,25"), Catch::Contains("last wave must be 100"));
  CHECK_THROWS_WITH(parse_waves("0,100"), Catch::Contains("increasing"));
  CHECK_THROWS_WITH(parse_waves("25,25,100"), Catch::Contains("increasing"));
  CHECK_THROWS_WITH(parse_waves("5,150"), Catch::Contains("between 1 and 100"));
  for (auto bad : {"a,b", "", "5,,100", "5x,100"}) {
    INFO(bad);
    CHECK_THROWS_WITH(parse_waves(bad), Catch::Contains("must be percentages"));
  }
  Rollout r;
  r.waves = {50, 100};
  r.success_threshold = 101;
  CHECK_THROWS_WITH(validate_rollout(r), Catch::Contains("thresholds"));
}

TEST_CASE("hosts are assigned to waves by cumulative share", "[model]") {
  auto count = [](const std::vector<int>& v, int wave) { return std::count(v.begin(), v.end(), wave); };
  SECTION("10 hosts in 20, 60, 100") {
    auto v = assign_waves(10, {20, 60, 100});
    REQUIRE(v.size() == 10);
    CHECK(count(v, 1) == 2);
    CHECK(count(v, 2) == 4);
    CHECK(count(v, 3) == 4);
    CHECK(v == std::vector<int>{1, 1, 2, 2, 2, 2, 3, 3, 3, 3});  // in the order given
  }
  SECTION("200 hosts in 5, 25, 100") {
    auto v = assign_waves(200, {5, 25, 100});
    CHECK(count(v, 1) == 10);
    CHECK(count(v, 2) == 40);
    CHECK(count(v, 3) == 150);
    CHECK(std::is_sorted(v.begin(), v.end()));
  }
  SECTION("a single host goes out in the first wave") {
    CHECK(assign_waves(1, {5, 25, 100}) == std::vector<int>{1});
  }
  SECTION("few hosts: every wave gets one while hosts remain") {
    CHECK(assign_waves(3, {5, 25, 100}) == std::vector<int>{1, 2, 3});
    CHECK(assign_waves(2, {5, 25, 100}) == std::vector<int>{1, 2});
  }
  SECTION("no hosts, or no waves") {
    CHECK(assign_waves(0, {5, 25, 100}).empty());
    CHECK(assign_waves(3, {}) == std::vector<int>{1, 1, 1});
  }
}

namespace {
WaveCounts counts(int wave, std::int64_t total, std::int64_t succeeded, std::int64_t failed,
                  std::int64_t final_count) {
  WaveCounts w;
  w.wave = wave;
  w.total = total;
  w.succeeded = succeeded;
  w.failed = failed;
  w.final_count = final_count;
  return w;
}
}  // namespace

TEST_CASE("a rollout advances, waits or stops by its thresholds", "[model]") {
  using A = RolloutVerdict::Action;
  Rollout r;
  r.waves = {20, 60, 100};
  r.success_threshold = 90;
  r.error_threshold = 10;
  SECTION("advance once the wave's success share reaches the threshold") {
    auto v = evaluate_rollout(r, 1, {counts(1, 2, 2, 0, 2), counts(2, 4, 0, 0, 0), counts(3, 4, 0, 0, 0)});
    CHECK(v.action == A::advance);
    // Exactly at the threshold, with the rest still running.
    v = evaluate_rollout(r, 1, {counts(1, 10, 9, 0, 9), counts(2, 20, 0, 0, 0)});
    CHECK(v.action == A::advance);
  }
  SECTION("wait while the wave is under way") {
    auto v = evaluate_rollout(r, 1, {counts(1, 10, 5, 0, 5), counts(2, 20, 0, 0, 0)});
    CHECK(v.action == A::wait);
    CHECK(v.reason.empty());
    // Failures at (not above) the error threshold do not stop it.
    v = evaluate_rollout(r, 2, {counts(1, 10, 10, 0, 10), counts(2, 10, 1, 2, 3)});
    CHECK(v.action == A::wait);
  }
  SECTION("stop when the failed share of released entries exceeds the error threshold") {
    auto v =
        evaluate_rollout(r, 2, {counts(1, 10, 10, 0, 10), counts(2, 10, 1, 3, 4), counts(3, 30, 0, 0, 0)});
    CHECK(v.action == A::stop);
    CHECK_THAT(v.reason, Catch::StartsWith("error threshold exceeded"));
    CHECK_THAT(v.reason, Catch::Contains("3 of 20"));
    // Held waves do not dilute the share: the same failures in wave 1 alone stop it too.
    v = evaluate_rollout(r, 1, {counts(1, 2, 0, 1, 1), counts(2, 4, 0, 0, 0), counts(3, 4, 0, 0, 0)});
    CHECK(v.action == A::stop);
    CHECK_THAT(v.reason, Catch::StartsWith("error threshold exceeded"));
  }
  SECTION("stop when a wave is all final below the success threshold") {
    r.error_threshold = 50;
    auto v = evaluate_rollout(r, 1, {counts(1, 10, 8, 1, 10), counts(2, 20, 0, 0, 0)});
    CHECK(v.action == A::stop);
    CHECK_THAT(v.reason, Catch::Contains("wave 1 ended with 8 of 10 succeeded"));
  }
  SECTION("an empty wave is passed over") {
    CHECK(evaluate_rollout(r, 1, {counts(2, 4, 0, 0, 0)}).action == A::advance);
  }
  SECTION("no advance past the last wave") {
    auto v = evaluate_rollout(r, 3, {counts(1, 2, 2, 0, 2), counts(2, 4, 4, 0, 4), counts(3, 4, 4, 0, 4)});
    CHECK(v.action == A::wait);
    // ... but it still stops on errors.
    v = evaluate_rollout(r, 3, {counts(1, 2, 2, 0, 2), counts(2, 4, 4, 0, 4), counts(3, 4, 0, 4, 4)});
    CHECK(v.action == A::stop);
  }
}

TEST_CASE("group names are letters, digits, dots, dashes and underscores", "[model]") {
  CHECK_NOTHROW(validate_group_name("web-servers", "host group"));
  CHECK_NOTHROW(validate_group_name("a", "host group"));
  CHECK_NOTHROW(validate_group_name("1st.floor_pcs", "ID group"));
  CHECK_NOTHROW(validate_group_name(std::string(64, 'x'), "ID group"));
  CHECK_THROWS_WITH(validate_group_name("", "host group"),
                    Catch::Contains("host group name \"\" must be 1 to 64"));
  CHECK_THROWS_WITH(validate_group_name(std::string(65, 'x'), "ID group"), Catch::Contains("1 to 64"));
  CHECK_THROWS_WITH(validate_group_name("-web", "ID group"),
                    Catch::Contains("must start with a letter or digit"));
  CHECK_THROWS_WITH(validate_group_name(".web", "ID group"),
                    Catch::Contains("must start with a letter or digit"));
  CHECK_THROWS_WITH(validate_group_name("web servers", "ID group"), Catch::Contains("may only hold"));
  CHECK_THROWS_WITH(validate_group_name("web/1", "ID group"), Catch::Contains("may only hold"));
  CHECK_THROWS_AS(validate_group_name("web;drop", "ID group"), Error);
}

TEST_CASE("descriptions are one line of at most 1024 bytes", "[model]") {
  CHECK_NOTHROW(validate_description("", "a host group's"));
  CHECK_NOTHROW(validate_description(std::string(1024, 'x'), "a host group's"));
  CHECK_NOTHROW(validate_description("tabs\tare fine, and UTF-8: \xc3\xa9", "a host group's"));
  CHECK_THROWS_WITH(validate_description(std::string(1025, 'x'), "a host group's"),
                    Catch::Contains("a host group's description is longer than 1024 bytes (1025)"));
  CHECK_THROWS_WITH(validate_description("two\nlines", "an ID group's"),
                    Catch::Contains("control characters"));
  CHECK_THROWS_AS(validate_description(std::string("nul\0", 4), "an ID group's"), Error);
}

TEST_CASE("globs match case-insensitively with stars, marks and classes", "[model]") {
  CHECK(glob_matches("web-*", "web-01"));
  CHECK(glob_matches("web-*", "WEB-01"));
  CHECK(glob_matches("WEB-*", "web-"));
  CHECK_FALSE(glob_matches("web-*", "db-01"));
  CHECK(glob_matches("*", ""));
  CHECK(glob_matches("*", "anything"));
  CHECK(glob_matches("*.example.com", "a.b.example.com"));
  CHECK_FALSE(glob_matches("*.example.com", "example.com"));
  CHECK(glob_matches("web-?", "web-1"));
  CHECK_FALSE(glob_matches("web-?", "web-12"));
  CHECK_FALSE(glob_matches("web-?", "web-"));
  CHECK(glob_matches("web[a-c]", "webb"));
  CHECK(glob_matches("web[a-c]", "webB"));
  CHECK_FALSE(glob_matches("web[a-c]", "webd"));
  CHECK(glob_matches("web[xyz]1", "webY1"));
  CHECK(glob_matches("web[!x]", "weby"));
  CHECK_FALSE(glob_matches("web[!x]", "webx"));
  CHECK_FALSE(glob_matches("web[!x]", "webX"));
  CHECK(glob_matches("*-[0-9][0-9]", "branch-pc-42"));
  CHECK_FALSE(glob_matches("*-[0-9][0-9]", "branch-pc-4x"));
  CHECK(glob_matches("", ""));
  CHECK_FALSE(glob_matches("", "x"));
  CHECK_FALSE(glob_matches("web", "web1"));  // the whole name must match
}

TEST_CASE("addresses are matched against IPv4 and IPv6 ranges", "[model]") {
  CHECK(address_in_range("10.1.2.3", "10.1.0.0/16"));
  CHECK(address_in_range("10.1.255.255", "10.1.0.0/16"));
  CHECK_FALSE(address_in_range("10.2.0.1", "10.1.0.0/16"));
  CHECK(address_in_range("10.1.2.3", "10.1.2.3"));  // a single address
  CHECK(address_in_range("10.1.2.3", "10.1.2.3/32"));
  CHECK_FALSE(address_in_range("10.1.2.4", "10.1.2.3"));
  CHECK(address_in_range("192.168.7.9", "0.0.0.0/0"));
  CHECK(address_in_range("172.16.5.4", "172.16.0.0/12"));
  CHECK_FALSE(address_in_range("172.32.0.1", "172.16.0.0/12"));
  CHECK(address_in_range("fd00:1:2:3::5", "fd00:1:2:3::/64"));
  CHECK(address_in_range("FD00:1:2:3:ffff:ffff:ffff:ffff", "fd00:1:2:3::/64"));
  CHECK_FALSE(address_in_range("fd00:1:2:4::5", "fd00:1:2:3::/64"));
  CHECK(address_in_range("fd12::1", "fd00::/8"));
  // Families do not mix.
  CHECK_FALSE(address_in_range("10.1.2.3", "fd00::/8"));
  CHECK_FALSE(address_in_range("fd00::1", "10.0.0.0/8"));
  CHECK_FALSE(address_in_range("::ffff:10.1.2.3", "10.1.0.0/16"));
  // Garbage on either side is no match.
  CHECK_FALSE(address_in_range("garbage", "10.0.0.0/8"));
  CHECK_FALSE(address_in_range("", "10.0.0.0/8"));
  CHECK_FALSE(address_in_range("10.1.2.3", "garbage"));
  CHECK_FALSE(address_in_range("10.1.2.3", "10.0.0.0/33"));
  CHECK_FALSE(address_in_range("10.1.2.3", "10.0.0.0/"));
  CHECK_FALSE(address_in_range("10.1.2.3", "10.0.0.0/x"));
  CHECK_FALSE(address_in_range("10.1.2.3", "fd00::/129"));
}

TEST_CASE("join policies match hosts by name or address", "[model]") {
  JoinPolicy by_name;
  by_name.name_pattern = "web-*";
  JoinPolicy by_range;
  by_range.ip_range = "10.1.0.0/16";
  JoinPolicy both = by_name;
  both.ip_range = "fd00::/8";
  CHECK(JoinPolicy{}.empty());
  CHECK_FALSE(by_name.empty());
  CHECK_NOTHROW(validate_join_policy(by_name));
  CHECK_NOTHROW(validate_join_policy(by_range));
  CHECK_NOTHROW(validate_join_policy(both));
  CHECK_NOTHROW(validate_join_policy(JoinPolicy{}));

  SECTION("bad ranges are refused") {
    JoinPolicy bad;
    bad.ip_range = "10.1.0.0/40";
    CHECK_THROWS_WITH(validate_join_policy(bad), Catch::Contains("is not an address or CIDR range"));
    bad.ip_range = "ten.one/16";
    CHECK_THROWS_WITH(validate_join_policy(bad), Catch::Contains("\"ten.one/16\""));
    bad.ip_range.clear();
    bad.name_pattern = std::string(256, '*');
    CHECK_THROWS_WITH(validate_join_policy(bad), Catch::Contains("longer than 255"));
  }
  SECTION("matching") {
    const auto web = host(kA, "Web-7", {"192.168.0.1"});
    const auto db = host(kB, "db1", {"192.168.0.2", "10.1.5.5"});
    const auto v6 = host(kC, "db2", {"fd00::9"});
    CHECK(policy_matches(by_name, web));
    CHECK_FALSE(policy_matches(by_name, db));
    CHECK_FALSE(policy_matches(by_range, web));
    CHECK(policy_matches(by_range, db));  // any address counts
    CHECK(policy_matches(both, web));
    CHECK(policy_matches(both, v6));
    CHECK_FALSE(policy_matches(both, db));
    CHECK_FALSE(policy_matches(JoinPolicy{}, web));  // an empty policy matches nobody
  }
}

TEST_CASE("join passwords are salted hashes checked in constant time", "[model]") {
  const auto h1 = hash_join_password("s3cret");
  const auto h2 = hash_join_password("s3cret");
  CHECK_THAT(h1, Catch::StartsWith("sha256$"));
  CHECK(h1.find("s3cret") == std::string::npos);
  CHECK(h1 != h2);  // a new salt each time
  CHECK(check_join_password("s3cret", h1));
  CHECK(check_join_password("s3cret", h2));
  CHECK_FALSE(check_join_password("S3cret", h1));
  CHECK_FALSE(check_join_password("s3cret ", h1));
  CHECK_FALSE(check_join_password("", h1));
  CHECK_FALSE(check_join_password("s3cret", ""));
  CHECK_FALSE(check_join_password("s3cret", "garbage"));
  CHECK_FALSE(check_join_password("s3cret", "sha256$nodollar"));
  CHECK_FALSE(check_join_password("s3cret", h1.substr(0, h1.size() - 1)));
  const auto empty = hash_join_password("");
  CHECK(check_join_password("", empty));
  CHECK_FALSE(check_join_password("x", empty));
}

TEST_CASE("time specs parse relative, unix and calendar forms", "[model]") {
  const std::int64_t now = 1'700'000'000;
  CHECK(parse_time_spec("+90s", now) == now + 90);
  CHECK(parse_time_spec("+90", now) == now + 90);
  CHECK(parse_time_spec("+10m", now) == now + 600);
  CHECK(parse_time_spec("+2h", now) == now + 7200);
  CHECK(parse_time_spec("+1d", now) == now + 86400);
  CHECK(parse_time_spec("@1767225600", now) == 1767225600);
  CHECK(parse_time_spec("@0", now) == 0);

  std::tm utc{};
  utc.tm_year = 2026 - 1900;
  utc.tm_mon = 11;
  utc.tm_mday = 1;
  utc.tm_hour = 22;
  const auto expected = static_cast<std::int64_t>(timegm(&utc));
  CHECK(expected == 1796162400);
  CHECK(parse_time_spec("2026-12-01T22:00:00Z", now) == expected);
  CHECK(parse_time_spec("2026-12-01T22:00:30Z", now) == expected + 30);

  // Without a zone: local time, as mktime sees it.
  std::tm local{};
  local.tm_year = 2026 - 1900;
  local.tm_mon = 11;
  local.tm_mday = 1;
  local.tm_hour = 22;
  local.tm_isdst = -1;
  const auto expected_local = static_cast<std::int64_t>(std::mktime(&local));
  CHECK(parse_time_spec("2026-12-01 22:00", now) == expected_local);
  CHECK(parse_time_spec("2026-12-01T22:00:00", now) == expected_local);

  for (auto bad :
       {"", "tomorrow", "@", "@12ab", "@-5", "2026-13-01T00:00:00Z", "2026-12-32T00:00:00Z",
        "2026-12-01T24:00:00Z", "2026-12-01T22:60:00Z", "2026-12-01X22:00", "2026-12-01T22:00:00+01",
        "2026-12-01T22:00:00Zulu", "2026-12-01T-1:00:00Z", "2026-12-01T22:-5:00Z"}) {
    INFO(bad);
    CHECK_THROWS_WITH(parse_time_spec(bad, now), Catch::Contains("is not a time"));
  }
  for (auto bad : {"+", "+5x", "+-5m", "+1.5h"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_time_spec(bad, now), Error);
  }
}

TEST_CASE("durations parse in seconds, minutes, hours and days", "[model]") {
  CHECK(parse_duration_seconds("90") == 90);
  CHECK(parse_duration_seconds("90s") == 90);
  CHECK(parse_duration_seconds("10m") == 600);
  CHECK(parse_duration_seconds("2h") == 7200);
  CHECK(parse_duration_seconds("1d") == 86400);
  CHECK(parse_duration_seconds("0") == 0);
  for (auto bad : {"", "s", "m", "-5", "5w", "1.5h", "10 m", " 10m", "9999999999", "h2"}) {
    INFO(bad);
    CHECK_THROWS_WITH(parse_duration_seconds(bad), Catch::Contains("is not a duration"));
  }
}

TEST_CASE("split specs parse SIZE/INTERVAL within the limits", "[model]") {
  auto s = parse_split("1MiB/60s");
  CHECK(s.enabled());
  CHECK(s.size == 1048576);
  CHECK(s.interval_seconds == 60);
  CHECK(to_string(s) == "1.0 MiB/60s");

  s = parse_split("256KiB/1s");
  CHECK(s.size == 256 * 1024);
  CHECK(s.interval_seconds == 1);

  CHECK_FALSE(parse_split("none").enabled());
  CHECK_FALSE(parse_split("").enabled());
  CHECK(parse_split("none") == SplitSpec{});
  CHECK(to_string(SplitSpec{}) == "none");

  // The limits themselves are accepted.
  s = parse_split("2GiB/24h");
  CHECK(s.size == kMaxSegmentSize);
  CHECK(s.size == std::uint64_t{2} << 30);
  CHECK(s.interval_seconds == kMaxSegmentInterval);
  CHECK(s.interval_seconds == 86400);
  CHECK_NOTHROW(validate_split(s));

  struct Bad {
    const char* text;
    const char* says;
  };
  for (const auto& bad :
       {Bad{"0/1s", "above 0"}, Bad{"3GiB/1s", "2 GiB"}, Bad{"1MiB/0s", "between 1 s and 24 h"},
        Bad{"1MiB/25h", "between 1 s and 24 h"}, Bad{"1MiB", "SIZE/INTERVAL"}, Bad{"abc/1s", "segment size"},
        Bad{"1MiB/xyz", "interval"}}) {
    INFO(bad.text);
    CHECK_THROWS_WITH(parse_split(bad.text), Catch::Contains(bad.says));
    try {
      parse_split(bad.text);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::invalid_argument);
    }
  }
}

TEST_CASE("split specs outside the limits fail validation", "[model]") {
  CHECK_NOTHROW(validate_split(SplitSpec{}));
  CHECK_NOTHROW(validate_split(SplitSpec{0, 0}));  // not split: the interval does not matter
  CHECK_NOTHROW(validate_split(SplitSpec{1, 1}));
  CHECK_NOTHROW(validate_split(SplitSpec{kMaxSegmentSize, kMaxSegmentInterval}));
  CHECK_THROWS_WITH(validate_split(SplitSpec{kMaxSegmentSize + 1, 60}), Catch::Contains("2 GiB"));
  CHECK_THROWS_WITH(validate_split(SplitSpec{1024, 0}), Catch::Contains("between 1 s and 24 h"));
  CHECK_THROWS_WITH(validate_split(SplitSpec{1024, -5}), Catch::Contains("between 1 s and 24 h"));
  CHECK_THROWS_WITH(validate_split(SplitSpec{1024, kMaxSegmentInterval + 1}),
                    Catch::Contains("between 1 s and 24 h"));
  try {
    validate_split(SplitSpec{1024, 0});
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::invalid_argument);
  }
}

TEST_CASE("a hop's split takes the smaller segment size with its interval", "[model]") {
  const SplitSpec small{64 * 1024, 10}, large{1024 * 1024, 300}, same_size{64 * 1024, 99}, none{};
  CHECK(hop_split(small, large) == small);
  CHECK(hop_split(large, small) == small);
  CHECK(hop_split(large, small).interval_seconds == 10);
  // Equal sizes: the receiver's (second) interval.
  CHECK(hop_split(small, same_size) == same_size);
  CHECK(hop_split(same_size, small) == small);
  // Either side unset: the other one.
  CHECK(hop_split(none, large) == large);
  CHECK(hop_split(large, none) == large);
  CHECK_FALSE(hop_split(none, none).enabled());
}

TEST_CASE("segments are whole chunks of at most the split size", "[model]") {
  SECTION("chunks are grouped up to the size") {
    const std::vector<std::uint64_t> sizes = {10, 20, 30, 40, 50};
    CHECK(plan_segments(sizes, 60) == std::vector<std::size_t>{3, 4, 5});
    CHECK(plan_segments(sizes, 30) == std::vector<std::size_t>{2, 3, 4, 5});
    CHECK(plan_segments(sizes, 1000) == std::vector<std::size_t>{5});
    CHECK(plan_segments(sizes, 150) == std::vector<std::size_t>{5});
    CHECK(plan_segments(sizes, 149) == std::vector<std::size_t>{4, 5});
  }
  SECTION("a chunk larger than the size is a segment of its own") {
    const std::vector<std::uint64_t> sizes = {5, 100, 5, 5, 200};
    CHECK(plan_segments(sizes, 10) == std::vector<std::size_t>{1, 2, 4, 5});
    CHECK(plan_segments({100}, 10) == std::vector<std::size_t>{1});
  }
  SECTION("size 0 is one segment") {
    CHECK(plan_segments({1, 2, 3}, 0) == std::vector<std::size_t>{3});
    CHECK(plan_segments({1, 2, 3}, 0, 1) == std::vector<std::size_t>{3});
  }
  SECTION("planning may start at a later chunk") {
    const std::vector<std::uint64_t> sizes = {10, 20, 30, 40, 50};
    CHECK(plan_segments(sizes, 60, 1) == std::vector<std::size_t>{3, 4, 5});
    CHECK(plan_segments(sizes, 60, 3) == std::vector<std::size_t>{4, 5});
    CHECK(plan_segments(sizes, 100, 3) == std::vector<std::size_t>{5});
    CHECK(plan_segments(sizes, 60, 5).empty());
    CHECK(plan_segments(sizes, 60, 9).empty());
  }
  SECTION("no chunks, no segments") {
    CHECK(plan_segments({}, 60).empty());
    CHECK(plan_segments({}, 0).empty());
  }
  SECTION("random chunk lists: strictly increasing ends, every segment within the size") {
    std::mt19937_64 rng(42);
    for (int round = 0; round < 200; ++round) {
      const std::size_t n = rng() % 60;
      std::vector<std::uint64_t> sizes(n);
      for (auto& c : sizes) c = 1 + rng() % 5000;
      const std::uint64_t size = rng() % 20000;
      const std::size_t from = n == 0 ? 0 : static_cast<std::size_t>(rng() % n);
      INFO("round " << round << " n " << n << " size " << size << " from " << from);
      const auto ends = plan_segments(sizes, size, from);
      if (n == 0) {
        CHECK(ends.empty());
        continue;
      }
      REQUIRE_FALSE(ends.empty());
      CHECK(ends.back() == n);
      if (size == 0) {
        CHECK(ends.size() == 1);
      }
      std::size_t begin = from;
      for (const auto end : ends) {
        REQUIRE(end > begin);
        std::uint64_t bytes = 0;
        for (std::size_t i = begin; i < end; ++i) bytes += sizes[i];
        if (size != 0) {
          if (end - begin > 1) {
            CHECK(bytes <= size);
          }
          // Greedy: the next chunk would not have fitted.
          if (end < n) {
            CHECK(bytes + sizes[end] > size);
          }
        }
        begin = end;
      }
    }
  }
}

TEST_CASE("a job's split round-trips through JSON", "[model]") {
  Job job;
  job.id = 7;
  job.package_name = "app";
  job.package_version = "1.0";
  job.destinations = {"web1"};
  job.split = parse_split("1MiB/60s");
  const auto back = json::job_from_json(json::to_json(job));
  CHECK(back.split == job.split);
  // Through text too, where sizes come back as signed integers.
  const auto text = boost::json::serialize(json::to_json(job));
  CHECK(json::job_from_json(json::parse_object(text)).split == job.split);

  job.split = {};
  CHECK(json::to_json(job).at("split").is_null());
  CHECK_FALSE(json::job_from_json(json::to_json(job)).split.enabled());

  CHECK(json::split_from_json(boost::json::value("256KiB/1s")) == SplitSpec{256 * 1024, 1});
  CHECK(json::split_from_json(boost::json::parse(R"({"size":1048576,"interval_seconds":60})")) ==
        SplitSpec{1048576, 60});
  CHECK_THROWS_WITH(json::split_from_json(boost::json::parse(R"({"size":0,"interval_seconds":1})")),
                    Catch::Contains("split.size"));
  CHECK_THROWS_WITH(json::split_from_json(boost::json::parse(R"({"size":1024,"interval_seconds":0})")),
                    Catch::Contains("split.interval_seconds"));
  CHECK_THROWS_WITH(json::split_from_json(boost::json::parse(R"({"size":3221225472,"interval_seconds":1})")),
                    Catch::Contains("2 GiB"));
  CHECK_THROWS_AS(json::split_from_json(boost::json::value(5)), Error);
}

// --- inventory ----------------------------------------------------------------------------

#include <distrib/model/inventory.h>

TEST_CASE("versions compare the way dpkg orders them", "[inventory]") {
  CHECK(compare_versions("1.0", "1.0") == 0);
  CHECK(compare_versions("1.10", "1.9") > 0);
  CHECK(compare_versions("5.2.15-2+b8", "5.2") > 0);
  CHECK(compare_versions("1.0~rc1", "1.0") < 0);  // '~' sorts before the end
  CHECK(compare_versions("1:0.9", "2.0") > 0);    // epoch wins
  CHECK(compare_versions("3.0.11-1~deb12u2", "3.0.11-1") < 0);
  CHECK(compare_versions("1.0a", "1.0") > 0);
  CHECK(compare_versions("1.0-2", "1.0-10") < 0);
  CHECK(compare_versions("2.36-9+deb12u4", "2.36-9+deb12u10") < 0);
}

TEST_CASE("inventory queries parse and evaluate", "[inventory]") {
  const auto q =
      parse_inventory_query("software.dpkg.bash >= 5.2 and system.os.version = 12 and user.site exists");
  REQUIRE(q.conditions.size() == 3);
  CHECK(q.conditions[0].op == InventoryCondition::Op::ge);
  CHECK(q.conditions[1].value == "12");
  CHECK(q.conditions[2].op == InventoryCondition::Op::exists);
  CHECK(to_string(parse_inventory_query(to_string(q))) == to_string(q));
  // Printed queries read back the same, whatever the values hold (found by the fuzzer: a quoted
  // value holding the other quote and a space, a line break, a leading quote).
  for (const char* text : {"user.a = '\"and system.b exists' and user.c = 1", "user.a = \"it's here\"",
                           "user.a = \"x\ny\" and user.b = 2", "user.a = \"'x\"", "user.a = ''"}) {
    INFO(text);
    const auto parsed = parse_inventory_query(text);
    const auto again = parse_inventory_query(to_string(parsed));
    REQUIRE(again.conditions.size() == parsed.conditions.size());
    for (std::size_t i = 0; i < parsed.conditions.size(); ++i)
      CHECK(again.conditions[i].value == parsed.conditions[i].value);
  }

  InventoryItems items{{"software.dpkg.bash", "5.2.15-2+b8"},
                       {"system.os.version", "12"},
                       {"system.disk./.free_bytes", "5368709120"},
                       {"system.disk./home.free_bytes", "53687091200"},
                       {"user.site", "tokyo"}};
  CHECK(query_matches(q, items));
  CHECK(query_matches(parse_inventory_query("system.disk.*.free_bytes < 10GiB"), items));  // any disk
  CHECK_FALSE(query_matches(parse_inventory_query("system.disk./home.free_bytes < 10GiB"), items));
  CHECK(query_matches(parse_inventory_query("software.dpkg.nginx missing"), items));
  CHECK_FALSE(query_matches(parse_inventory_query("software.dpkg.bash missing"), items));
  CHECK(query_matches(parse_inventory_query("user.site = 'tok*'"), items));
  CHECK(query_matches(parse_inventory_query("user.site != osaka"), items));
  CHECK_FALSE(query_matches(parse_inventory_query("software.dpkg.bash < 5.2"), items));
  CHECK(query_matches(parse_inventory_query("system.os.version > 9"), items));  // numbers, not text
  CHECK(query_matches(parse_inventory_query(R"(user.site = "tokyo")"), items));
}

TEST_CASE("malformed inventory queries name what was expected", "[inventory]") {
  auto message = [](const std::string& text) {
    try {
      parse_inventory_query(text);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::invalid_argument);
      return std::string(e.what());
    }
    FAIL("no error for " << text);
    return std::string();
  };
  CHECK(message("").find("empty query") != std::string::npos);
  CHECK(message("software.dpkg.bash >").find("expected a value") != std::string::npos);
  CHECK(message("bash >= 5").find("under system., software. or user.") != std::string::npos);
  CHECK(message("system.os.version ~ 12").find("an operator") != std::string::npos);
  CHECK(message("system.os.version = 12 or user.a = b").find("\"and\"") != std::string::npos);
  CHECK(message("system.os.version = 12 and").find("a condition after") != std::string::npos);
  CHECK(message("user.a = 'open").find("closing") != std::string::npos);
}

TEST_CASE("inventory diffs leave volatile values out", "[inventory]") {
  InventoryItems before{{"system.os.version", "11"},
                        {"system.disk./.free_bytes", "100"},
                        {"software.dpkg.a", "1"},
                        {"software.dpkg.gone", "1"}};
  InventoryItems after{{"system.os.version", "12"},
                       {"system.disk./.free_bytes", "50"},
                       {"software.dpkg.a", "1"},
                       {"software.dpkg.new", "2"}};
  const auto all = diff_inventory(before, after, InventoryScope::full);
  REQUIRE(all.size() == 3);
  CHECK(all[0].key == "software.dpkg.gone");
  CHECK(all[0].kind == InventoryChange::Kind::removed);
  CHECK(all[1].key == "software.dpkg.new");
  CHECK(all[1].kind == InventoryChange::Kind::added);
  CHECK(all[2].key == "system.os.version");
  CHECK(all[2].old_value == "11");
  CHECK(all[2].new_value == "12");
  // A software report says nothing about system items.
  CHECK(diff_inventory(before, after, InventoryScope::software).size() == 2);
  // Digests ignore volatile values and items of other scopes.
  auto moved = before;
  moved["system.disk./.free_bytes"] = "1";
  moved["system.uptime_seconds"] = "5";
  CHECK(inventory_digest(moved) == inventory_digest(before));
  CHECK(inventory_digest(after, InventoryScope::system) != inventory_digest(before, InventoryScope::system));
  moved["software.dpkg.a"] = "2";
  CHECK(inventory_digest(moved, InventoryScope::system) == inventory_digest(before, InventoryScope::system));
}

TEST_CASE("inventory keys, fields and assignments are checked", "[inventory]") {
  CHECK_NOTHROW(validate_inventory_key("system.disk./var/lib.free_bytes"));
  CHECK_THROWS_AS(validate_inventory_key("os.version"), Error);
  CHECK_THROWS_AS(validate_inventory_key("user."), Error);
  CHECK_THROWS_AS(validate_inventory_key(std::string("user.a\nb")), Error);

  InventoryField site{"site", InventoryFieldType::choice, {"tokyo", "osaka"}, ""};
  CHECK_NOTHROW(validate_inventory_field(site));
  CHECK_NOTHROW(check_field_value(site, "osaka"));
  CHECK_THROWS_WITH(check_field_value(site, "nagoya"), Catch::Contains("one of: tokyo, osaka"));
  CHECK_THROWS_AS(validate_inventory_field({"site", InventoryFieldType::choice, {}, ""}), Error);
  CHECK_THROWS_AS(validate_inventory_field({"bad name", InventoryFieldType::text, {}, ""}), Error);
  InventoryField rack{"rack", InventoryFieldType::number, {}, ""};
  CHECK_NOTHROW(check_field_value(rack, "12.5"));
  CHECK_THROWS_WITH(check_field_value(rack, "twelve"), Catch::Contains("not a number"));

  const auto a = parse_assignments("# comment\n site = tokyo \n\nrack=12\n", "test");
  CHECK(a.at("site") == "tokyo");
  CHECK(a.at("rack") == "12");
  CHECK_THROWS_WITH(parse_assignments("site\n", "file.conf"), Catch::Contains("file.conf line 1"));
}

TEST_CASE("collect-files specifications are checked", "[inventory]") {
  CollectSpec c;
  CHECK_THROWS_WITH(validate_collect(c), Catch::Contains("at least one path"));
  c.paths = {"var/log/*.log"};
  CHECK_THROWS_WITH(validate_collect(c), Catch::Contains("not absolute"));
  c.paths = {"/var/log/../../etc/shadow"};
  CHECK_THROWS_WITH(validate_collect(c), Catch::Contains(".."));
  c.paths = {"/var/log/*.log"};
  CHECK_NOTHROW(validate_collect(c));
  c.max_file_bytes = 0;
  CHECK_THROWS_WITH(validate_collect(c), Catch::Contains("per-file limit"));
  c.max_file_bytes = 2 * c.max_total_bytes;
  CHECK_THROWS_AS(validate_collect(c), Error);
  CHECK(parse_job_type("collect-files") == JobType::collect_files);
  CHECK(targets_agents(JobType::get_system_info));
  CHECK_FALSE(needs_package(JobType::get_software_info));
  CHECK_FALSE(targets_agents(JobType::transfer_to_relay));
  // The collect specification travels with the job.
  Job j;
  j.type = JobType::collect_files;
  j.destinations = {"web1"};
  j.collect.paths = {"/var/log/*.log"};
  j.collect.max_file_bytes = 1024;
  const auto back = json::job_from_json(json::to_json(j));
  CHECK(back.collect == j.collect);
  CHECK(back.package_name.empty());
}
