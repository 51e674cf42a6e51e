// The manager's route table: every route with its access level, pinned, so that a route that is
// added, removed or changes who may call it shows up as a diff here. And the router enforces it:
// every administrative route (viewer, operator, administrator) refuses a request without the admin token,
// before doing anything.
#include <distrib/net/http.h>

#include "harness.h"
#include "test_identity.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <map>

using namespace distrib;
using namespace distrib::test;

namespace {

// METHOD PATH ACCESS, by path and then method (the order GET /v1/routes lists them in, whichever
// facility declares them).
const char* const kPinned[] = {
    "GET /metrics metrics",
    "HEAD /metrics metrics",
    "POST /v1/agent/collect agent",
    "POST /v1/agent/enrol open",
    "POST /v1/agent/inventory agent",
    "GET /v1/agent/inventory-fields agent",
    "POST /v1/agent/join agent",
    "GET /v1/agent/publishers agent",
    "POST /v1/agent/register agent",
    "POST /v1/agent/renew agent",
    "POST /v1/agent/report agent",
    "GET /v1/agent/transfer agent",
    "GET /v1/agent/work agent",
    "GET /v1/audit administrator",
    "GET /v1/ca open",
    "POST /v1/chunks/batch operator",
    "POST /v1/chunks/missing operator",
    "PUT /v1/chunks/{digest} operator",
    "GET /v1/cluster/status viewer",
    "POST /v1/content/bad-chunks agent",
    "POST /v1/content/chunks agent",
    "GET /v1/content/chunks/{digest} agent",
    "GET /v1/content/manifests/{name}/{version} agent",
    "GET /v1/content/verify viewer",
    "POST /v1/content/verify operator",
    "POST /v1/enrol-bundle administrator",
    "GET /v1/enrol-tokens administrator",
    "POST /v1/enrol-tokens administrator",
    "DELETE /v1/enrol-tokens/{id} administrator",
    "GET /v1/enrolments viewer",
    "POST /v1/enrolments/{host}/accept operator",
    "POST /v1/enrolments/{host}/reject operator",
    "POST /v1/enrolments/{host}/revoke administrator",
    "GET /v1/events viewer",
    "GET /v1/events/sinks viewer",
    "GET /v1/events/stream viewer",
    "GET /v1/groups viewer",
    "POST /v1/groups operator",
    "DELETE /v1/groups/{name} operator",
    "GET /v1/groups/{name} viewer",
    "POST /v1/groups/{name}/members operator",
    "GET /v1/hosts viewer",
    "POST /v1/hosts/approve operator",
    "GET /v1/id-groups viewer",
    "POST /v1/id-groups operator",
    "DELETE /v1/id-groups/{name} operator",
    "GET /v1/id-groups/{name} viewer",
    "POST /v1/id-groups/{name}/members operator",
    "GET /v1/inventory viewer",
    "GET /v1/inventory/fields viewer",
    "POST /v1/inventory/fields administrator",
    "DELETE /v1/inventory/fields/{name} administrator",
    "GET /v1/inventory/hosts/{key} viewer",
    "GET /v1/inventory/hosts/{key}/history viewer",
    "GET /v1/jobs viewer",
    "POST /v1/jobs operator",
    "GET /v1/jobs/{id} viewer",
    "POST /v1/jobs/{id}/cancel operator",
    "POST /v1/jobs/{id}/complete-now operator",
    "GET /v1/jobs/{id}/files viewer",
    "GET /v1/jobs/{id}/files/{host} operator",
    "POST /v1/jobs/{id}/retry operator",
    "GET /v1/packages viewer",
    "POST /v1/packages operator",
    "GET /v1/packages/{name}/{version} viewer",
    "GET /v1/publishers viewer",
    "POST /v1/publishers administrator",
    "DELETE /v1/publishers/{id} administrator",
    "GET /v1/relay/revoked relay",
    "POST /v1/relay/sync relay",
    "GET /v1/routes viewer",
    "GET /v1/stats viewer",
    "GET /v1/status open",
    "POST /v1/transfers/resume operator",
    "POST /v1/transfers/suspend operator",
    "GET /v1/users administrator",
    "POST /v1/users administrator",
    "DELETE /v1/users/{name} administrator",
    "POST /v1/users/{name}/certificate viewer",
    "POST /v1/users/{name}/token administrator",
};

// A concrete path for a pattern: placeholders filled with something of the right shape.
std::string concrete(std::string path) {
  for (const auto& [from, to] :
       std::vector<std::pair<std::string, std::string>>{{"{digest}", std::string(64, 'a')},
                                                        {"{id}", "1"},
                                                        {"{name}", "web"},
                                                        {"{version}", "1.0"},
                                                        {"{host}", "h"},
                                                        {"{key}", "h"}}) {
    for (auto at = path.find(from); at != std::string::npos; at = path.find(from))
      path.replace(at, from.size(), to);
  }
  return path;
}

}  // namespace

TEST_CASE("the route table is pinned and the router enforces each route's access", "[integration]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  const auto token = read_file(m.token_file()).substr(0, 64);
  HttpClient c({m.url(), m.ca_file(), "", 5, 10});

  auto listed = c.request("GET", "/v1/routes", "", "", token);
  REQUIRE(listed.status == 200);
  std::vector<std::string> table;
  const auto answer = boost::json::parse(listed.body);
  for (const auto& v : answer.at("routes").as_array()) {
    const auto& o = v.as_object();
    table.push_back(std::string(o.at("method").as_string()) + " " + std::string(o.at("path").as_string()) +
                    " " + std::string(o.at("access").as_string()));
  }
  CHECK(table == std::vector<std::string>(std::begin(kPinned), std::end(kPinned)));
  // Each route's body limit: 4 MiB unless it declares its own.
  std::map<std::string, std::uint64_t> limits;
  for (const auto& v : answer.at("routes").as_array()) {
    const auto& o = v.as_object();
    limits[std::string(o.at("method").as_string()) + " " + std::string(o.at("path").as_string())] =
        o.at("body_limit").to_number<std::uint64_t>();
  }
  CHECK(limits.at("POST /v1/jobs") == 4u << 20);
  CHECK(limits.at("PUT /v1/chunks/{digest}") == (16u << 20) + 64 * 1024);
  CHECK(limits.at("POST /v1/chunks/batch") == 48u << 20);
  CHECK(limits.at("POST /v1/packages") == 64u << 20);
  CHECK(limits.at("POST /v1/agent/collect") == 256u << 20);
  CHECK(limits.at("POST /v1/agent/inventory") == 64u << 20);
  // ... and the server holds to it before reading the body: 5 MiB of JSON is refused at
  // /v1/jobs (413) but read, and judged on its content, at /v1/agent/inventory (400).
  const std::string big = "{\"pad\":\"" + std::string(5u << 20, 'x') + "\"}";
  CHECK(c.request("POST", "/v1/jobs", big, "application/json", token).status == 413);
  const auto host = enrol_test_host(m, tmp / "host", "routes");
  HttpClient as_host(client_settings(host, m.url()));
  CHECK(as_host.request("POST", "/v1/agent/inventory", big, "application/json").status == 400);

  // Without credentials every admin route is refused with 401, every agent and relay route too
  // (they need an enrolled host's certificate), and nothing is done; open routes answer.
  const auto jobs_before = m.ctl({"job", "list"}, true).out;
  for (const auto& row : table) {
    const auto method = row.substr(0, row.find(' '));
    const auto pattern = row.substr(method.size() + 1, row.rfind(' ') - method.size() - 1);
    const auto access = row.substr(row.rfind(' ') + 1);
    if (pattern == "/v1/events/stream") continue;  // answered with a stream when admitted
    INFO(row);
    HttpClient one({m.url(), m.ca_file(), "", 5, 10});
    const auto body = method == "POST" || method == "PUT" ? std::string("{}") : std::string();
    const auto r = one.request(method, concrete(pattern), body, body.empty() ? "" : "application/json", "");
    if (access == "metrics" || access == "viewer" || access == "operator" || access == "administrator") {
      CHECK(r.status == 401);
      CHECK(r.body.find("admin bearer token") != std::string::npos);
    } else if (access == "agent" || access == "relay") {
      CHECK(r.status == 401);
      CHECK(r.body.find("client certificate of an enrolled host") != std::string::npos);
      // An agent's certificate opens agent routes, not relay routes.
      HttpClient agent(client_settings(host, m.url()));
      const auto a =
          agent.request(method, concrete(pattern), body, body.empty() ? "" : "application/json", "");
      CHECK(a.status != 401);
      if (access == "relay") CHECK(a.status == 403);
    } else {
      CHECK(r.status != 401);
    }
  }
  CHECK(m.ctl({"job", "list"}, true).out == jobs_before);

  // A path that matches no route: under /v1/agent an enrolled host hears so; elsewhere under /v1 only an
  // administrator does (an unknown path tells nothing to an unauthenticated caller).
  CHECK(c.request("GET", "/v1/agent/nothing").status == 401);
  CHECK(as_host.request("GET", "/v1/agent/nothing").status == 404);
  CHECK(c.request("GET", "/v1/nothing").status == 401);
  CHECK(c.request("GET", "/v1/nothing", "", "", token).status == 404);
  CHECK(c.request("DELETE", "/v1/jobs", "", "", token).status == 404);
}
