// The manager's route table (services/manager/router.h): no two routes may match one request,
// the listing does not depend on the order facilities declare routes in, and the router checks
// each route's access (and the realm of a path no route matches) before any handler runs.
#include "services/manager/router.h"

#include <distrib/error.h>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace distrib;
using namespace distrib::manager;

namespace {

RouteHandler record(std::vector<std::string>& calls, std::string name) {
  return [&calls, name](HttpRequest&&, Responder&, const PathSegments& p) {
    calls.push_back(name + (p.size() > 2 ? ":" + p[2] : ""));
  };
}

HttpRequest request(std::string method, std::string path, std::string auth = "") {
  HttpRequest req;
  req.method = std::move(method);
  req.target = path;
  req.path = std::move(path);
  req.authorization = std::move(auth);
  return req;
}

// The router with two bearer tokens, "secret" (an operator's) and "look" (a viewer's), and a realm
// for /v1/agent.
Router make_router(std::vector<std::string>& calls, int& audited) {
  Router t;
  t.authenticate([](const HttpRequest& req) {
    if (req.authorization == "Bearer secret") return Principal{Access::operate, "olga"};
    if (req.authorization == "Bearer look") return Principal{Access::view, "victor"};
    throw Error(ErrorKind::unauthorized, "no token");
  });
  // The audit hook sees who the credentials are, whatever the client says it is.
  t.on_admin([&audited](const HttpRequest& req, Responder&) {
    const auto it = req.headers.find("x-distrib-actor");
    if (it != req.headers.end() &&
        (it->second == "olga" || it->second == "victor" || it->second == "(credentials refused)"))
      ++audited;
  });
  t.realm("/v1/agent", Access::agent);
  t.realm("/v1/{area}", Access::view);
  t.add(Route{"GET", "/v1/jobs/{id}", Access::view, record(calls, "job")});
  t.add(Route{"POST", "/v1/jobs/{id}/cancel", Access::operate, record(calls, "cancel")});
  t.add(Route{"POST", "/v1/settings", Access::administer, record(calls, "settings")});
  t.add(Route{"GET", "/v1/agent/work", Access::agent, record(calls, "work"), 1234});
  t.add(Route{"GET", "/v1/status", Access::open, record(calls, "status")});
  return t;
}

}  // namespace

TEST_CASE("routes that could match one request are refused when declared", "[router]") {
  std::vector<std::string> calls;
  int audited = 0;
  auto t = make_router(calls, audited);
  const auto noop = record(calls, "x");
  CHECK_THROWS_WITH(t.add(Route{"GET", "/v1/jobs/{id}", Access::view, noop}),
                    Catch::Contains("overlaps GET /v1/jobs/{id}"));
  // A literal where another route has a placeholder: one path ("/v1/jobs/all") would match both.
  CHECK_THROWS_WITH(t.add(Route{"GET", "/v1/jobs/all", Access::open, noop}), Catch::Contains("overlaps"));
  CHECK_THROWS_AS(t.add(Route{"GET", "no-slash", Access::open, noop}), Error);
  // Another method, another length or another literal is no overlap.
  CHECK_NOTHROW(t.add(Route{"DELETE", "/v1/jobs/{id}", Access::operate, noop}));
  CHECK_NOTHROW(t.add(Route{"POST", "/v1/jobs/{id}/retry", Access::operate, noop}));
  CHECK_NOTHROW(t.add(Route{"GET", "/v1/jobs", Access::view, noop}));
  // Administrative roles are proven by authenticate(), never by a per-level check.
  CHECK_THROWS_AS(t.check(Access::operate, [](const HttpRequest&) {}), Error);
}

TEST_CASE("the table lists by path and method whatever the declaration order", "[router]") {
  std::vector<std::string> calls;
  int audited = 0;
  const auto a = make_router(calls, audited).routes();
  Router other;
  other.add(Route{"GET", "/v1/status", Access::open, record(calls, "status")});
  other.add(Route{"GET", "/v1/agent/work", Access::agent, record(calls, "work"), 1234});
  other.add(Route{"POST", "/v1/settings", Access::administer, record(calls, "settings")});
  other.add(Route{"POST", "/v1/jobs/{id}/cancel", Access::operate, record(calls, "cancel")});
  other.add(Route{"GET", "/v1/jobs/{id}", Access::view, record(calls, "job")});
  const auto b = other.routes();
  REQUIRE(a.size() == 5);
  REQUIRE(b.size() == 5);
  std::vector<std::string> listed;
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].pattern == b[i].pattern);
    CHECK(a[i].method == b[i].method);
    listed.push_back(a[i].method + " " + a[i].pattern);
  }
  CHECK(listed == std::vector<std::string>{"GET /v1/agent/work", "GET /v1/jobs/{id}",
                                           "POST /v1/jobs/{id}/cancel", "POST /v1/settings",
                                           "GET /v1/status"});
  CHECK(to_string(a[1].access) == "viewer");
  CHECK(to_string(a[2].access) == "operator");
  CHECK(to_string(a[3].access) == "administrator");
  CHECK(other.body_limit("GET", "/v1/agent/work?host_id=x") == 1234);
  CHECK(other.body_limit("GET", "/v1/jobs/7") == 0);
  CHECK(other.body_limit("PUT", "/v1/nothing") == 0);
}

TEST_CASE("access is checked before the handler runs, and unknown paths answer by their realm", "[router]") {
  std::vector<std::string> calls;
  int audited = 0;
  const auto t = make_router(calls, audited);
  Responder r(nullptr);  // answers go nowhere: what matters is whether the handler ran

  // An admin route without the token: refused, audited, the handler never ran.
  CHECK_THROWS_AS(t.dispatch(request("POST", "/v1/jobs/7/cancel"), r), Error);
  CHECK(audited == 1);
  CHECK(calls.empty());
  t.dispatch(request("POST", "/v1/jobs/7/cancel", "Bearer secret"), r);
  CHECK(audited == 2);
  CHECK(calls == std::vector<std::string>{"cancel:7"});

  // A viewer reads but may not change; an operator may not reach an administrator's route. Each
  // refusal is audited and runs nothing.
  t.dispatch(request("GET", "/v1/jobs/7", "Bearer look"), r);
  CHECK(calls.back() == "job:7");
  try {
    t.dispatch(request("POST", "/v1/jobs/7/cancel", "Bearer look"), r);
    FAIL("a viewer cancelled a job");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::forbidden);
    CHECK(std::string(e.what()).find("needs the operator role; victor has the viewer role") !=
          std::string::npos);
  }
  CHECK_THROWS_AS(t.dispatch(request("POST", "/v1/settings", "Bearer secret"), r), Error);
  CHECK(audited == 5);
  CHECK(calls.size() == 2);

  // Open and agent routes run without credentials and are not audited.
  t.dispatch(request("GET", "/v1/status"), r);
  t.dispatch(request("GET", "/v1/agent/work"), r);
  CHECK(calls.size() == 4);
  CHECK(audited == 5);

  // No route: under /v1/agent anyone hears so; in the admin realm only after the token check.
  try {
    t.dispatch(request("GET", "/v1/agent/nothing"), r);
    FAIL("no route was not refused");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::not_found);
  }
  try {
    t.dispatch(request("GET", "/v1/secrets/list"), r);
    FAIL("no route was not refused");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::unauthorized);
  }
  try {
    t.dispatch(request("GET", "/v1/secrets/list", "Bearer secret"), r);
    FAIL("no route was not refused");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::not_found);
  }
  CHECK(calls.size() == 4);
}
