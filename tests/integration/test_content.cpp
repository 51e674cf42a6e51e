// Content that heals and the content model beyond "install", on real processes: corrupt chunks at
// the manager and at a relay, the scrub online and offline, repair and force, uninstall, detection
// (check commands) and the agent's chunk cache limit.
#include "ctl_json.h"
#include "harness.h"

#include <distrib/net/http.h>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <set>
#include <thread>

using namespace distrib::test;
namespace bj = boost::json;

namespace {

// A directory with `kib` KiB of random bytes (seeded: the same seed gives the same bytes).
stdfs::path random_dir(const TempDir& tmp, const std::string& name, int kib, std::uint64_t seed) {
  const auto dir = tmp / ("src-" + name);
  stdfs::create_directories(dir);
  std::mt19937_64 rng(seed);
  std::string data(static_cast<std::size_t>(kib) << 10, '\0');
  for (std::size_t i = 0; i + 8 <= data.size(); i += 8) {
    const auto x = rng();
    std::memcpy(&data[i], &x, 8);
  }
  write_file(dir / "data.bin", data);
  write_file(dir / "conf/app.conf", "setting = 1\n");
  return dir;
}

void create_package(const ManagerProc& m, const stdfs::path& dir, const std::string& name,
                    const std::string& version, std::vector<std::string> more = {}) {
  std::vector<std::string> args = {"package",   "create", dir.string(),   "--name", name,
                                   "--version", version,  "--chunk-size", "16KiB"};
  args.insert(args.end(), more.begin(), more.end());
  auto r = m.ctl(args, true);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
}

// The chunk files a server holds (its quarantine left out).
std::vector<stdfs::path> chunk_files(const stdfs::path& state_dir) {
  std::vector<stdfs::path> out;
  for (const auto& e : stdfs::recursive_directory_iterator(state_dir / "chunks"))
    if (e.is_regular_file() && e.path().extension() == ".zst" &&
        e.path().parent_path().filename().string().size() == 2)
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::uint64_t bytes_under(const stdfs::path& dir) {
  std::uint64_t total = 0;
  for (const auto& f : chunk_files(dir)) total += stdfs::file_size(f);
  return total;
}

// Flips a byte in the middle of a stored chunk; returns its digest.
std::string corrupt(const stdfs::path& file) {
  auto bytes = read_file(file);
  REQUIRE(bytes.size() > 8);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x5a);
  write_file(file, bytes);
  return file.stem().string();
}

std::string entry(const std::string& show, const std::string& field) {
  return json_at(show, "/entries/0/" + field);
}

std::string metrics_of(const ManagerProc& m) {
  distrib::HttpClientSettings hs;
  hs.base_url = m.url();
  hs.ca_file = m.ca_file();
  distrib::HttpClient client(hs);
  const auto res = client.request("GET", "/metrics", "", "", read_file(m.token_file()).substr(0, 64));
  REQUIRE(res.status == 200);
  return res.body;
}

// Events of a type at `m`, newest first.
bj::array events_of(const ManagerProc& m, const std::string& type) {
  return ctl_json(m, {"events", "--type", type}).at("events").as_array();
}

std::uint64_t chunks_served_to(const ManagerProc& m, const std::string& host_id) {
  const auto stats = ctl_json(m, {"stats"});
  for (const auto& v : stats.at("content").at("by_requester").as_array())
    if (v.at("host_id").as_string() == host_id) return v.at("chunks").to_number<std::uint64_t>();
  return 0;
}

std::string install(const ManagerProc& m, std::vector<std::string> args) {
  args.insert(args.begin(), "install");
  return wait_job(m, create_job(m, args));
}

const std::vector<std::string> kRelayOpts = {"--poll-timeout", "5", "--sync-interval-ms", "200"};

}  // namespace

TEST_CASE(
    "a chunk corrupted on the manager's disk fails the job with the reason, package create repairs it "
    "and a retry succeeds without a restart",
    "[content]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "agent", m.url(), "c-host", "127.0.0.161");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 15s, 100ms));
  const auto src = random_dir(tmp, "app", 256, 1);
  create_package(m, src, "app", "1");
  const auto files = chunk_files(m.state_dir());
  REQUIRE(files.size() > 4);
  const auto bad = corrupt(files[files.size() / 2]);

  const auto id = create_job(m, {"install", "app", "1", "c-host"});
  auto out = wait_job(m, id);
  CHECK(entry(out, "state") == "failed");
  const auto message = entry(out, "message");
  INFO(message);
  // The reason comes before any digest, so a table cut at 60 characters still shows it.
  CHECK(message.rfind("source copy missing or corrupt at the parent: chunk ", 0) == 0);
  CHECK(message.find("upload the package again") != std::string::npos);
  CHECK(m.ctl({"job", "show", id}).out.find("source copy missing or corrupt") != std::string::npos);
  // Moved aside, counted and told.
  CHECK(stdfs::exists(m.state_dir() / "chunks/quarantine" / (bad + ".zst.bad")));
  CHECK_FALSE(stdfs::exists(files[files.size() / 2]));
  const auto corrupt_events = events_of(m, "content.corrupt");
  REQUIRE(corrupt_events.size() == 1);
  CHECK(corrupt_events[0].at("subject").as_string() == bad);
  const auto metrics = metrics_of(m);
  CHECK(metrics.find("distrib_content_verification_failures_total{tier=\"manager\",peer=\"store\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find("distrib_content_quarantined_total 1\n") != std::string::npos);

  // The packager sees it missing, uploads it once; a retry then installs.
  auto again = m.ctl(
      {"package", "create", src.string(), "--name", "app", "--version", "1", "--chunk-size", "16KiB"}, true);
  INFO(again.err);
  REQUIRE(again.exit_code == 0);
  CHECK(json_at(again.out, "/chunks_uploaded") == "1");
  REQUIRE(m.ctl({"job", "retry", id}).exit_code == 0);
  out = wait_job(m, id);
  CHECK(entry(out, "state") == "succeeded");
  CHECK(read_file(tmp / "agent/packages/app/1/data.bin") == read_file(src / "data.bin"));

  SECTION("a copy corrupted after it was served from memory is found when the packager asks") {
    // The memory cache holds verified bytes; package create checks the disk's copy again.
    const auto victim = chunk_files(m.state_dir()).front();
    const auto digest = corrupt(victim);
    auto third =
        m.ctl({"package", "create", src.string(), "--name", "app", "--version", "1", "--chunk-size", "16KiB"},
              true);
    REQUIRE(third.exit_code == 0);
    CHECK(json_at(third.out, "/chunks_uploaded") == "1");
    CHECK(stdfs::exists(m.state_dir() / "chunks/quarantine" / (digest + ".zst.bad")));
    CHECK(read_file(victim) != "");
  }
}

TEST_CASE("a chunk corrupted in a relay's cache is fetched again from the parent and the install succeeds",
          "[content]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  // No memory cache at the relay: the second install reads the relay's disk (a chunk served from
  // memory is one that was verified when it was read).
  std::vector<std::string> ropts = {"--parent", m.url(), "--host-name", "c-relay", "--memory-cache", "0"};
  ropts.insert(ropts.end(), kRelayOpts.begin(), kRelayOpts.end());
  ManagerProc relay(tmp / "relay", ropts, "127.0.0.162");
  AgentProc a1(tmp / "a1", relay.url(), "c-leaf1", "127.0.0.163");
  AgentProc a2(tmp / "a2", relay.url(), "c-leaf2", "127.0.0.164");
  REQUIRE(wait_until([&] { return host_count(m) == 3; }, 30s, 200ms));
  const auto src = random_dir(tmp, "rapp", 256, 2);
  create_package(m, src, "rapp", "1");
  CHECK(entry(install(m, {"rapp", "1", "c-leaf1"}), "state") == "succeeded");
  const auto cached = chunk_files(relay.state_dir());
  REQUIRE(cached.size() > 4);
  const auto bad = corrupt(cached[1]);

  const auto out = install(m, {"rapp", "1", "c-leaf2"});
  INFO(out << relay.log());
  CHECK(entry(out, "state") == "succeeded");
  CHECK(read_file(tmp / "a2/packages/rapp/1/data.bin") == read_file(src / "data.bin"));
  CHECK(read_file(cached[1]) != "");  // fetched again: whole and verified
  const auto events = events_of(relay, "content.corrupt");
  REQUIRE(events.size() == 1);
  CHECK(events[0].at("subject").as_string() == bad);
  CHECK(std::string(events[0].at("message").as_string()).find("fetching it again from the parent") !=
        std::string::npos);
  CHECK(metrics_of(relay).find(
            "distrib_content_verification_failures_total{tier=\"relay\",peer=\"store\"} 1\n") !=
        std::string::npos);

  // Force and uninstall travel through the relay like any job (force is signed into the order).
  auto forced = install(m, {"rapp", "1", "c-leaf1", "--force"});
  CHECK(entry(forced, "state") == "succeeded");
  CHECK(entry(forced, "message").find("forced") != std::string::npos);
  auto removed = wait_job(m, create_job(m, {"uninstall", "rapp", "1", "c-leaf1"}));
  CHECK(entry(removed, "state") == "succeeded");
  CHECK_FALSE(stdfs::exists(tmp / "a1/packages/rapp/1"));

  SECTION("the scrub on the relay finds exactly what was planted, and --repair fetches it again") {
    std::set<std::string> planted;
    const auto now = chunk_files(relay.state_dir());
    for (std::size_t i = 0; i < now.size(); i += 3) planted.insert(corrupt(now[i]));
    auto r = relay.ctl({"content", "verify", "--repair"}, true);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 1);  // something was bad
    const auto o = bj::parse(r.out).as_object();
    std::set<std::string> found;
    for (const auto& d : o.at("bad").as_array()) found.insert(std::string(d.as_string()));
    CHECK(found == planted);
    CHECK(o.at("repaired").as_int64() == static_cast<std::int64_t>(planted.size()));
    CHECK(o.at("chunks_checked").as_int64() == static_cast<std::int64_t>(now.size()));
    // Repaired: a second scrub finds nothing, and every file is back.
    auto second = relay.ctl({"content", "verify"}, true);
    INFO(second.out);
    CHECK(second.exit_code == 0);
    CHECK(json_at(second.out, "/bad_count") == "0");
    CHECK(chunk_files(relay.state_dir()).size() == now.size());
  }
}

TEST_CASE(
    "the scrub at the manager names the bad chunks and the packages to upload again, online and offline",
    "[content]") {
  TempDir tmp;
  auto m = std::make_unique<ManagerProc>(tmp / "manager");
  const auto src = random_dir(tmp, "sapp", 200, 3);
  create_package(*m, src, "sapp", "1");
  create_package(*m, random_dir(tmp, "other", 64, 4), "other", "1");
  auto clean = m->ctl({"content", "verify"});
  INFO(clean.out << clean.err);
  CHECK(clean.exit_code == 0);
  CHECK(clean.out.find("0 bad") != std::string::npos);

  // Only chunks of sapp: the other package stays whole.
  std::set<std::string> other_chunks;
  const auto other = ctl_json(*m, {"package", "show", "other", "1"});
  for (const auto& c : other.at("chunks").as_array())
    other_chunks.insert(std::string(c.at("digest").as_string()));
  std::set<std::string> planted;
  for (const auto& f : chunk_files(m->state_dir()))
    if (!other_chunks.count(f.stem().string()) && planted.size() < 2) planted.insert(corrupt(f));
  REQUIRE(planted.size() == 2);
  auto r = m->ctl({"content", "verify", "--rate", "unlimited"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("2 bad") != std::string::npos);
  for (const auto& d : planted) CHECK(r.out.find(d) != std::string::npos);
  CHECK(r.out.find("sapp") != std::string::npos);
  CHECK(r.out.find("other") == std::string::npos);
  CHECK(r.out.find("package create again") != std::string::npos);
  const auto status_run = m->ctl({"content", "verify", "--status"}, true);
  CHECK(status_run.exit_code == 1);  // the last verification found problems
  const auto status = bj::parse(status_run.out).as_object();
  REQUIRE(status.at("packages").as_array().size() == 1);
  CHECK(status.at("packages").as_array()[0].at("missing_count").as_int64() == 2);

  // Offline, with the manager stopped: the same finding (the bad copies are in the quarantine
  // now, so the package lacks them), and one more corrupted file is caught.
  const auto extra = corrupt(chunk_files(m->state_dir()).front());
  m->stop();
  const auto verify_offline = [&] {
    return run(
        {distribd_path(), "--role", "manager", "--state-dir", (tmp / "manager").string(), "--verify-store"},
        60s);
  };
  const auto offline = verify_offline();
  INFO(offline.out << offline.err);
  CHECK(offline.exit_code == 1);
  CHECK(offline.out.find("1 bad") != std::string::npos);
  CHECK(offline.err.find(extra) != std::string::npos);
  CHECK(offline.out.find("package sapp 1: ") != std::string::npos);
  // The packager repairs everything; the offline scrub then finds the store whole.
  m = std::make_unique<ManagerProc>(tmp / "manager");
  create_package(*m, src, "sapp", "1");
  create_package(*m, random_dir(tmp, "other", 64, 4), "other", "1");
  m->stop();
  const auto whole = verify_offline();
  INFO(whole.out << whole.err);
  CHECK(whole.exit_code == 0);
  CHECK(whole.out.find("0 bad") != std::string::npos);
}

TEST_CASE("an agent that receives bad chunks counts them, also when it fails, and tells its parent",
          "[content]") {
  TempDir tmp;
  // The manager corrupts every chunk it sends (fault injection): the copies it holds are good.
  ::setenv("DISTRIB_FAULT_CORRUPT_CHUNKS", "1000", 1);
  ManagerProc m(tmp / "manager");
  ::unsetenv("DISTRIB_FAULT_CORRUPT_CHUNKS");
  AgentProc a(tmp / "agent", m.url(), "c-wire", "127.0.0.165");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 15s, 100ms));
  create_package(m, random_dir(tmp, "wapp", 64, 5), "wapp", "1");
  const auto out = install(m, {"wapp", "1", "c-wire"});
  INFO(out);
  CHECK(entry(out, "state") == "failed");
  CHECK(entry(out, "message").rfind("source copy is bad: chunk ", 0) == 0);
  CHECK(std::stoi(entry(out, "progress/bad_chunks")) >= 3);
  // The parent verified its copy again at the agent's word: good, nothing quarantined.
  REQUIRE(wait_until([&] { return m.log().find("reported") != std::string::npos; }, 10s, 100ms));
  CHECK(m.log().find(" good, 0 bad") != std::string::npos);
  CHECK_FALSE(stdfs::exists(m.state_dir() / "chunks/quarantine"));
  const auto metrics = metrics_of(m);
  INFO(metrics);
  CHECK(metrics.find("distrib_content_verification_failures_total{tier=\"agent\",peer=\"c-wire\"} ") !=
        std::string::npos);
}

TEST_CASE("installed is decided per package and by its files: missing files come back, --force reinstalls",
          "[content]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "agent", m.url(), "c-repair", "127.0.0.166");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 15s, 100ms));
  const auto runs = tmp / "runs.log";
  const auto src = random_dir(tmp, "fix", 64, 6);
  const auto cmd = "echo run >> " + runs.string();
  create_package(m, src, "fix", "1", {"--install-command", cmd});
  const auto dir = tmp / "agent/packages/fix/1";
  const auto count_runs = [&] {
    std::error_code ec;
    if (!stdfs::exists(runs, ec)) return 0L;
    const auto text = read_file(runs);
    return static_cast<long>(std::count(text.begin(), text.end(), '\n'));
  };

  CHECK(entry(install(m, {"fix", "1", "c-repair"}), "state") == "succeeded");
  CHECK(count_runs() == 1);
  auto out = install(m, {"fix", "1", "c-repair"});
  CHECK(entry(out, "message").find("already installed") != std::string::npos);
  CHECK(count_runs() == 1);

  // Files deleted or changed: installed again.
  stdfs::remove(dir / "data.bin");
  write_file(dir / "conf/app.conf", "setting = 2\n");
  out = install(m, {"fix", "1", "c-repair"});
  INFO(out);
  CHECK(entry(out, "state") == "succeeded");
  CHECK(entry(out, "message").find("installed in") != std::string::npos);
  CHECK(read_file(dir / "data.bin") == read_file(src / "data.bin"));
  CHECK(read_file(dir / "conf/app.conf") == "setting = 1\n");
  CHECK(count_runs() == 2);

  // --force: the command runs again on an intact install.
  out = install(m, {"fix", "1", "c-repair", "--force"});
  CHECK(entry(out, "state") == "succeeded");
  CHECK(entry(out, "message").find("forced") != std::string::npos);
  CHECK(count_runs() == 3);

  // Two packages made from one directory share a payload digest; the second is still installed.
  create_package(m, src, "fix-hotfix", "1", {"--install-command", cmd});
  out = install(m, {"fix-hotfix", "1", "c-repair"});
  CHECK(entry(out, "state") == "succeeded");
  CHECK(read_file(tmp / "agent/packages/fix-hotfix/1/data.bin") == read_file(src / "data.bin"));
  CHECK(count_runs() == 4);
}

TEST_CASE("uninstall runs its command, removes the files and the inventory follows", "[content]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "agent", m.url(), "c-un", "127.0.0.167", {"--inventory-check", "1"});
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 15s, 100ms));
  const auto marker = tmp / "uninstalled.marker";
  create_package(m, random_dir(tmp, "gone", 32, 7), "gone", "2",
                 {"--uninstall-command", "echo \"bye $DISTRIB_PACKAGE_NAME\" > " + marker.string()});
  CHECK(entry(install(m, {"gone", "2", "c-un"}), "state") == "succeeded");
  const auto dir = tmp / "agent/packages/gone/2";
  REQUIRE(stdfs::exists(dir / "data.bin"));
  const auto item = [&] {
    auto r = m.ctl({"inventory", "show", "c-un"}, true);
    if (r.exit_code != 0) return std::string("<none>");
    const auto inv = bj::parse(r.out);
    const auto& items = inv.at("items").as_object();
    auto it = items.find("software.distrib.gone");
    return it == items.end() ? std::string("<missing>") : std::string(it->value().as_string());
  };
  REQUIRE(wait_until([&] { return item() == "2"; }, 30s, 200ms));

  auto out = wait_job(m, create_job(m, {"uninstall", "gone", "2", "c-un"}));
  INFO(out);
  CHECK(entry(out, "state") == "succeeded");
  CHECK(entry(out, "message").find("uninstalled") != std::string::npos);
  CHECK(entry(out, "exit_code") == "0");
  CHECK(read_file(marker) == "bye gone\n");
  CHECK_FALSE(stdfs::exists(dir));
  CHECK(wait_until([&] { return item() == "<missing>"; }, 30s, 200ms));

  out = wait_job(m, create_job(m, {"uninstall", "gone", "2", "c-un"}));
  CHECK(entry(out, "state") == "succeeded");
  CHECK(entry(out, "message").find("not installed") != std::string::npos);
}

TEST_CASE(
    "a check command that exits 0 leaves the entry not applicable and fetches nothing, non-zero installs",
    "[content]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "agent", m.url(), "c-check", "127.0.0.168");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 15s, 100ms));
  const auto present = tmp / "present";
  create_package(m, random_dir(tmp, "det", 64, 8), "det", "1",
                 {"--check-command", "test -e " + present.string()});
  write_file(present, "yes\n");
  const auto host = id_by_name(m, "c-check");
  auto out = install(m, {"det", "1", "c-check", "--waves", "100"});
  INFO(out);
  CHECK(entry(out, "state") == "not_applicable");
  CHECK(entry(out, "message").find("already satisfied") != std::string::npos);
  CHECK(entry(out, "progress/bytes_received") == "0");
  CHECK(json_at(out, "/progress/not_applicable") == "1");
  CHECK(chunks_served_to(m, host) == 0);
  CHECK_FALSE(stdfs::exists(tmp / "agent/packages/det"));
  CHECK(m.ctl({"job", "show", json_at(out, "/job/id"), "--wait"}).exit_code == 0);  // counted as success
  CHECK(events_of(m, "entry.not_applicable").size() == 1);
  CHECK(events_of(m, "job.completed").size() == 1);

  stdfs::remove(present);
  out = install(m, {"det", "1", "c-check"});
  CHECK(entry(out, "state") == "succeeded");
  CHECK(chunks_served_to(m, host) > 0);
  CHECK(stdfs::exists(tmp / "agent/packages/det/1/data.bin"));
}

TEST_CASE("the agent's chunk cache stays under its limit over three versions of a package", "[content]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  const auto limit = 1200u * 1024;
  AgentProc a(tmp / "agent", m.url(), "c-cache", "127.0.0.169", {"--chunk-cache-limit", "1200KiB"});
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 15s, 100ms));
  const auto target = tmp / "opt/cached-app";
  for (int v = 1; v <= 3; ++v) {
    const auto version = std::to_string(v);
    create_package(m, random_dir(tmp, "cache-v" + version, 700, 100 + static_cast<std::uint64_t>(v)), "capp",
                   version, {"--install-dir", target.string()});
    const auto out = install(m, {"capp", version, "c-cache"});
    INFO(out);
    REQUIRE(entry(out, "state") == "succeeded");
    const auto held = bytes_under(tmp / "agent");
    INFO("version " << v << ": " << held << " bytes of chunks held");
    CHECK(held <= limit);
    CHECK(held >= 700u * 1024);  // the installed version's chunks stay for repairs
  }
  // The installed version is intact and repairable without fetching (its chunks are held).
  CHECK(read_file(target / "data.bin") == read_file(tmp / "src-cache-v3/data.bin"));
}

TEST_CASE(
    "bad input: unknown packages, hanging check commands, force where it does not apply, hostile reports",
    "[content]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "agent", m.url(), "c-bad", "127.0.0.170");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 15s, 100ms));

  auto unknown = m.ctl({"job", "create", "uninstall", "nosuch", "1", "c-bad"});
  CHECK(unknown.exit_code == 4);
  CHECK(unknown.err.find("does not exist") != std::string::npos);
  auto forced = m.ctl({"job", "create", "uninstall", "nosuch", "1", "c-bad", "--force"});
  CHECK(forced.exit_code == 2);
  CHECK(forced.err.find("--force goes with install jobs") != std::string::npos);

  create_package(m, random_dir(tmp, "hang", 16, 9), "hang", "1",
                 {"--check-command", "sleep 60", "--install-timeout", "2"});
  const auto t0 = std::chrono::steady_clock::now();
  const auto out = install(m, {"hang", "1", "c-bad"});
  INFO(out);
  CHECK(entry(out, "state") == "failed");
  CHECK(entry(out, "message") == "check command timed out after 2 s (killed)");
  CHECK(std::chrono::steady_clock::now() - t0 < 30s);
  CHECK_FALSE(stdfs::exists(tmp / "agent/packages/hang"));

  distrib::HttpClientSettings hs;
  hs.base_url = m.url();
  hs.ca_file = m.ca_file();
  distrib::HttpClient admin(hs);
  const auto token = read_file(m.token_file()).substr(0, 64);
  const auto jobs_before = ctl_json(m, {"job", "list"}).at("jobs").as_array().size();
  auto res =
      admin.request("POST", "/v1/jobs", R"({"type":"get-system-info","destinations":["c-bad"],"force":true})",
                    "application/json", token);
  CHECK(res.status == 400);
  CHECK(res.body.find("force applies to install jobs only") != std::string::npos);
  res = admin.request("POST", "/v1/jobs",
                      R"({"type":"install","package":{"name":"hang","version":"1"},)"
                      R"("destinations":["c-bad"],"force":"yes"})",
                      "application/json", token);
  CHECK(res.status == 400);
  CHECK(res.body.find("force") != std::string::npos);
  CHECK(ctl_json(m, {"job", "list"}).at("jobs").as_array().size() == jobs_before);
  res = admin.request("POST", "/v1/content/verify", R"({"rate":"1KiB"})", "application/json", token);
  CHECK(res.status == 400);
  CHECK(res.body.find("rate must be between") != std::string::npos);
  // --no-wait answers at once; the scrub's result is there afterwards.
  CHECK(m.ctl({"content", "verify", "--no-wait"}).exit_code == 0);
  CHECK(wait_until(
      [&] {
        return json_at(m.ctl({"content", "verify", "--status"}, true).out, "/running") == "false";
      },
      30s, 100ms));

  // The agent's chunk cache limit: a size above 0, and an agent option only.
  for (const auto& [args, says] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--role", "agent", "--chunk-cache-limit", "0"}, "must be above 0"},
           {{"--role", "agent", "--chunk-cache-limit", "lots"}, "is not a size"},
           {{"--role", "manager", "--chunk-cache-limit", "1GiB"}, "is an agent option"}}) {
    std::vector<std::string> argv = {distribd_path(), "--state-dir",         (tmp / "cfg").string(),
                                     "--server",      "https://127.0.0.1:1", "--check-config"};
    argv.insert(argv.end(), args.begin(), args.end());
    if (args[1] == "manager") argv.erase(argv.begin() + 3, argv.begin() + 5);  // no --server for a manager
    const auto r = run(argv, 10s);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(says) != std::string::npos);
  }

  // Reports of bad chunks come from enrolled hosts, with at most 64 well-formed digests.
  const auto h = enrol_test_host(m, tmp / "reporter", "c-reporter");
  const auto post = [&](const std::string& body, const std::vector<std::string>& who) {
    std::vector<std::string> args = {"curl", "-s", "-w", "\n%{http_code}"};
    args.insert(args.end(), who.begin(), who.end());
    for (const auto& x : {"-H", "Content-Type: application/json", "--data-binary"}) args.emplace_back(x);
    args.push_back(body);
    args.push_back(m.url() + "/v1/content/bad-chunks");
    return run(args, 10s).out;
  };
  CHECK(post(R"({"digests":["abc"]})", {"--cacert", m.ca_file()}).ends_with("401"));
  auto answer = post(R"({"digests":["not-a-digest"]})", h.curl());
  CHECK(answer.ends_with("400"));
  CHECK(answer.find("is not a chunk digest") != std::string::npos);
  bj::array many;
  for (int i = 0; i < 65; ++i) many.emplace_back(std::string(64, 'a'));
  answer = post(bj::serialize(bj::object{{"digests", many}}), h.curl());
  CHECK(answer.ends_with("400"));
  CHECK(answer.find("between 1 and 64") != std::string::npos);
  // A well-formed report of a chunk this server does not hold changes nothing.
  answer = post(R"({"digests":[")" + std::string(64, 'b') + R"("]})", h.curl());
  CHECK(answer.ends_with("200"));
  CHECK(answer.find("\"skipped\":[\"" + std::string(64, 'b')) != std::string::npos);
}
