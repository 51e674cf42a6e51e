// Enrolment tokens through distribctl and the API: created once (the secret shown only then, only
// its hash kept), listed without secrets, revoked; only an administrator may do any of it; bad
// limits are refused and change nothing.
#include <distrib/net/http.h>

#include "harness.h"
#include "security/enrolment.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

using namespace distrib;
using namespace distrib::test;

TEST_CASE("enrolment tokens: created once, listed without secrets, revoked; administrators only",
          "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  REQUIRE(m.ctl({"idgroup", "create", "branch-7"}).exit_code == 0);

  auto made = m.ctl({"enrol-token", "create", "--expires", "2h", "--uses", "5", "--group", "branch-7"}, true);
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  const auto o = boost::json::parse(made.out).as_object();
  const std::string token(o.at("token").as_string());
  const std::string id(o.at("id").as_string());
  CHECK(security::parse_enrol_token(token).id == id);
  CHECK(o.at("uses_left").as_int64() == 5);
  CHECK(o.at("group").as_string() == "branch-7");
  const auto lifetime = o.at("expires_at").as_int64() - o.at("created_at").as_int64();
  CHECK(lifetime == 7200);

  // The plain form prints the token alone on stdout (for scripts) and says what it is on stderr.
  auto plain = m.ctl({"enrol-token", "create", "--uses", "unlimited"});
  REQUIRE(plain.exit_code == 0);
  CHECK(plain.out.starts_with("distrib-enrol-"));
  CHECK(plain.err.find("any number of") != std::string::npos);

  // Listed without the secret or its hash; the state says what it is good for.
  auto list = m.ctl({"enrol-token", "list"}, true);
  REQUIRE(list.exit_code == 0);
  CHECK(list.out.find(token.substr(token.rfind('-') + 1)) == std::string::npos);
  CHECK(list.out.find(security::parse_enrol_token(token).secret_hash) == std::string::npos);
  CHECK(boost::json::parse(list.out).at("tokens").as_array().size() == 2);
  auto table = m.ctl({"enrol-token", "list"});
  CHECK(table.out.find("valid") != std::string::npos);
  CHECK(table.out.find("unlimited") != std::string::npos);

  // Revoked once; a second revoke and an unknown id are told apart.
  CHECK(m.ctl({"enrol-token", "revoke", id}).exit_code == 0);
  auto again = m.ctl({"enrol-token", "revoke", id});
  CHECK(again.exit_code == 1);
  CHECK(again.err.find("revoked already") != std::string::npos);
  auto unknown = m.ctl({"enrol-token", "revoke", "deadbeef"});
  CHECK(unknown.exit_code == 4);
  CHECK(m.ctl({"enrol-token", "list"}).out.find("revoked") != std::string::npos);

  // Hostile or mistaken limits: refused, naming the limit, and nothing is created.
  HttpClient c({m.url(), m.ca_file(), "", 5, 10});
  const auto admin = read_file(m.token_file()).substr(0, 64);
  for (const std::string body :
       {R"({"expires_in_seconds": 5})", R"({"expires_in_seconds": 99999999999})", R"({"uses": 0})",
        R"({"uses": 2000000})", R"({"group": "no-such-group"})", R"({"group": "bad name!"})", R"([])"}) {
    INFO(body);
    const auto r = c.request("POST", "/v1/enrol-tokens", body, "application/json", admin);
    CHECK(r.status >= 400);
    CHECK(r.status < 500);
  }
  CHECK(boost::json::parse(m.ctl({"enrol-token", "list"}, true).out).at("tokens").as_array().size() == 2);

  // Without the admin token: 401, and nothing is listed or created.
  CHECK(c.request("GET", "/v1/enrol-tokens").status == 401);
  CHECK(c.request("POST", "/v1/enrol-tokens", "{}", "application/json").status == 401);
  CHECK(m.ctl({"enrol-token", "create", "--uses", "zero"}).exit_code == 2);
}
