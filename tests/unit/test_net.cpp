#include <distrib/error.h>
#include <distrib/net/http.h>

#include "harness.h"
#include "services/parent_link.h"

#include <catch2/catch.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>

using namespace distrib;
using namespace distrib::test;

namespace {
HttpServerSettings local() {
  HttpServerSettings s;
  s.address = "127.0.0.1";
  s.port = 0;
  s.threads = 2;
  s.body_limit = 1024;
  return s;
}
HttpHandler echo() {
  return [](HttpRequest&& req, Responder r) {
    if (req.path == "/late") {
      std::thread([r = std::move(r)]() mutable {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        r(HttpResponse{200, "text/plain", "late", {}, {}});
      }).detach();
      return;
    }
    if (req.path == "/forget") return;  // the Responder's destructor answers 500
    if (req.path == "/throw") throw std::runtime_error("handler bug");
    r(HttpResponse{
        200, "text/plain", req.method + " " + req.path + " " + req.query["q"] + " " + req.body, {}, {}});
  };
}
}  // namespace

TEST_CASE("base URLs are parsed strictly", "[net]") {
  auto u = parse_base_url("https://manager.example:8443");
  CHECK(u.tls);
  CHECK(u.host == "manager.example");
  CHECK(u.port == 8443);
  CHECK(parse_base_url("http://127.0.0.1").port == 80);
  CHECK(parse_base_url("http://[::1]:9000").host == "::1");
  CHECK_THROWS_WITH(parse_base_url("ftp://x"), Catch::Contains("must start with http"));
  CHECK_THROWS_WITH(parse_base_url("http://x:99999"), Catch::Contains("bad port"));
  CHECK_THROWS_WITH(parse_base_url("http://x/path"), Catch::Contains("must not have a path"));
  CHECK(url_encode("a b/ü") == "a%20b%2F%C3%BC");
}

TEST_CASE("the server answers, keeps connections alive and survives bad requests", "[net]") {
  HttpServer server(local(), echo());
  server.start();
  HttpClient client({"http://127.0.0.1:" + std::to_string(server.port()), "", "", 5, 10});
  auto r = client.request("POST", "/x?q=a%20b", "hello", "text/plain");
  CHECK(r.status == 200);
  CHECK(r.body == "POST /x a b hello");
  CHECK(client.request("GET", "/late").body == "late");
  CHECK(client.request("GET", "/forget").status == 500);
  CHECK(client.request("GET", "/throw").status == 500);
  auto big = client.request("POST", "/x", std::string(4096, 'x'), "text/plain");
  CHECK(big.status == 413);
  CHECK(big.body.find("exceeds the limit") != std::string::npos);
  // A new connection still works after all of that.
  HttpClient again({"http://127.0.0.1:" + std::to_string(server.port()), "", "", 5, 10});
  CHECK(again.request("GET", "/ok").status == 200);
  server.stop();
}

TEST_CASE("an unreachable server is an unavailable error naming the URL", "[net]") {
  HttpClient client({"http://127.0.0.1:1", "", "", 2, 2});
  CHECK_THROWS_WITH(client.request("GET", "/"), Catch::Contains("cannot reach http://127.0.0.1:1"));
}

TEST_CASE("TLS: a client trusting the CA connects; one that does not is refused", "[net]") {
  TempDir tmp;
  const auto d = tmp.path().string();
  auto sh = [&](const std::string& cmd) { return run({"/bin/sh", "-c", cmd}, std::chrono::seconds(60)); };
  auto gen = sh("cd " + d +
                " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca "
                "-keyout ca.key -out ca.crt && openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 "
                "-keyout server.key -out server.csr && printf 'subjectAltName=IP:127.0.0.1\\n' > ext && "
                "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
                "-extfile ext -out server.crt && openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
                "-subj /CN=other-ca -keyout other.key -out other.crt");
  INFO(gen.err);
  REQUIRE(gen.exit_code == 0);
  auto s = local();
  s.tls_cert_file = d + "/server.crt";
  s.tls_key_file = d + "/server.key";
  HttpServer server(s, echo());
  server.start();
  const auto url = "https://127.0.0.1:" + std::to_string(server.port());
  HttpClient good({url, d + "/ca.crt", "", 5, 10});
  CHECK(good.request("GET", "/secure").body == "GET /secure  ");
  HttpClient bad({url, d + "/other.crt", "", 5, 10});
  CHECK_THROWS_WITH(bad.request("GET", "/secure"), Catch::Contains("TLS handshake failed"));
  HttpClient plain({"http://127.0.0.1:" + std::to_string(server.port()), "", "", 5, 5});
  CHECK_THROWS_AS(plain.request("GET", "/secure"), Error);
  CHECK(good.request("GET", "/still-serving").status == 200);
  CHECK_THROWS_WITH(HttpClient({url, d + "/missing.crt", "", 5, 5}), Catch::Contains("cannot load CA file"));
  server.stop();
}

TEST_CASE("forwarding clients: concurrent requests to a parent each get a connection of their own", "[net]") {
  // The server holds each request until two are in flight at once (or 10 s pass): with one client
  // shared under a lock the second request would only start after the first ended.
  std::mutex m;
  std::condition_variable cv;
  int in_flight = 0, most = 0;
  HttpServer server(local(), [&](HttpRequest&&, Responder r) {
    std::thread([&, r = std::move(r)]() mutable {
      std::unique_lock lock(m);
      most = std::max(most, ++in_flight);
      cv.notify_all();
      cv.wait_for(lock, std::chrono::seconds(10), [&] { return most >= 2; });
      --in_flight;
      lock.unlock();
      r(HttpResponse{200, "application/json", "{}", {}, {}});
    }).detach();
  });
  server.start();
  ParentLink link({{"http://127.0.0.1:" + std::to_string(server.port())}, "", "", 30});
  ClientPool pool(link);
  auto call = [&] {
    auto c = pool.lease(link.current());
    c->set_timeout(20);
    CHECK(c->request("POST", "/v1/agent/join", "{}", "application/json").status == 200);
  };
  std::thread a(call), b(call);
  a.join();
  b.join();
  CHECK(most == 2);
  CHECK(pool.size() == 2);
  call();  // an idle client is used again
  CHECK(pool.size() == 2);
  pool.abort();
  CHECK_THROWS_WITH(pool.lease(link.current()), Catch::Contains("stopping"));
  server.stop();
}
