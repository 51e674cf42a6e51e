// Split distribution and the transfer engine on real processes: segments and pauses, resume
// after a kill, suspend/resume below a relay, cross-version dedup, verification and refetch,
// admission and rate limits, and bad input.
#include "ctl_json.h"
#include "harness.h"
#include "test_identity.h"

#include <distrib/net/http.h>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <thread>

using namespace distrib::test;
namespace bj = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data(n, '\0');
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    const auto x = rng();
    std::memcpy(&data[i], &x, 8);
  }
  return data;
}

// Registers a package whose payload is `data` (incompressible when random).
void make_package(const ManagerProc& m, const TempDir& tmp, const std::string& name,
                  const std::string& version, const std::string& data) {
  const auto dir = tmp / ("src-" + name + "-" + version);
  stdfs::create_directories(dir);
  write_file(dir / "payload.bin", data);
  auto r = m.ctl({"package", "create", dir.string(), "--name", name, "--version", version});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

// Raw sizes of a package's chunks, in payload order.
std::vector<std::uint64_t> chunk_sizes(const ManagerProc& m, const std::string& name,
                                       const std::string& version) {
  std::vector<std::uint64_t> out;
  const auto manifest = ctl_json(m, {"package", "show", name, version});
  for (const auto& c : manifest.at("chunks").as_array())
    out.push_back(c.at("size").to_number<std::uint64_t>());
  return out;
}

// Segments of whole chunks of at most `size` bytes (a larger chunk alone), counted independently
// of the library.
std::size_t expected_segments(const std::vector<std::uint64_t>& sizes, std::uint64_t size) {
  std::size_t n = 0;
  std::uint64_t fill = 0;
  for (auto s : sizes) {
    if (fill == 0 || fill + s > size) {
      ++n;
      fill = s;
    } else {
      fill += s;
    }
  }
  return n;
}

bj::object job_show(const ManagerProc& m, const std::string& job) {
  return ctl_json(m, {"job", "show", job});
}

bj::object first_entry(const bj::object& show) {
  return show.at("entries").as_array().at(0).as_object();
}

std::int64_t progress_of(const bj::object& entry, const char* field) {
  return entry.at("progress").at(field).as_int64();
}

// Bytes (compressed, as sent) and chunks served by `m` to `requester`.
std::pair<std::uint64_t, std::uint64_t> served_to(const ManagerProc& m, const std::string& requester) {
  const auto stats = ctl_json(m, {"stats"});
  for (const auto& v : stats.at("content").at("by_requester").as_array())
    if (v.at("host_id").as_string() == requester)
      return {v.at("bytes").to_number<std::uint64_t>(), v.at("chunks").to_number<std::uint64_t>()};
  return {0, 0};
}

std::string host_id_of(const stdfs::path& state_dir) {
  return read_file(state_dir / "host-id").substr(0, 36);
}

}  // namespace

TEST_CASE("a job split 256KiB/1s delivers segment by segment with the pauses between segments", "[split]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  AgentProc a(tmp / "pc1", m.url(), "pc1", "127.0.0.41");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 20s));
  make_package(m, tmp, "app", "1", random_bytes(1200 * 1024, 1));
  const auto total = expected_segments(chunk_sizes(m, "app", "1"), 256 * 1024);
  REQUIRE(total >= 5);

  const auto created = ctl_json(m, {"job", "create", "install", "app", "1", "pc1", "--split", "256KiB/1s"});
  INFO(bj::serialize(created));
  CHECK(created.at("job").at("split").at("size").as_int64() == 256 * 1024);
  const auto job = std::to_string(created.at("job").at("id").as_int64());
  // Record when each segment count is first seen.
  std::vector<std::pair<std::int64_t, Clock::time_point>> seen;
  std::string state;
  const auto start = Clock::now();
  while (Clock::now() - start < 60s) {
    const auto e = first_entry(job_show(m, job));
    state = std::string(e.at("state").as_string());
    const auto done = progress_of(e, "segments_done");
    if (seen.empty() || seen.back().first != done) seen.emplace_back(done, Clock::now());
    if (state == "succeeded" || state == "failed") break;
    std::this_thread::sleep_for(50ms);
  }
  INFO(a.log());
  REQUIRE(state == "succeeded");
  const auto e = first_entry(job_show(m, job));
  CHECK(progress_of(e, "segments_total") == static_cast<std::int64_t>(total));
  CHECK(progress_of(e, "segments_done") == static_cast<std::int64_t>(total));
  // Progress moved one segment at a time, and a pause of about the interval separates them.
  std::vector<std::pair<std::int64_t, Clock::time_point>> moving;
  for (const auto& s : seen)
    if (s.first > 0) moving.push_back(s);
  REQUIRE(moving.size() >= total - 1);
  for (std::size_t i = 1; i < moving.size(); ++i) {
    INFO("segment " << moving[i].first);
    CHECK(moving[i].first == moving[i - 1].first + 1);
    CHECK(moving[i].second - moving[i - 1].second >= 800ms);
  }
  CHECK(moving.back().second - moving.front().second >= std::chrono::milliseconds(900 * (moving.size() - 1)));
  // The table shows the segments too.
  auto table = m.ctl({"job", "show", job});
  CHECK(table.out.find("SEGMENTS") != std::string::npos);
  CHECK(table.out.find(std::to_string(total) + "/" + std::to_string(total)) != std::string::npos);
  CHECK(table.out.find("split distribution: segments of 256.0 KiB/1s") != std::string::npos);
}

TEST_CASE("at each hop the smaller segment size wins: a relay's and an agent's own split limits", "[split]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  // The relay allows segments of 192 KiB every 1 s; pc-small allows only 64 KiB, pc-large 1 MiB.
  ManagerProc r(tmp / "relay1",
                {"--parent", m.url(), "--host-name", "relay1", "--poll-timeout", "5", "--sync-interval-ms",
                 "200", "--split-max", "192KiB/1s"},
                "127.0.0.50");
  AgentProc small(tmp / "pc-small", r.url(), "pc-small", "127.0.0.51", {"--split-max", "64KiB/1s"});
  AgentProc large(tmp / "pc-large", r.url(), "pc-large", "127.0.0.52", {"--split-max", "1MiB/1s"});
  REQUIRE(wait_until([&] { return host_count(m) == 3; }, 20s));
  make_package(m, tmp, "app", "1", random_bytes(400 * 1024, 10));
  const auto sizes = chunk_sizes(m, "app", "1");
  const auto shown = wait_job(
      m, create_job(m, {"install", "app", "1", "pc-small", "pc-large", "--split", "256KiB/1s"}), 90s);
  INFO(small.log() << large.log());
  REQUIRE(all_succeeded(shown));
  std::map<std::string, std::int64_t> segments;
  const auto answer = bj::parse(shown);
  for (const auto& v : answer.at("entries").as_array())
    segments[std::string(v.at("host_name").as_string())] = progress_of(v.as_object(), "segments_total");
  // Job 256 KiB → relay offers 192 KiB; pc-small's 64 KiB is smaller; pc-large keeps 192 KiB.
  CHECK(segments["pc-small"] == static_cast<std::int64_t>(expected_segments(sizes, 64 * 1024)));
  CHECK(segments["pc-large"] == static_cast<std::int64_t>(expected_segments(sizes, 192 * 1024)));
  CHECK(segments["pc-small"] > segments["pc-large"]);
}

TEST_CASE("an agent killed mid-transfer and restarted fetches only the missing chunks", "[split]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  AgentProc a(tmp / "pc1", m.url(), "pc1", "127.0.0.42");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 20s));
  const std::size_t size = 2 * 1024 * 1024;
  make_package(m, tmp, "big", "1", random_bytes(size, 2));
  const auto job = create_job(m, {"install", "big", "1", "pc1", "--split", "256KiB/1s"});
  REQUIRE(wait_until([&] { return progress_of(first_entry(job_show(m, job)), "segments_done") >= 3; }, 30s,
                     50ms));
  a.kill();  // SIGKILL in the middle of the transfer
  const auto me = host_id_of(a.state_dir());
  const auto [bytes_before, chunks_before] = served_to(m, me);
  CHECK(bytes_before < size);
  CHECK(bytes_before > 0);
  a.start();
  const auto shown = wait_job(m, job, 90s);
  INFO(a.log());
  REQUIRE(all_succeeded(shown));
  const auto [bytes_after, chunks_after] = served_to(m, me);
  const auto all_chunks = chunk_sizes(m, "big", "1").size();
  // Every chunk went over the wire once, plus at most the segment in flight at the kill.
  CHECK(chunks_after >= all_chunks);
  CHECK(chunks_after <= all_chunks + 24);
  CHECK(bytes_after <= size + size / 100 + 300 * 1024);
  // What the restarted run received is what was missing only.
  const auto e = first_entry(bj::parse(shown).as_object());
  CHECK(static_cast<std::uint64_t>(progress_of(e, "bytes_received")) <= bytes_after - bytes_before);
  CHECK(static_cast<std::uint64_t>(progress_of(e, "bytes_received")) < size - 500 * 1024);
}

TEST_CASE("suspend stops transfers below a relay and resume continues them", "[split]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  ManagerProc r(
      tmp / "relay1",
      {"--parent", m.url(), "--host-name", "relay1", "--poll-timeout", "5", "--sync-interval-ms", "200"},
      "127.0.0.43");
  AgentProc a(tmp / "pc1", r.url(), "pc1", "127.0.0.44");
  REQUIRE(wait_until([&] { return host_count(m) == 2; }, 20s));
  const std::size_t size = 2 * 1024 * 1024;
  make_package(m, tmp, "big", "1", random_bytes(size, 3));
  const auto job = create_job(m, {"install", "big", "1", "pc1", "--split", "256KiB/1s"});
  REQUIRE(wait_until([&] { return progress_of(first_entry(job_show(m, job)), "segments_done") >= 2; }, 30s,
                     50ms));

  auto s = m.ctl({"transfer", "suspend", "--relay", "relay1"});
  INFO(s.err);
  REQUIRE(s.exit_code == 0);
  CHECK(s.out.find("relay relay1: 1 transfer suspended") != std::string::npos);
  REQUIRE(
      wait_until([&] { return first_entry(job_show(m, job)).at("state").as_string() == "suspended"; }, 10s));
  // The relay learns it and the agent stops between two segments.
  REQUIRE(wait_until(
      [&] {
        auto jobs = ctl_json(r, {"job", "list"}).at("jobs").as_array();
        return !jobs.empty() && jobs.at(0).at("progress").at("suspended").as_int64() == 1;
      },
      10s));
  std::this_thread::sleep_for(2500ms);  // a segment under way ends; no other starts
  const auto held = progress_of(first_entry(job_show(m, job)), "segments_done");
  const auto [bytes_held, c1] = served_to(r, host_id_of(a.state_dir()));
  std::this_thread::sleep_for(3s);
  CHECK(progress_of(first_entry(job_show(m, job)), "segments_done") == held);
  CHECK(served_to(r, host_id_of(a.state_dir())).first == bytes_held);
  CHECK(first_entry(job_show(m, job)).at("state").as_string() == "suspended");
  CHECK(held < progress_of(first_entry(job_show(m, job)), "segments_total"));

  auto res = m.ctl({"transfer", "resume", "--relay", "relay1"}, true);
  REQUIRE(res.exit_code == 0);
  CHECK(json_at(res.out, "/resumed") == "1");
  const auto shown = wait_job(m, job, 90s);
  INFO(a.log());
  CHECK(all_succeeded(shown));
  // Resumed from the chunks already held: the relay sent each chunk to the agent about once.
  CHECK(served_to(r, host_id_of(a.state_dir())).first <= size + size / 100 + 300 * 1024);

  // Suspend by job: nothing open any more, so nothing changes.
  auto none = m.ctl({"transfer", "suspend", "--job", job}, true);
  CHECK(none.exit_code == 0);
  CHECK(json_at(none.out, "/suspended") == "0");
}

TEST_CASE("version 2 with 1 % of its bytes changed transfers at most 5 % of its size", "[split]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  AgentProc a(tmp / "pc1", m.url(), "pc1", "127.0.0.45");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 20s));
  const std::size_t size = 4 * 1024 * 1024;
  auto data = random_bytes(size, 4);
  make_package(m, tmp, "app", "1", data);
  REQUIRE(all_succeeded(wait_job(m, create_job(m, {"install", "app", "1", "pc1"}), 60s)));
  const auto me = host_id_of(a.state_dir());
  const auto v1_bytes = served_to(m, me).first;
  CHECK(v1_bytes >= size);

  // 1 % of the bytes change, in the middle of the file.
  const auto patch = random_bytes(size / 100, 44);
  data.replace(size / 2, patch.size(), patch);
  make_package(m, tmp, "app", "2", data);
  const auto shown = wait_job(m, create_job(m, {"install", "app", "2", "pc1"}), 60s);
  INFO(a.log());
  REQUIRE(all_succeeded(shown));
  const auto v2_bytes = served_to(m, me).first - v1_bytes;
  INFO("version 2 took " << v2_bytes << " bytes");
  CHECK(v2_bytes <= size * 5 / 100);
  CHECK(v2_bytes >= size / 100);
  const auto e = first_entry(bj::parse(shown).as_object());
  CHECK(static_cast<std::uint64_t>(progress_of(e, "bytes_received")) == v2_bytes);
}

TEST_CASE("a corrupted chunk is fetched again, and a chunk bad at the source fails clearly", "[split]") {
  TempDir tmp;
  // The manager corrupts the first chunk it sends (fault injection).
  ::setenv("DISTRIB_FAULT_CORRUPT_CHUNKS", "1", 1);
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  ::unsetenv("DISTRIB_FAULT_CORRUPT_CHUNKS");
  AgentProc a(tmp / "pc1", m.url(), "pc1", "127.0.0.46");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 20s));
  make_package(m, tmp, "app", "1", random_bytes(512 * 1024, 5));
  const auto shown = wait_job(m, create_job(m, {"install", "app", "1", "pc1"}), 60s);
  INFO(a.log());
  REQUIRE(all_succeeded(shown));
  auto e = first_entry(bj::parse(shown).as_object());
  CHECK(progress_of(e, "bad_chunks") == 1);
  CHECK(std::string(e.at("message").as_string()).find("installed") != std::string::npos);
  CHECK(a.log().find("failed verification") != std::string::npos);

  // A chunk corrupted on the manager's disk is found when it is read (quarantined): a clear failure
  // naming the chunk, nothing fetched.
  make_package(m, tmp, "app", "2", random_bytes(512 * 1024, 6));
  const auto digest =
      std::string(ctl_json(m, {"package", "show", "app", "2"}).at("chunks").at(3).at("digest").as_string());
  write_file(m.state_dir() / "chunks" / digest.substr(0, 2) / (digest + ".zst"), "this is not the chunk");
  const auto bad = wait_job(m, create_job(m, {"install", "app", "2", "pc1"}), 60s);
  e = first_entry(bj::parse(bad).as_object());
  CHECK(e.at("state").as_string() == "failed");
  const std::string message(e.at("message").as_string());
  INFO(message);
  CHECK(message.find(digest.substr(0, 12)) != std::string::npos);
  CHECK(message.rfind("source copy missing or corrupt at the parent", 0) == 0);
  // Never stored at the agent.
  CHECK_FALSE(stdfs::exists(a.state_dir() / "chunks" / digest.substr(0, 2) / (digest + ".zst")));
}

TEST_CASE("complete-now sends the rest unsplit, and a full server tells requesters when to come back",
          "[split]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5", "--max-transfers", "1", "--rate-limit", "1MiB"});
  AgentProc a1(tmp / "pc1", m.url(), "pc1", "127.0.0.47");
  AgentProc a2(tmp / "pc2", m.url(), "pc2", "127.0.0.48");
  REQUIRE(wait_until([&] { return host_count(m) == 2; }, 20s));
  make_package(m, tmp, "app", "1", random_bytes(2 * 1024 * 1024, 7));

  // One transfer at a time at 1 MiB/s: the second agent is told to come back, then served.
  const auto t0 = Clock::now();
  const auto both = wait_job(m, create_job(m, {"install", "app", "1", "pc1", "pc2"}), 90s);
  const auto took = Clock::now() - t0;
  INFO(a1.log() << a2.log());
  REQUIRE(all_succeeded(both));
  const auto stats = ctl_json(m, {"stats"});
  CHECK(stats.at("content").at("busy_answers").as_int64() >= 1);
  CHECK((a1.log() + a2.log()).find("server busy, coming back in") != std::string::npos);
  CHECK(took >= 3500ms);  // 4 MiB at 1 MiB/s, one host at a time

  // A split of one segment every 30 s would take minutes; complete-now ends it at once.
  make_package(m, tmp, "app", "2", random_bytes(2 * 1024 * 1024, 8));
  const auto job = create_job(m, {"install", "app", "2", "pc1", "--split", "256KiB/30s"});
  REQUIRE(wait_until([&] { return progress_of(first_entry(job_show(m, job)), "segments_done") >= 1; }, 30s,
                     50ms));
  auto r = m.ctl({"job", "complete-now", job});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("split distribution ended") != std::string::npos);
  const auto t1 = Clock::now();
  const auto shown = wait_job(m, job, 60s);
  CHECK(all_succeeded(shown));
  CHECK(Clock::now() - t1 < 15s);
  CHECK(json_at(shown, "/job/split") == "null");
}

TEST_CASE("bad split input and unknown chunks are refused with clear errors", "[split]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--poll-timeout", "5"});
  AgentProc a(tmp / "pc1", m.url(), "pc1", "127.0.0.49");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 20s));
  make_package(m, tmp, "app", "1", random_bytes(64 * 1024, 9));
  struct Case {
    std::string split, says;
  };
  for (const auto& c : std::vector<Case>{{"0/1s", "segment size must be above 0"},
                                         {"3GiB/1s", "above the 2 GiB limit"},
                                         {"1MiB/0s", "between 1 s and 24 h"},
                                         {"1MiB/25h", "between 1 s and 24 h"},
                                         {"1MiB", "must be SIZE/INTERVAL"},
                                         {"lots/1s", "is not a size"}}) {
    INFO(c.split);
    auto r = m.ctl({"job", "create", "install", "app", "1", "pc1", "--split", c.split});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(c.says) != std::string::npos);
  }
  CHECK(ctl_json(m, {"job", "list"}).at("jobs").as_array().empty());

  const auto token = read_file(m.token_file()).substr(0, 64);
  distrib::HttpClient http({m.url(), m.ca_file(), "", 5, 10});
  // Agent routes need an enrolled host's certificate: the bad input comes from one.
  const auto host = enrol_test_host(m, tmp / "prober", "prober");
  distrib::HttpClient as_host(client_settings(host, m.url()));
  struct Raw {
    std::string method, target, body;
    bool admin;
    int status;
    std::string says;
  };
  const std::string unknown(64, 'b');
  for (
      const auto& k : std::vector<Raw>{
          {"POST", "/v1/jobs",
           R"({"type":"install","package":{"name":"app","version":"1"},"destinations":["pc1"],"split":{"size":0,"interval_seconds":1}})",
           true, 400, "split.size"},
          {"POST", "/v1/jobs",
           R"({"type":"install","package":{"name":"app","version":"1"},"destinations":["pc1"],"split":"1MiB/90000s"})",
           true, 400, "between 1 s and 24 h"},
          {"POST", "/v1/content/chunks", "{\"host_id\":\"\",\"digests\":[\"" + unknown + "\"]}", false, 404,
           "not in this server's content store"},
          {"GET", "/v1/content/chunks/" + unknown, "", false, 404, "not in this server's content store"},
          {"POST", "/v1/content/chunks", R"({"digests":["xyz"]})", false, 400, "not a chunk digest"},
          {"POST", "/v1/content/chunks", R"({"digests":[]})", false, 400, "between 1 and 4096"},
          {"POST", "/v1/content/chunks", R"({"digests":"nope"})", false, 400, "digests"},
          {"GET", "/v1/agent/transfer?host_id=" + host.host_id + "&entry_id=77", "", false, 404,
           "does not exist"},
          {"GET", "/v1/agent/transfer?host_id=" + host.host_id + "&entry_id=x", "", false, 400, "entry_id"},
          {"GET", "/v1/agent/transfer?host_id=11111111-1111-4111-8111-111111111111&entry_id=77", "", false,
           403, "may not act for host 11111111"},
          {"POST", "/v1/transfers/suspend", R"({})", true, 400, "either a job"},
          {"POST", "/v1/transfers/suspend", R"({"job":999})", true, 404, "does not exist"},
          {"POST", "/v1/transfers/resume", R"({"relay":"nowhere"})", true, 404, "no host answers to nowhere"},
          {"POST", "/v1/transfers/suspend", R"({"relay":"pc1"})", true, 400, "is not a relay"},
          {"POST", "/v1/jobs/999/complete-now", "{}", true, 404, "does not exist"},
      }) {
    INFO(k.method << " " << k.target << " " << k.body);
    auto r = (k.admin ? http : as_host)
                 .request(k.method, k.target, k.body, "application/json", k.admin ? token : "");
    INFO(r.body);
    CHECK(r.status == k.status);
    CHECK(r.content_type == "application/json");
    CHECK(r.body.find("\"error\"") != std::string::npos);
    CHECK(r.body.find(k.says) != std::string::npos);
  }
  CHECK(m.ctl({"transfer", "suspend"}).exit_code == 2);
  CHECK(m.ctl({"job", "complete-now", "999"}).exit_code == 4);
  // The manager still serves.
  CHECK(all_succeeded(wait_job(m, create_job(m, {"install", "app", "1", "pc1"}), 60s)));
}
