#include <distrib/error.h>
#include <distrib/net/http.h>

#include "harness.h"
#include "security/pki.h"
#include "services/parent_link.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <atomic>
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
// A raw TCP connection from `from` to the server: what a hostile client holds open.
struct RawConnection {
  int fd = -1;
  RawConnection(const std::string& from, std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, from.c_str(), &a.sin_addr);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~RawConnection() { ::close(fd); }
  void send(const std::string& text) const {
    REQUIRE(::send(fd, text.data(), text.size(), MSG_NOSIGNAL) > 0);
  }
  // Did the server close the connection within `ms` (anything it sent first is skipped)?
  bool closed_within(int ms) const {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    char buf[4096];
    while (std::chrono::steady_clock::now() < until) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return true;
    }
    return false;
  }
};
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

TEST_CASE("hostile connections cost little: slow headers and bodies are dropped, connections are capped",
          "[net]") {
  auto settings = local();
  settings.header_timeout_seconds = 1;
  settings.min_body_rate = 1024 * 1024;
  settings.max_connections_per_address = 3;
  settings.max_connections = 6;
  HttpServer server(settings, echo());
  server.start();
  const auto port = server.port();
  SECTION("a silent connection waits for the idle timeout; a header sent slowly is dropped") {
    RawConnection silent("127.0.0.1", port);
    RawConnection slow("127.0.0.2", port);
    slow.send("GET /x HTTP/1.1\r\nHost: x\r\n");  // and never the rest
    const auto started = std::chrono::steady_clock::now();
    CHECK(slow.closed_within(4000));
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(3));
    CHECK_FALSE(silent.closed_within(300));
  }
  SECTION("a body that does not come is dropped") {
    RawConnection slow("127.0.0.2", port);
    slow.send("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc");
    CHECK(slow.closed_within(4000));
  }
  SECTION("connections per address and in total are capped; others are still served") {
    std::vector<std::unique_ptr<RawConnection>> held;
    for (int i = 0; i < 3; ++i) held.push_back(std::make_unique<RawConnection>("127.0.0.3", port));
    REQUIRE(wait_until([&] { return server.open_connections() == 3; }, std::chrono::seconds(5)));
    RawConnection fourth("127.0.0.3", port);
    CHECK(fourth.closed_within(2000));
    CHECK(server.refused_connections() == 1);
    for (int i = 0; i < 3; ++i) held.push_back(std::make_unique<RawConnection>("127.0.0.4", port));
    REQUIRE(wait_until([&] { return server.open_connections() == 6; }, std::chrono::seconds(5)));
    RawConnection seventh("127.0.0.5", port);
    CHECK(seventh.closed_within(2000));
    CHECK(server.refused_connections() == 2);
    held.clear();
    REQUIRE(wait_until([&] { return server.open_connections() == 0; }, std::chrono::seconds(5)));
    HttpClient client({"http://127.0.0.1:" + std::to_string(port), "", "", 5, 10});
    CHECK(client.request("GET", "/ok").status == 200);
  }
  server.stop();
}

TEST_CASE("an unreachable server is an unavailable error naming the URL", "[net]") {
  HttpClient client({"http://127.0.0.1:1", "", "", 2, 2});
  CHECK_THROWS_WITH(client.request("GET", "/"), Catch::Contains("cannot reach http://127.0.0.1:1"));
}

// A listening socket nobody accepts from: the kernel completes connections and takes requests
// into its buffers, and nothing ever answers (a stopped or hung process looks exactly like this).
struct SilentListener {
  int fd = -1;
  std::uint16_t port = 0;
  SilentListener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 16) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd); }
};

TEST_CASE("a peer that stops answering fails the request at its deadline, not never", "[net]") {
  SilentListener silent;
  const auto url = "http://127.0.0.1:" + std::to_string(silent.port);
  SECTION("no answer to a request") {
    HttpClient client({url, "", "", 2, 1});
    const auto t0 = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH(client.request("GET", "/v1/agent/work?wait=30"), Catch::Contains("timed out"));
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took >= std::chrono::milliseconds(900));
    CHECK(took < std::chrono::seconds(5));
  }
  SECTION("the event stream of a peer that stops answering") {
    HttpClient client({url, "", "", 2, 1});
    CHECK_THROWS_WITH(
        client.stream("GET", "/v1/events/stream", {}, "", [](std::string_view) { return true; }),
        Catch::Contains("timed out"));
  }
  SECTION("an answer that stalls halfway") {
    // Headers and half the body, then silence: the deadline counts from the last byte.
    std::thread peer([&] {
      const int c = ::accept(silent.fd, nullptr, nullptr);
      char buf[4096];
      (void)::recv(c, buf, sizeof buf, 0);
      const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf";
      (void)::send(c, head.data(), head.size(), MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(2500));
      ::close(c);
    });
    HttpClient client({url, "", "", 2, 1});
    CHECK_THROWS_WITH(client.request("GET", "/"), Catch::Contains("timed out"));
    peer.join();
  }
  SECTION("a slow body that keeps coming is not cut off") {
    std::thread peer([&] {
      const int c = ::accept(silent.fd, nullptr, nullptr);
      char buf[4096];
      (void)::recv(c, buf, sizeof buf, 0);
      const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n";
      (void)::send(c, head.data(), head.size(), MSG_NOSIGNAL);
      for (int i = 0; i < 4; ++i) {  // 2.4 s in all, longer than the 1 s deadline
        std::this_thread::sleep_for(std::chrono::milliseconds(600));
        (void)::send(c, "x", 1, MSG_NOSIGNAL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      ::close(c);
    });
    HttpClient client({url, "", "", 2, 1});
    const auto res = client.request("GET", "/");
    CHECK(res.status == 200);
    CHECK(res.body == "xxxx");
    peer.join();
  }
}

TEST_CASE("a held answer with a heartbeat keeps a strict client waiting, and the connection is reused",
          "[net]") {
  auto handler = [](HttpRequest&& req, Responder r) {
    if (req.path == "/held") r.heartbeat(" ", std::chrono::milliseconds(300), "application/json");
    if (req.path == "/now") return r(HttpResponse{200, "application/json", R"({"now":true})", {}, {}});
    std::thread([r = std::move(r)]() mutable {
      std::this_thread::sleep_for(std::chrono::milliseconds(1800));
      r(HttpResponse{200, "application/json", R"({"work":[]})", {}, {}});
    }).detach();
  };
  HttpServer server(local(), handler);
  server.start();
  // The client gives up after 1 s of silence; the answer takes 1.8 s.
  HttpClient client({"http://127.0.0.1:" + std::to_string(server.port()), "", "", 2, 1});
  const auto held = client.request("GET", "/held");
  CHECK(held.status == 200);
  CHECK(held.body.find_first_not_of(' ') >= 3);  // beats first (every 300 ms), then the answer
  CHECK(held.body.substr(held.body.find_first_not_of(' ')) == R"({"work":[]})");
  CHECK(client.request("GET", "/now").body == R"({"now":true})");  // the same connection serves on
  // Without a heartbeat the same wait is silence: the client gives up.
  CHECK_THROWS_WITH(client.request("GET", "/silent"), Catch::Contains("timed out"));
  server.stop();
}

TEST_CASE("a POST whose connection breaks after it was sent is not sent again, a GET is", "[net]") {
  // Each connection: the first request is answered (kept alive), the second is read and the
  // connection closed without an answer — a server that died after acting, or before.
  SilentListener peer;
  std::atomic<int> requests{0};
  std::thread server([&] {
    for (int conn = 0; conn < 2; ++conn) {
      const int c = ::accept(peer.fd, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      for (int i = 0; i < 2; ++i) {
        if (::recv(c, buf, sizeof buf, 0) <= 0) break;
        ++requests;
        if (i == 0) {
          const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
          (void)::send(c, ok.data(), ok.size(), MSG_NOSIGNAL);
        }
      }
      ::close(c);
    }
  });
  HttpClient client({"http://127.0.0.1:" + std::to_string(peer.port), "", "", 2, 2});
  REQUIRE(client.request("GET", "/first").status == 200);
  CHECK_THROWS_WITH(client.request("POST", "/v1/jobs", "{}"),
                    Catch::Contains("may or may not have been applied"));
  CHECK(requests == 2);                                    // sent once, not again on a new connection
  REQUIRE(client.request("GET", "/first").status == 200);  // a new connection
  CHECK(requests == 3);
  // A GET is sent again on a fresh connection (it fails there too: nothing listens any more).
  CHECK_THROWS(client.request("GET", "/again"));
  CHECK(requests == 4);
  server.join();
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

TEST_CASE("mutual TLS: the server sees the client certificate its CA issued, and refuses others", "[net]") {
  TempDir tmp;
  const auto ca = pki::create_authority("test CA", 2);
  const auto server_key = pki::generate_key();
  write_file(tmp / "ca.crt", ca.cert_pem);
  write_file(tmp / "server.crt", pki::issue_server(ca, server_key, {}, {"127.0.0.1"}, 2, 2));
  write_file(tmp / "server.key", server_key);
  const pki::Identity id{"3b2a77bf-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "agent"};
  const auto agent_key = pki::generate_key();
  const auto agent_cert = pki::issue_host(ca, pki::make_request(agent_key, id), 2 * 86400, 3);
  write_file(tmp / "agent.crt", agent_cert);
  write_file(tmp / "agent.key", agent_key);
  const auto other = pki::create_authority("other CA", 2);
  write_file(tmp / "forged.crt", pki::issue_host(other, pki::make_request(agent_key, id), 2 * 86400, 3));

  auto s = local();
  s.tls_cert_file = (tmp / "server.crt").string();
  s.tls_key_file = (tmp / "server.key").string();
  s.tls_client_ca_file = (tmp / "ca.crt").string();
  HttpServer server(s, [](HttpRequest&& req, Responder r) {
    const auto& p = req.peer;
    r(HttpResponse{200,
                   "text/plain",
                   p.present()
                       ? p.subject + " " + (p.uris.empty() ? "" : p.uris[0]) + " " + std::to_string(p.serial)
                       : "anonymous",
                   {},
                   {}});
  });
  server.start();
  const auto url = "https://127.0.0.1:" + std::to_string(server.port());
  auto settings = [&](const char* cert) {
    HttpClientSettings c{url, (tmp / "ca.crt").string(), "", 5, 10};
    if (cert) {
      c.cert_file = (tmp / cert).string();
      c.key_file = (tmp / "agent.key").string();
    }
    return c;
  };
  HttpClient with(settings("agent.crt"));
  CHECK(with.request("GET", "/who").body == id.host_id + " urn:distrib:agent:" + id.host_id + " 3");
  // Optional by default: a client without a certificate is served, as nobody in particular.
  HttpClient without(settings(nullptr));
  CHECK(without.request("GET", "/who").body == "anonymous");
  // A certificate another CA issued fails the handshake: nobody can claim an identity with it.
  HttpClient forged(settings("forged.crt"));
  CHECK_THROWS_AS(forged.request("GET", "/who"), Error);
  HttpClientSettings half = settings(nullptr);
  half.cert_file = (tmp / "agent.crt").string();
  CHECK_THROWS_WITH(HttpClient(half), Catch::Contains("both a certificate file and a key file"));
  server.stop();

  // Required: no certificate, no connection.
  s.require_client_certificate = true;
  HttpServer strict(s, echo());
  strict.start();
  const auto strict_url = "https://127.0.0.1:" + std::to_string(strict.port());
  HttpClientSettings anon{strict_url, (tmp / "ca.crt").string(), "", 5, 10};
  CHECK_THROWS_AS(HttpClient(anon).request("GET", "/x"), Error);
  auto ok = anon;
  ok.cert_file = (tmp / "agent.crt").string();
  ok.key_file = (tmp / "agent.key").string();
  CHECK(HttpClient(ok).request("GET", "/x").status == 200);
  strict.stop();
  s.tls_client_ca_file.clear();
  CHECK_THROWS_WITH(HttpServer(s, echo()).start(), Catch::Contains("needs a client CA file"));
}

TEST_CASE("a gather-list answer arrives whole: body then parts, on a reused connection", "[net]") {
  // Large parts shared with a "cache", as a segment's frames are: sent as they are, in order.
  auto big = std::make_shared<const std::string>(std::string(3 << 20, 'b'));
  auto small = std::make_shared<const std::string>("head\n");
  HttpServer server(local(), [&](HttpRequest&& req, Responder r) {
    HttpResponse res;
    res.content_type = "application/octet-stream";
    if (req.path == "/parts") {
      res.body = "start:";
      res.parts = {small, big, small};
    } else {
      res.body = "plain";
    }
    r(std::move(res));
  });
  server.start();
  HttpClient client({"http://127.0.0.1:" + std::to_string(server.port()), "", "", 5, 10});
  for (int i = 0; i < 3; ++i) {
    const auto got = client.request("GET", "/parts");
    REQUIRE(got.status == 200);
    CHECK(got.body.size() == 6 + 5 + big->size() + 5);
    CHECK(got.body == "start:" + *small + *big + *small);
    CHECK(client.request("GET", "/other").body == "plain");  // the connection is reused
  }
  CHECK(big.use_count() == 1);  // the server let go of what it sent
}
