// Bad input gets a clear error and changes nothing; the daemon keeps serving.
#include <distrib/content/chunk_store.h>
#include <distrib/content/packager.h>
#include <distrib/net/http.h>

#include "harness.h"
#include "test_identity.h"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace distrib;
using namespace distrib::test;

namespace {
int line_count(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}
}  // namespace

TEST_CASE("malformed requests get a 4xx JSON error and the manager keeps serving", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  const auto token = read_file(m.token_file()).substr(0, 64);
  HttpClient c({m.url(), m.ca_file(), "", 5, 10});
  auto alive = [&] { return c.request("GET", "/v1/status").status == 200; };
  // Agent routes need an enrolled host's certificate: the bad input comes from one.
  const auto host = enrol_test_host(m, tmp / "host", "prober");

  struct Case {
    std::string name, method, target, body, type;
    bool admin;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"malformed JSON", "POST", "/v1/jobs", "{\"type\": ", "application/json", true, 400, "malformed JSON"},
      {"JSON that is not an object", "POST", "/v1/jobs", "[1,2]", "application/json", true, 400,
       "expected an object"},
      {"missing field", "POST", "/v1/jobs", "{\"type\":\"install\"}", "application/json", true, 400,
       "\\\"package\\\" is missing"},
      {"unknown job type", "POST", "/v1/jobs",
       "{\"type\":\"reboot\",\"package\":{\"name\":\"a\",\"version\":\"1\"},\"destinations\":[\"x\"]}",
       "application/json", true, 400, "unknown job type"},
      {"unknown route", "GET", "/v1/nothing-here", "", "", true, 404, "no route"},
      {"unknown route outside v1", "GET", "/admin", "", "", false, 404, "no route"},
      {"wrong content type", "POST", "/v1/jobs", "{}", "text/plain", true, 400,
       "content type must be application/json"},
      {"oversized body", "POST", "/v1/jobs", std::string(5 * 1024 * 1024, ' '), "application/json", true, 413,
       "exceeds the limit"},
      {"no token on an admin route", "GET", "/v1/hosts", "", "", false, 401, "admin bearer token"},
      {"bad job id", "GET", "/v1/jobs/abc", "", "", true, 400, "not a job id"},
      {"missing job", "GET", "/v1/jobs/999", "", "", true, 404, "does not exist"},
      {"bad chunk digest", "GET", "/v1/content/chunks/xyz", "", "", false, 400, "not a chunk digest"},
      {"missing chunk", "GET", "/v1/content/chunks/" + std::string(64, 'a'), "", "", false, 404,
       "not in this server's content store"},
      {"chunk not matching its digest", "PUT", "/v1/chunks/" + std::string(64, 'a'), "garbage",
       "application/zstd", true, 422, "zstd"},
      {"a group description of 5000 characters", "POST", "/v1/groups",
       "{\"name\":\"g\",\"description\":\"" + std::string(5000, 'd') + "\"}", "application/json", true, 400,
       "description is longer than 1024 bytes"},
      {"an ID group description with a newline", "POST", "/v1/id-groups",
       "{\"name\":\"g\",\"description\":\"a\\nb\"}", "application/json", true, 400, "control characters"},
      {"agent poll without host id", "GET", "/v1/agent/work", "", "", false, 400, "host_id"},
      {"registration with a bad host id", "POST", "/v1/agent/register", "{\"host_id\":\"x\",\"name\":\"n\"}",
       "application/json", false, 400, "is not a host UUID"},
      {"report with a bad state", "POST", "/v1/agent/report",
       "{\"host_id\":\"" + host.host_id +
           "\",\"reports\":[{\"entry_id\":1,\"seq\":1,"
           "\"state\":\"done\"}]}",
       "application/json", false, 400, "unknown entry state"},
  };
  for (const auto& k : cases) {
    INFO(k.name);
    HttpClient one(k.admin ? HttpClientSettings{m.url(), m.ca_file(), "", 5, 10}
                           : client_settings(host, m.url()));
    auto r = one.request(k.method, k.target, k.body, k.type, k.admin ? token : "");
    CHECK(r.status == k.status);
    CHECK(r.content_type == "application/json");
    CHECK(r.body.find("\"error\"") != std::string::npos);
    CHECK(r.body.find(k.says) != std::string::npos);
    CHECK(alive());
  }
  // An agent (no token) cannot use admin routes; a wrong token is refused the same way.
  CHECK(c.request("GET", "/v1/jobs", "", "", "0000").status == 401);
  CHECK(c.request("POST", "/v1/jobs", "{}", "application/json").status == 401);
  // Nothing was created by any of it.
  CHECK(m.ctl({"job", "list"}, true).out == "{\"jobs\":[]}\n");
}

TEST_CASE("jobs to unknown destinations are refused whole", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "agent", m.url(), "known", "127.0.0.81");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 15s));
  write_file(tmp / "p/f", "x");
  REQUIRE(m.ctl({"package", "create", (tmp / "p").string(), "--name", "p", "--version", "1"}).exit_code == 0);
  auto r = m.ctl({"job", "create", "install", "p", "1", "known", "ghost1", "ghost2"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("unknown destination(s): ghost1 (no host answers to it by name), ghost2") !=
        std::string::npos);
  CHECK(r.err.find("no job was created") != std::string::npos);
  auto missing = m.ctl({"job", "create", "install", "nopkg", "1", "known"});
  CHECK(missing.exit_code == 4);
  CHECK(missing.err.find("package \"nopkg\" 1 does not exist") != std::string::npos);
  CHECK(m.ctl({"job", "list"}, true).out == "{\"jobs\":[]}\n");
}

TEST_CASE("packages are immutable and bad package trees are refused", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  write_file(tmp / "p/f", "one");
  REQUIRE(m.ctl({"package", "create", (tmp / "p").string(), "--name", "p", "--version", "1"}).exit_code == 0);
  write_file(tmp / "p/f", "two");
  auto r = m.ctl({"package", "create", (tmp / "p").string(), "--name", "p", "--version", "1"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("already exists with other content") != std::string::npos);
  CHECK(r.err.find("choose a new version") != std::string::npos);

  stdfs::create_symlink("/etc/passwd", tmp / "p/escape");
  auto esc = m.ctl({"package", "create", (tmp / "p").string(), "--name", "p", "--version", "2"});
  CHECK(esc.exit_code == 1);
  CHECK(esc.err.find("escapes the package directory") != std::string::npos);
  auto list = m.ctl({"package", "list"}, true);
  CHECK(json_at(list.out, "/packages/0/version") == "1");
  CHECK(json_at(list.out, "/packages/1") == "");
}

TEST_CASE("distribd refuses bad configuration with a one-line reason", "[integration]") {
  TempDir tmp;
  write_file(tmp / "file", "not a directory");
  struct Case {
    std::string name;
    std::vector<std::string> args;
    std::string says;
  };
  write_file(tmp / "garbage/distrib.db", std::string(10000, 'g'));
  write_file(tmp / "bad.conf", "role = manager\nstate-dir = " + (tmp / "m").string() + "\nno-such-key = 1\n");
  const std::vector<Case> cases = {
      {"unknown option",
       {"--role", "manager", "--state-dir", (tmp / "m").string(), "--frobnicate"},
       "unrecognised option"},
      {"unknown key in the config file", {"--config", (tmp / "bad.conf").string()}, "no-such-key"},
      {"missing config file", {"--config", (tmp / "nope.conf").string()}, "cannot read configuration file"},
      {"no role", {"--state-dir", (tmp / "m").string()}, "--role is required"},
      {"unknown role", {"--role", "toaster", "--state-dir", (tmp / "m").string()}, "unknown role"},
      {"state dir that cannot be created",
       {"--role", "manager", "--state-dir", (tmp / "file/sub").string()},
       "cannot be created"},
      {"unreadable database",
       {"--role", "manager", "--state-dir", (tmp / "garbage").string(), "--port", "0"},
       "database"},
      {"unknown key mode",
       {"--role", "manager", "--state-dir", (tmp / "m").string(), "--key-mode", "mac"},
       "unknown host key mode"},
      {"unknown database",
       {"--role", "manager", "--state-dir", (tmp / "m").string(), "--database", "mysql", "--port", "0"},
       "known: odbc, postgresql, sqlite"},
      {"agent without a server", {"--role", "agent", "--state-dir", (tmp / "a").string()}, "parent URL"},
      {"relay without a parent",
       {"--role", "relay", "--state-dir", (tmp / "r").string()},
       "a relay needs --parent"},
      {"relay with a bad parent URL",
       {"--role", "relay", "--state-dir", (tmp / "r").string(), "--parent", "relay1:8640"},
       "must start with http"},
      {"relay with a bad cache limit",
       {"--role", "relay", "--state-dir", (tmp / "r").string(), "--parent", "http://127.0.0.1:1",
        "--cache-limit", "lots"},
       "is not a size"},
      {"manager with a parent",
       {"--role", "manager", "--state-dir", (tmp / "m").string(), "--parent", "http://127.0.0.1:1"},
       "--role relay"},
      {"agent with a bad server URL",
       {"--role", "agent", "--state-dir", (tmp / "a").string(), "--server", "ftp://x"},
       "must start with http"},
      {"agent with a manager option",
       {"--role", "agent", "--state-dir", (tmp / "a").string(), "--server", "http://127.0.0.1:1",
        "--tls-cert", "x"},
       "manager option"},
      {"split limit of size 0",
       {"--role", "manager", "--state-dir", (tmp / "m").string(), "--split-max", "0/1s"},
       "segment size must be above 0"},
      {"agent split limit with a long interval",
       {"--role", "agent", "--state-dir", (tmp / "a").string(), "--server", "http://127.0.0.1:1",
        "--split-max", "1MiB/2d"},
       "between 1 s and 24 h"},
      {"rate limit that is not a size",
       {"--role", "manager", "--state-dir", (tmp / "m").string(), "--rate-limit", "fast"},
       "is not a size"},
      {"rate limit below 1 KiB/s",
       {"--role", "manager", "--state-dir", (tmp / "m").string(), "--rate-limit", "100"},
       "at least 1KiB"},
      {"negative transfer limit",
       {"--role", "manager", "--state-dir", (tmp / "m").string(), "--max-transfers", "-1"},
       "--max-transfers must not be negative"},
      {"memory cache that is not a size",
       {"--role", "manager", "--state-dir", (tmp / "m").string(), "--memory-cache", "big"},
       "is not a size"},
      {"agent with a rate limit",
       {"--role", "agent", "--state-dir", (tmp / "a").string(), "--server", "http://127.0.0.1:1",
        "--rate-limit", "1MiB"},
       "manager option"},
  };
  for (const auto& k : cases) {
    INFO(k.name);
    std::vector<std::string> argv = {distribd_path()};
    argv.insert(argv.end(), k.args.begin(), k.args.end());
    auto r = run(argv, 20s);
    CHECK(r.exit_code != 0);
    CHECK(r.exit_code > 0);  // exited, did not crash
    CHECK(r.err.find(k.says) != std::string::npos);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.starts_with("distribd: "));
  }
  // The garbage database file was not touched.
  CHECK(read_file(tmp / "garbage/distrib.db") == std::string(10000, 'g'));

  auto ok =
      run({distribd_path(), "--role", "manager", "--state-dir", (tmp / "m").string(), "--check-config"});
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("configuration is valid") != std::string::npos);
}

TEST_CASE("a port in use is a clear start-up error", "[integration]") {
  TempDir tmp;
  ManagerProc first(tmp / "m1");
  auto r = run({distribd_path(), "--role", "manager", "--state-dir", (tmp / "m2").string(), "--port",
                std::to_string(first.port())},
               20s);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("cannot listen on 127.0.0.1:" + std::to_string(first.port())) != std::string::npos);
}

TEST_CASE("distribctl exit codes and messages", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  CHECK(m.ctl({"frobnicate", "now"}).exit_code == 2);
  CHECK(m.ctl({"job", "show", "12"}).exit_code == 4);
  CHECK(m.ctl({"job", "show", "twelve"}).exit_code == 2);
  auto no_token = run({distribctl_path(), "--server", m.url(), "hosts", "list"}, 20s,
                      {{"DISTRIB_TOKEN", ""}, {"DISTRIB_TOKEN_FILE", ""}});
  CHECK(no_token.exit_code == 2);
  CHECK(no_token.err.find("no credentials: pass --token-file") != std::string::npos);
  auto wrong = run({distribctl_path(), "--server", m.url(), "--ca-file", m.ca_file(), "--token",
                    std::string(64, 'f'), "hosts", "list"});
  CHECK(wrong.exit_code == 1);
  CHECK(wrong.err.find("not valid") != std::string::npos);
  // Without the manager's CA the connection itself is refused, and the message says what to do.
  auto untrusted =
      run({distribctl_path(), "--server", m.url(), "--token", std::string(64, 'f'), "hosts", "list"});
  CHECK(untrusted.exit_code == 3);
  CHECK(untrusted.err.find("--ca-file") != std::string::npos);
  auto down = run({distribctl_path(), "--server", "http://127.0.0.1:1", "--token", "x", "hosts", "list"});
  CHECK(down.exit_code == 3);
  CHECK(down.err.find("is the manager running?") != std::string::npos);
  auto empty = m.ctl({"hosts", "list"});
  CHECK(empty.exit_code == 0);
  CHECK(empty.out.find("(none)") != std::string::npos);
}

TEST_CASE("chunk batches are verified whole: a bad frame or a bad chunk stores nothing", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  const auto token = read_file(m.token_file()).substr(0, 64);
  HttpClient c({m.url(), m.ca_file(), "", 5, 30});
  auto send = [&](const std::string& body, const std::string& type = "application/x-distrib-chunks") {
    return c.request("POST", "/v1/chunks/batch", body, type, token);
  };
  auto frame = [](const std::string& digest, const std::string& bytes) {
    return digest + " " + std::to_string(bytes.size()) + "\n" + bytes;
  };
  auto missing = [&](const std::vector<std::string>& digests) {
    std::string list;
    for (const auto& d : digests) list += (list.empty() ? "\"" : ",\"") + d + "\"";
    const auto res =
        c.request("POST", "/v1/chunks/missing", "{\"digests\":[" + list + "]}", "application/json", token);
    REQUIRE(res.status == 200);
    // {"missing":["d1","d2"]}: two quotes for the key, two per digest.
    return static_cast<std::size_t>(std::count(res.body.begin(), res.body.end(), '"') - 2) / 2;
  };
  // A package cut locally: its first chunks go in batches, the last is kept back.
  const auto src = tmp / "src";
  stdfs::create_directories(src);
  std::string data;
  for (long long i = 0; i < 300000; ++i) data += std::to_string(i * 7919 % 100003) + (i % 13 ? " " : "\n");
  write_file(src / "data.txt", data);
  ChunkSpool spool(tmp / "spool");
  PackageSpec spec;
  spec.name = "batched";
  spec.version = "1";
  spec.source_dir = src;
  spec.install.command = "true";
  const auto manifest = create_package(spec, spool);
  REQUIRE(manifest.chunks.size() >= 4);
  const auto& d0 = manifest.chunks[0].digest;
  const auto& d1 = manifest.chunks[1].digest;

  SECTION("a chunk that does not match its digest refuses the batch, naming it") {
    const auto res = send(frame(d0, spool.read_compressed(d0)) + frame(d1, spool.read_compressed(d0)));
    CHECK(res.status == 422);
    CHECK(res.body.find(short_digest(d1)) != std::string::npos);
    CHECK(res.body.find("nothing of this batch was stored") != std::string::npos);
    CHECK(missing({d0, d1}) == 2);  // not even the good one
  }
  SECTION("frames that are not frames are refused before any work") {
    const auto good = frame(d0, spool.read_compressed(d0));
    CHECK(send("zz 12\nxxxxxxxxxxxx").status == 400);
    CHECK(send(good + d1 + " 99999999\nshort").body.find("more than the batch holds") != std::string::npos);
    CHECK(send(good + d1 + " twelve\n").body.find("does not start with a line") != std::string::npos);
    CHECK(send(good + "no header line at all").status == 400);
    CHECK(send(good, "application/zstd").body.find("application/x-distrib-chunks") != std::string::npos);
    CHECK(missing({d0}) == 1);
  }
  SECTION("good batches are stored once; a package missing a chunk is not registered") {
    std::string batch;
    for (std::size_t i = 0; i + 1 < manifest.chunks.size(); ++i)
      batch += frame(manifest.chunks[i].digest, spool.read_compressed(manifest.chunks[i].digest));
    auto res = send(batch);
    REQUIRE(res.status == 200);
    CHECK(res.body.find("\"stored\":" + std::to_string(manifest.chunks.size() - 1)) != std::string::npos);
    res = send(batch);  // again: held already
    CHECK(res.body.find("\"stored\":0") != std::string::npos);
    const auto reg = c.request("POST", "/v1/packages", manifest_to_json(manifest), "application/json", token);
    CHECK(reg.status == 409);
    CHECK(reg.body.find("1 chunk(s) have not been uploaded") != std::string::npos);
    const auto& last = manifest.chunks.back().digest;
    REQUIRE(send(frame(last, spool.read_compressed(last))).status == 200);
    CHECK(c.request("POST", "/v1/packages", manifest_to_json(manifest), "application/json", token).status ==
          201);
  }
  CHECK(c.request("GET", "/v1/status").status == 200);
}
