// Ordinary distribution with real processes: a manager and agents on 127.0.0.x addresses.
#include "harness.h"

#include <catch2/catch.hpp>

#include <thread>

using namespace distrib::test;

namespace {

// A package directory whose install command writes a marker, so the test sees it ran.
stdfs::path make_package_dir(const TempDir& tmp, const std::string& name, const std::string& body) {
  const auto dir = tmp / ("pkg-" + name);
  write_file(dir / "payload.txt", body);
  write_file(dir / "install.sh",
             "#!/bin/sh\necho \"installing $DISTRIB_PACKAGE_NAME\"\ncat payload.txt > installed.marker\n",
             true);
  return dir;
}

std::string entry_field(const std::string& job_json, int index, const std::string& field) {
  return json_at(job_json, "/entries/" + std::to_string(index) + "/" + field);
}

void wait_hosts(const ManagerProc& m, int n) {
  REQUIRE(wait_until([&] { return host_count(m) == n; }, 15s, 100ms));
}

}  // namespace

TEST_CASE("a manager and three agents distribute and install a package", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  std::vector<std::unique_ptr<AgentProc>> agents;
  for (int i = 1; i <= 3; ++i)
    agents.push_back(std::make_unique<AgentProc>(tmp / ("agent" + std::to_string(i)), m.url(),
                                                 "host" + std::to_string(i),
                                                 "127.0.0." + std::to_string(10 + i)));
  wait_hosts(m, 3);

  auto hosts = m.ctl({"hosts", "list"});
  CHECK(hosts.exit_code == 0);
  CHECK(hosts.out.find("127.0.0.12") != std::string::npos);

  auto created = m.ctl({"package", "create", (examples_dir() / "hello-app").string(), "--name", "hello",
                        "--version", "1.0", "--install-command", "sh install.sh"},
                       true);
  INFO(created.err);
  REQUIRE(created.exit_code == 0);
  CHECK(json_at(created.out, "/chunks_uploaded") != "0");

  auto again = m.ctl({"package", "create", (examples_dir() / "hello-app").string(), "--name", "hello",
                      "--version", "1.0", "--install-command", "sh install.sh"},
                     true);
  CHECK(again.exit_code == 0);
  CHECK(json_at(again.out, "/chunks_uploaded") == "0");  // only missing chunks travel
  CHECK(json_at(again.out, "/already_registered") == "true");

  auto show = m.ctl({"package", "show", "hello", "1.0"});
  CHECK(show.exit_code == 0);
  CHECK(show.out.find("share/hello-link -> ../bin/hello") != std::string::npos);
  CHECK(show.out.find("command: sh install.sh") != std::string::npos);
  CHECK(json_at(m.ctl({"package", "show", "hello", "1.0"}, true).out, "/install/command") == "sh install.sh");
  CHECK(m.ctl({"package", "show", "hello", "9.9"}).exit_code == 4);

  auto job = m.ctl({"job", "create", "install", "hello", "1.0", "host1", "host2", "host3", "host2"}, true);
  REQUIRE(job.exit_code == 0);
  const auto id = json_at(job.out, "/job/id");

  auto wait = m.ctl({"job", "show", id, "--wait", "--timeout", "60"});
  INFO(wait.out << wait.err << m.log());
  CHECK(wait.exit_code == 0);
  CHECK(wait.err.find("3/3 done") != std::string::npos);  // progress shown while waiting
  const auto shown = m.ctl({"job", "show", id}, true).out;
  CHECK(json_at(shown, "/progress/total") == "3");  // host2 named twice: one entry
  CHECK(json_at(shown, "/progress/succeeded") == "3");
  for (int i = 1; i <= 3; ++i) {
    const auto dir = tmp / ("agent" + std::to_string(i)) / "packages/hello/1.0";
    CHECK(read_file(dir / "bin/hello").find("hello from distrib") != std::string::npos);
    CHECK(stdfs::exists(dir / "installed-at"));
    CHECK(stdfs::is_symlink(dir / "share/hello-link"));
  }

  auto list = m.ctl({"job", "list"});
  CHECK(list.out.find("hello 1.0") != std::string::npos);

  SECTION("re-delivering an installed payload is a no-op") {
    const auto marker = tmp / "agent1/packages/hello/1.0/installed-at";
    const auto before = read_file(marker);
    auto job2 = m.ctl({"job", "create", "install", "hello", "1.0", "host1"}, true);
    const auto out = wait_job(m, json_at(job2.out, "/job/id"));
    CHECK(entry_field(out, 0, "state") == "succeeded");
    CHECK(entry_field(out, 0, "message").find("already installed") != std::string::npos);
    CHECK(read_file(marker) == before);
  }
}

TEST_CASE("a failing install command is reported with its exit code and output", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "agent", m.url(), "failer", "127.0.0.21");
  wait_hosts(m, 1);
  write_file(tmp / "bad/README", "x");
  REQUIRE(m.ctl({"package", "create", (tmp / "bad").string(), "--name", "bad", "--version", "1",
                 "--install-command", "echo first line; echo 'disk full' >&2; exit 3"})
              .exit_code == 0);
  auto job = m.ctl({"job", "create", "install", "bad", "1", "failer"}, true);
  const auto id = json_at(job.out, "/job/id");
  auto wait = m.ctl({"job", "show", id, "--wait", "--timeout", "60"});
  CHECK(wait.exit_code == 5);  // documented: finished with entries that did not succeed
  CHECK(wait.out.find("disk full") != std::string::npos);  // output tail shown to the operator
  const auto out = m.ctl({"job", "show", id}, true).out;
  CHECK(entry_field(out, 0, "state") == "failed");
  CHECK(entry_field(out, 0, "exit_code") == "3");
  CHECK(entry_field(out, 0, "output_tail").find("first line\ndisk full") != std::string::npos);
  CHECK(entry_field(out, 0, "message").find("exited with 3") != std::string::npos);
}

TEST_CASE("an install command that runs past its timeout is killed and reported", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "agent", m.url(), "slowpoke", "127.0.0.22");
  wait_hosts(m, 1);
  write_file(tmp / "hang/README", "x");
  REQUIRE(m.ctl({"package", "create", (tmp / "hang").string(), "--name", "hang", "--version", "1",
                 "--install-command", "echo started; sleep 30", "--install-timeout", "1"})
              .exit_code == 0);
  auto job = m.ctl({"job", "create", "install", "hang", "1", "slowpoke"}, true);
  const auto started = std::chrono::steady_clock::now();
  const auto out = wait_job(m, json_at(job.out, "/job/id"));
  CHECK(std::chrono::steady_clock::now() - started < 20s);
  CHECK(entry_field(out, 0, "state") == "failed");
  CHECK(entry_field(out, 0, "message").find("timed out after 1 s") != std::string::npos);
  CHECK(entry_field(out, 0, "output_tail").find("started") != std::string::npos);
}

TEST_CASE("an agent that is down when the job is created installs when it returns", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  auto a = std::make_unique<AgentProc>(tmp / "agent", m.url(), "sleeper", "127.0.0.31");
  wait_hosts(m, 1);
  a->stop();
  const auto pkg = make_package_dir(tmp, "late", "late payload");
  REQUIRE(m.ctl({"package", "create", pkg.string(), "--name", "late", "--version", "1", "--install-command",
                 "./install.sh"})
              .exit_code == 0);
  auto job = m.ctl({"job", "create", "install", "late", "1", "sleeper"}, true);
  const auto id = json_at(job.out, "/job/id");
  std::this_thread::sleep_for(1s);
  CHECK(entry_field(m.ctl({"job", "show", id}, true).out, 0, "state") == "waiting");
  a->start();
  const auto out = wait_job(m, id);
  CHECK(entry_field(out, 0, "state") == "succeeded");
  CHECK(read_file(tmp / "agent/packages/late/1/installed.marker") == "late payload");
}

TEST_CASE("a manager restarted in the middle of a job loses nothing", "[integration]") {
  TempDir tmp;
  auto m = std::make_unique<ManagerProc>(tmp / "manager");
  AgentProc a1(tmp / "a1", m->url(), "r1", "127.0.0.41");
  AgentProc a2(tmp / "a2", m->url(), "r2", "127.0.0.42");
  wait_hosts(*m, 2);
  const auto pkg = make_package_dir(tmp, "slow", "slow payload");
  // The install takes long enough for the manager to be down when it ends.
  REQUIRE(m->ctl({"package", "create", pkg.string(), "--name", "slow", "--version", "1", "--install-command",
                  "sleep 3 && ./install.sh"})
              .exit_code == 0);
  auto job = m->ctl({"job", "create", "install", "slow", "1", "r1", "r2"}, true);
  const auto id = json_at(job.out, "/job/id");
  REQUIRE(wait_until(
      [&] {
        const auto out = m->ctl({"job", "show", id}, true).out;
        return entry_field(out, 0, "state") == "installing" && entry_field(out, 1, "state") == "installing";
      },
      30s, 100ms));
  const int port = m->port();
  m->stop();
  // The installs finish while the manager is away; their reports wait in the agents' outboxes.
  CHECK(wait_until(
      [&] {
        return stdfs::exists(tmp / "a1/packages/slow/1/installed.marker") &&
               stdfs::exists(tmp / "a2/packages/slow/1/installed.marker") &&
               !stdfs::is_empty(tmp / "a1/outbox");
      },
      30s));
  m = std::make_unique<ManagerProc>(tmp / "manager", std::vector<std::string>{}, "127.0.0.1", port);
  const auto out = wait_job(*m, id);
  CHECK(json_at(out, "/progress/succeeded") == "2");
  CHECK(host_count(*m) == 2);
  CHECK(m->ctl({"package", "list"}).out.find("slow") != std::string::npos);
  CHECK(wait_until([&] { return stdfs::is_empty(tmp / "a1/outbox"); }, 10s));
}

TEST_CASE("a chunk corrupted on the manager's disk is rejected and nothing is installed", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "agent", m.url(), "victim", "127.0.0.51");
  wait_hosts(m, 1);
  const auto pkg = make_package_dir(tmp, "corrupt", std::string(200000, 'z'));
  auto created = m.ctl({"package", "create", pkg.string(), "--name", "corrupt", "--version", "1",
                        "--install-command", "./install.sh"},
                       true);
  REQUIRE(created.exit_code == 0);
  // Replace every stored chunk with a valid zstd frame of other bytes.
  int corrupted = 0;
  for (const auto& e : stdfs::recursive_directory_iterator(tmp / "manager/chunks"))
    if (e.is_regular_file()) {
      stdfs::copy_file(examples_dir() / "hello-app/README.txt", e.path(),
                       stdfs::copy_options::overwrite_existing);
      ++corrupted;
    }
  REQUIRE(corrupted > 0);
  auto job = m.ctl({"job", "create", "install", "corrupt", "1", "victim"}, true);
  const auto out = wait_job(m, json_at(job.out, "/job/id"));
  CHECK(entry_field(out, 0, "state") == "failed");
  CHECK(entry_field(out, 0, "message").find("chunk") != std::string::npos);
  CHECK_FALSE(stdfs::exists(tmp / "agent/packages/corrupt"));
  int stored = 0;  // the bad chunk was never kept
  for (const auto& e : stdfs::recursive_directory_iterator(tmp / "agent/chunks"))
    if (e.is_regular_file()) ++stored;
  CHECK(stored == 0);
}

TEST_CASE("cancel stops entries that have not started installing", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  auto a = std::make_unique<AgentProc>(tmp / "agent", m.url(), "away", "127.0.0.61");
  wait_hosts(m, 1);
  a->stop();
  const auto pkg = make_package_dir(tmp, "c", "c");
  REQUIRE(m.ctl({"package", "create", pkg.string(), "--name", "c", "--version", "1"}).exit_code == 0);
  auto job = m.ctl({"job", "create", "install", "c", "1", "away"}, true);
  const auto id = json_at(job.out, "/job/id");
  auto cancel = m.ctl({"job", "cancel", id}, true);
  CHECK(cancel.exit_code == 0);
  CHECK(json_at(cancel.out, "/cancelled") == "1");
  a->start();
  std::this_thread::sleep_for(2s);
  const auto out = m.ctl({"job", "show", id}, true).out;
  CHECK(entry_field(out, 0, "state") == "cancelled");
  CHECK_FALSE(stdfs::exists(tmp / "agent/packages/c"));
}

TEST_CASE("agents and distribctl work over TLS", "[integration]") {
  TempDir tmp;
  const auto d = tmp.path().string();
  auto gen = run({"/bin/sh", "-c",
                  "cd " + d +
                      " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ca "
                      "-keyout ca.key -out ca.crt 2>/dev/null && openssl req -newkey rsa:2048 -nodes "
                      "-subj /CN=127.0.0.1 -keyout s.key -out s.csr 2>/dev/null && printf "
                      "'subjectAltName=IP:127.0.0.1\\n' > ext && openssl x509 -req -in s.csr -CA ca.crt "
                      "-CAkey ca.key -CAcreateserial -days 2 -extfile ext -out s.crt 2>/dev/null"});
  REQUIRE(gen.exit_code == 0);
  ManagerProc m(tmp / "manager", {"--tls-cert", d + "/s.crt", "--tls-key", d + "/s.key"});
  REQUIRE(m.url().starts_with("https://"));
  auto ctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {distribctl_path(),       "--server",  m.url(),       "--token-file",
                                     m.token_file().string(), "--ca-file", d + "/ca.crt", "--json"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  };
  // The agents trust the operator's CA for the server; their own certificates come from the
  // manager's CA through enrolment.
  const auto token = ctl({"enrol-token", "create", "--uses", "2"});
  REQUIRE(token.exit_code == 0);
  write_file(tmp / "token", json_at(token.out, "/token"));
  AgentProc a(tmp / "agent", m.url(), "secure", "127.0.0.71",
              {"--ca-file", d + "/ca.crt", "--enrol-token-file", (tmp / "token").string()});
  AgentProc untrusting(tmp / "agent2", m.url(), "untrusting", "127.0.0.72",
                       {"--ca-file", d + "/s.crt", "--enrol-token-file", (tmp / "token").string()});
  REQUIRE(wait_until([&] { return ctl({"hosts", "list"}).out.find("secure") != std::string::npos; }, 15s));
  CHECK(ctl({"hosts", "list"}).out.find("untrusting") == std::string::npos);
  const auto pkg = make_package_dir(tmp, "tls", "over tls");
  REQUIRE(ctl({"package", "create", pkg.string(), "--name", "tls", "--version", "1", "--install-command",
               "./install.sh"})
              .exit_code == 0);
  auto job = ctl({"job", "create", "install", "tls", "1", "secure"});
  auto out = ctl({"job", "show", json_at(job.out, "/job/id"), "--wait", "--timeout", "60"});
  CHECK(out.exit_code == 0);
  CHECK(read_file(tmp / "agent/packages/tls/1/installed.marker") == "over tls");
  // Without the CA, distribctl refuses the manager's certificate.
  auto bad = run({distribctl_path(), "--server", m.url(), "--token-file", m.token_file().string(),
                  "--ca-file", d + "/s.crt", "hosts", "list"});
  CHECK(bad.exit_code == 3);
  CHECK(bad.err.find("TLS handshake failed") != std::string::npos);
}
