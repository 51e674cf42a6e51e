// The C API against a real manager and agent.
#include "distrib.h"
#include "harness.h"

#include <catch2/catch.hpp>

#include <thread>

using namespace distrib::test;

TEST_CASE("C API: package, upload, job, status", "[integration][bindings]") {
  TempDir tmp;
  char err[512];
  char digest[65];
  write_file(tmp / "pkg/hello.txt", "hello from C");

  CHECK(std::string(distrib_version()).size() >= 5);
  REQUIRE(distrib_package_create((tmp / "pkg").c_str(), "capi", "1", nullptr, (tmp / "chunks").c_str(),
                                 digest, err, sizeof err) == DISTRIB_OK);
  CHECK(std::string(digest).size() == 64);
  CHECK(distrib_package_create((tmp / "nope").c_str(), "capi", "1", nullptr, (tmp / "chunks").c_str(), digest,
                               err, sizeof err) == DISTRIB_E_INVALID);
  CHECK(std::string(err).find("is not a directory") != std::string::npos);

  CHECK(distrib_client_open("ftp://x", "t", nullptr, err, sizeof err) == nullptr);
  CHECK(std::string(err).find("must start with http") != std::string::npos);

  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "agent", m.url(), "c-agent", "127.0.0.91");
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 15s));
  const auto token = read_file(m.token_file()).substr(0, 64);
  distrib_client* c =
      distrib_client_open(m.url().c_str(), token.c_str(), m.ca_file().c_str(), err, sizeof err);
  REQUIRE(c);
  REQUIRE(distrib_client_upload_package(c, (tmp / "pkg").c_str(), "capi", "1", "cat hello.txt", err,
                                        sizeof err) == DISTRIB_OK);
  const char* dests[] = {"c-agent"};
  const auto job = distrib_client_create_install_job(c, "capi", "1", dests, 1, err, sizeof err);
  REQUIRE(job > 0);
  const char* ghosts[] = {"ghost"};
  CHECK(distrib_client_create_install_job(c, "capi", "1", ghosts, 1, err, sizeof err) == DISTRIB_E_INVALID);
  CHECK(std::string(err).find("ghost") != std::string::npos);
  CHECK(distrib_client_create_job(c, "reboot", "capi", "1", dests, 1, err, sizeof err) == DISTRIB_E_INVALID);
  CHECK(std::string(err).find("transfer-to-relay") != std::string::npos);
  // Cache jobs go to relays: an agent destination is refused, naming it.
  CHECK(distrib_client_create_job(c, "transfer-to-relay", "capi", "1", dests, 1, err, sizeof err) ==
        DISTRIB_E_INVALID);
  CHECK(std::string(err).find("is not a relay") != std::string::npos);
  // Group destinations pass through as they are: an unknown host group refuses the job.
  const char* groups[] = {"c-agent", "group:nope"};
  CHECK(distrib_client_create_install_job(c, "capi", "1", groups, 2, err, sizeof err) == DISTRIB_E_INVALID);
  CHECK(std::string(err).find("group:nope (no such host group)") != std::string::npos);
  distrib_job_status st{};
  REQUIRE(wait_until(
      [&] {
        return distrib_client_job_status(c, job, &st, err, sizeof err) == DISTRIB_OK && st.done == st.total;
      },
      60s, 200ms));
  CHECK(st.total == 1);
  CHECK(st.succeeded == 1);
  CHECK(distrib_client_job_status(c, job + 100, &st, err, sizeof err) == DISTRIB_E_NOT_FOUND);
  distrib_client_close(c);

  // A viewer's client certificate instead of a token: it reads, and may not change anything.
  REQUIRE(m.ctl({"user", "add", "cview", "--role", "viewer"}).exit_code == 0);
  REQUIRE(m.ctl({"user", "certificate", "cview", "--output", (tmp / "cview").string()}).exit_code == 0);
  const auto cert = (tmp / "cview/cview.crt").string(), key = (tmp / "cview/cview.key").string();
  CHECK(distrib_client_open_tls(m.url().c_str(), nullptr, m.ca_file().c_str(), cert.c_str(), nullptr, err,
                                sizeof err) == nullptr);
  CHECK(std::string(err).find("both") != std::string::npos);
  distrib_client* viewer = distrib_client_open_tls(m.url().c_str(), nullptr, m.ca_file().c_str(),
                                                   cert.c_str(), key.c_str(), err, sizeof err);
  REQUIRE(viewer);
  CHECK(distrib_client_job_status(viewer, job, &st, err, sizeof err) == DISTRIB_OK);
  CHECK(st.succeeded == 1);
  CHECK(distrib_client_create_install_job(viewer, "capi", "1", dests, 1, err, sizeof err) ==
        DISTRIB_E_UNAUTHORIZED);
  CHECK(std::string(err).find("cview has the viewer role") != std::string::npos);
  distrib_client_close(viewer);

  distrib_client* down = distrib_client_open("http://127.0.0.1:1", "t", nullptr, err, sizeof err);
  REQUIRE(down);
  CHECK(distrib_client_job_status(down, 1, &st, err, sizeof err) == DISTRIB_E_UNAVAILABLE);
  distrib_client_close(down);
}
