// Event sinks: the settings syntax, the registry and every built-in sink against a real receiver
// (a file, sockets bound here, an HTTP server, a shell, snmptrapd).
#include <distrib/error.h>
#include <distrib/model/event.h>
#include <distrib/net/http.h>
#include <distrib/services/events.h>
#include <distrib/store/store.h>

#include "harness.h"
#include "services/event_sinks.h"
#include "services/observe.h"

#include <fmt/format.h>
#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <mutex>
#include <optional>
#include <sstream>
#include <utility>

using namespace distrib;
using namespace distrib::test;
using Catch::Contains;

namespace {

constexpr std::int64_t kAtMs = 1796131828123;  // 2026-12-01T13:30:28.123Z

Event sample(std::int64_t id, std::string type = "job.completed", Severity severity = Severity::info) {
  Event e;
  e.id = id;
  e.type = std::move(type);
  e.severity = severity;
  e.at_ms = kAtMs;
  e.job_id = 12;
  e.host_id = "h-1";
  e.subject = "web01";
  e.message = "event " + std::to_string(id);
  return e;
}

EventSinkRegistry builtins() {
  EventSinkRegistry r;
  register_builtin_event_sinks(r);
  return r;
}

std::unique_ptr<EventSink> make_sink(const std::string& spec) {
  return builtins().create(parse_event_sink(spec));
}

/// Closes a socket at scope exit.
struct Socket {
  int fd;
  explicit Socket(int f) : fd(f) { REQUIRE(fd >= 0); }
  Socket(Socket&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
  Socket& operator=(Socket&&) = delete;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() {
    if (fd >= 0) ::close(fd);
  }
};

/// One datagram (or what a stream has), waiting at most 5 s.
std::string receive(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 5000) != 1) return {};
  char buf[65536];
  const auto n = ::recv(fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

Socket bind_loopback(int type) {
  Socket s(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return s;
}

int local_port(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  return ntohs(addr.sin_port);
}

Socket bind_unix(const stdfs::path& path, int type) {
  Socket s(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.string().copy(addr.sun_path, sizeof addr.sun_path - 1);
  REQUIRE(::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return s;
}

std::string hostname_of_this_machine() {
  char name[256] = {};
  REQUIRE(::gethostname(name, sizeof name - 1) == 0);
  return name;
}

}  // namespace

TEST_CASE("parse_event_sink reads the name, type, target and every common key", "[events]") {
  const auto s = parse_event_sink(
      "ops-1=webhook:https://hooks.example.com:8443/distrib?x=1;types=job.*,entry.failed;severity=warning;"
      "max-attempts=5;timeout=1500ms;secret=s3cret");
  CHECK(s.name == "ops-1");
  CHECK(s.type == "webhook");
  CHECK(s.target == "https://hooks.example.com:8443/distrib?x=1");
  CHECK(s.filter.types == std::vector<std::string>{"job.*", "entry.failed"});
  CHECK(s.filter.min_severity == Severity::warning);
  CHECK(s.max_attempts == 5);
  CHECK(s.timeout == std::chrono::milliseconds(1500));
  CHECK(s.options == std::map<std::string, std::string>{{"secret", "s3cret"}});

  const auto d = parse_event_sink("log=syslog");
  CHECK(d.type == "syslog");
  CHECK(d.target.empty());
  CHECK(d.filter.types.empty());
  CHECK(d.filter.min_severity == Severity::info);
  CHECK(d.max_attempts == 0);
  CHECK(d.timeout == std::chrono::seconds(10));
  CHECK(d.options.empty());

  CHECK(parse_event_sink("s=syslog:udp:127.0.0.1:514").target == "udp:127.0.0.1:514");
  CHECK(parse_event_sink("s=syslog:;timeout=2m").timeout == std::chrono::minutes(2));
  CHECK(parse_event_sink("s=syslog:;timeout=100ms").timeout == std::chrono::milliseconds(100));
  CHECK(parse_event_sink("s=syslog:;max-attempts=0").max_attempts == 0);
}

TEST_CASE("parse_event_sink names what is wrong", "[events]") {
  CHECK_THROWS_WITH(parse_event_sink("file:/var/log/x"),
                    Contains("\"file:/var/log/x\"") && Contains("NAME=TYPE:TARGET"));
  CHECK_THROWS_WITH(parse_event_sink("Ops=file:/x"), Contains("\"Ops\"") && Contains("a-z"));
  CHECK_THROWS_WITH(parse_event_sink("=file:/x;secret=s"),
                    Contains("event sink \"=file:/x\"") && Contains("name"));
  CHECK_THROWS_WITH(parse_event_sink(std::string(65, 'a') + "=file:/x"), Contains("1 to 64"));
  CHECK_THROWS_WITH(parse_event_sink("ops=;types=job.*"),
                    Contains("event sink \"ops\"") && Contains("TYPE:TARGET"));
  CHECK_THROWS_WITH(parse_event_sink("ops=file:/x;severity=loud"),
                    Contains("event sink \"ops\"") && Contains("\"loud\""));
  CHECK_THROWS_WITH(parse_event_sink("ops=file:/x;types=job.*,bogus.*"),
                    Contains("event sink \"ops\"") && Contains("bogus.*"));
  CHECK_THROWS_WITH(parse_event_sink("ops=file:/x;max-attempts=x"),
                    Contains("event sink \"ops\": max-attempts must be a whole number >= 0, not \"x\""));
  CHECK_THROWS_WITH(parse_event_sink("ops=file:/x;max-attempts=-1"), Contains("not \"-1\""));
  CHECK_THROWS_WITH(parse_event_sink("ops=file:/x;timeout=10"),
                    Contains("timeout") && Contains("not \"10\""));
  CHECK_THROWS_WITH(parse_event_sink("ops=file:/x;timeout=50ms"), Contains("not \"50ms\""));
  CHECK_THROWS_WITH(parse_event_sink("ops=file:/x;timeout=11m"), Contains("not \"11m\""));
  CHECK_THROWS_WITH(parse_event_sink("ops=file:/x;timeout=soon"), Contains("not \"soon\""));
  CHECK_THROWS_WITH(parse_event_sink("ops=syslog;app=a;app=b"),
                    Contains("event sink \"ops\"") && Contains("\"app\" is given twice"));
  CHECK_THROWS_WITH(parse_event_sink("ops=file:/x;timeout=5s;timeout=6s"),
                    Contains("\"timeout\" is given twice"));
  CHECK_THROWS_WITH(parse_event_sink("ops=file:/x;verbose"),
                    Contains("event sink \"ops\"") && Contains("\"verbose\" is not key=value"));
  CHECK_THROWS_WITH(parse_event_sink("ops=file:/x;"), Contains("\"\" is not key=value"));
  CHECK_THROWS_AS(parse_event_sink("ops=file:/x;verbose"), Error);
}

TEST_CASE("the registry lists its types and refuses unknown types, options and bad targets", "[events]") {
  auto r = builtins();
  CHECK(r.types() == std::vector<std::string>{"exec", "file", "snmp", "syslog", "webhook"});
  CHECK_THROWS_WITH(
      r.create(parse_event_sink("ops=foo:bar")),
      Contains("event sink \"ops\": unknown type \"foo\" (known: exec, file, snmp, syslog, webhook)"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("ops=file:/tmp/x.jsonl;colour=red")),
                    Contains("event sink \"ops\"") && Contains("\"colour\"") &&
                        Contains("types, severity, max-attempts, timeout"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("ops=syslog;colour=red")),
                    Contains("\"colour\"") && Contains("facility, app, hostname"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("ops=webhook:http://127.0.0.1:9/x;community=x")),
                    Contains("\"community\"") && Contains("secret, secret-file, ca-file"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("ops=file:events.jsonl")), Contains("event sink \"ops\"") &&
                                                                             Contains("absolute path") &&
                                                                             Contains("\"events.jsonl\""));
  CHECK_THROWS_WITH(r.create(parse_event_sink("ops=file:")), Contains("absolute path"));
  CHECK_THROWS_WITH(
      r.create(parse_event_sink("hook=webhook:http://127.0.0.1:9/x;secret-file=/nonexistent/distrib.key")),
      Contains("event sink \"hook\"") && Contains("/nonexistent/distrib.key"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("hook=webhook:ftp://example.com/x")), Contains("http://"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("hook=webhook:http://127.0.0.1:9/x;secret=a;secret-file=/k")),
                    Contains("not both"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("hook=webhook:http://127.0.0.1:9/x;ca-file=/ca.pem")),
                    Contains("https://"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("run=exec:")),
                    Contains("event sink \"run\"") && Contains("script"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("log=syslog:udp:127.0.0.1")), Contains("udp:HOST:PORT"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("log=syslog:http://x")), Contains("unix:/PATH"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("log=syslog;facility=mars")),
                    Contains("\"mars\"") && Contains("local7"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("log=syslog;facility=24")), Contains("\"24\""));
  CHECK_THROWS_WITH(r.create(parse_event_sink("log=syslog;app=two words")), Contains("\"two words\""));
  CHECK_THROWS_WITH(r.create(parse_event_sink("trap=snmp:")),
                    Contains("event sink \"trap\"") && Contains("HOST"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("trap=snmp:127.0.0.1:99999")), Contains("port"));
  CHECK_THROWS_WITH(r.create(parse_event_sink("trap=snmp:127.0.0.1;oid=1.3.x")),
                    Contains("oid must be a numeric OID") && Contains("\"1.3.x\""));
  CHECK_NOTHROW(r.create(parse_event_sink("trap=snmp:127.0.0.1;oid=.1.3.6.1.4.1.99999")));
  CHECK_NOTHROW(r.create(parse_event_sink("log=syslog;facility=local3;app=x")));
  CHECK_THROWS_AS(r.add("file", {}, [](const EventSinkSettings&) { return std::unique_ptr<EventSink>(); }),
                  Error);
}

TEST_CASE("file sink: JSON lines in order, appended by a second sink", "[events]") {
  TempDir tmp;
  const auto path = tmp / "not/yet/events.jsonl";  // the directories are created
  {
    auto sink = make_sink("ops=file:" + path.string());
    sink->deliver(sample(1, "job.created"));
    sink->deliver(sample(2, "entry.failed", Severity::error));
    sink->deliver(sample(3, "job.completed"));
    sink->flush();
  }
  auto sink = make_sink("again=file:" + path.string());
  sink->deliver(sample(4, "host.registered"));
  sink->flush();

  std::istringstream lines(read_file(path));
  std::vector<boost::json::object> objects;
  for (std::string line; std::getline(lines, line);) objects.push_back(boost::json::parse(line).as_object());
  REQUIRE(objects.size() == 4);
  const std::vector<std::string> types{"job.created", "entry.failed", "job.completed", "host.registered"};
  for (std::size_t i = 0; i < objects.size(); ++i) {
    CHECK(objects[i].at("id").to_number<std::int64_t>() == static_cast<std::int64_t>(i + 1));
    CHECK(objects[i].at("type").as_string() == types[i]);
    CHECK(objects[i].at("message").as_string() == "event " + std::to_string(i + 1));
  }
  CHECK(objects[1].at("severity").as_string() == "error");
  CHECK(objects[0].at("time").as_string() == "2026-12-01T13:30:28.123Z");
  CHECK(read_file(path).back() == '\n');

  CHECK_THROWS_WITH(make_sink("ops=file:" + (tmp / "not").string()), Contains((tmp / "not").string()));
}

TEST_CASE("syslog: RFC 5424 messages with structured data", "[events]") {
  auto e = sample(42, "entry.failed", Severity::error);
  e.subject = "we\"b]0\\1";
  e.message = "install failed: exit 3";
  // local0 (16) * 8 + error (3) = 131
  CHECK(format_syslog_5424(e, 16, "web01.example", "distribd", 4242) ==
        "<131>1 2026-12-01T13:30:28.123Z web01.example distribd 4242 entry.failed [distrib@53864 id=\"42\" "
        "type=\"entry.failed\" job=\"12\" host=\"h-1\" subject=\"we\\\"b\\]0\\\\1\"] install failed: exit 3");

  Event plain;
  plain.id = 1;
  plain.type = "job.completed";
  plain.at_ms = kAtMs;
  plain.message = "done";
  // daemon (3) * 8 + informational (6) = 30; no job, host or subject; an empty hostname is "-"
  CHECK(format_syslog_5424(plain, 3, "", "app", 7) ==
        "<30>1 2026-12-01T13:30:28.123Z - app 7 job.completed [distrib@53864 id=\"1\" "
        "type=\"job.completed\"] done");
  plain.severity = Severity::warning;
  plain.message.clear();
  plain.type = std::string(40, 'x');  // MSGID is at most 32 characters
  CHECK(format_syslog_5424(plain, 23, "h", "a", 1) ==
        "<188>1 2026-12-01T13:30:28.123Z h a 1 " + std::string(32, 'x') + " [distrib@53864 id=\"1\" type=\"" +
            std::string(40, 'x') + "\"]");
}

TEST_CASE("syslog: datagrams on a unix socket and on UDP, frames on TCP", "[events]") {
  TempDir tmp;
  const auto e = sample(5, "job.completed");
  const auto expected = [&](const std::string& host) {
    return format_syslog_5424(e, 3, host, "distribd", static_cast<int>(::getpid()));
  };

  SECTION("unix datagram socket") {
    const auto path = tmp / "log.sock";
    auto server = bind_unix(path, SOCK_DGRAM);
    auto sink = make_sink("log=syslog:unix:" + path.string() + ";hostname=testhost");
    sink->deliver(e);
    const auto got = receive(server.fd);
    CHECK(got == expected("testhost"));
    CHECK(got.starts_with("<30>1 "));
    CHECK_THAT(got, Contains(e.message));
    sink->deliver(sample(6));
    CHECK_THAT(receive(server.fd), Contains("event 6"));
  }
  SECTION("unix stream socket (the datagram connect fails with EPROTOTYPE)") {
    const auto path = tmp / "log.stream";
    auto server = bind_unix(path, SOCK_STREAM);
    REQUIRE(::listen(server.fd, 4) == 0);
    auto sink = make_sink("log=syslog:unix:" + path.string() + ";hostname=testhost;facility=local1");
    sink->deliver(e);
    Socket conn(::accept(server.fd, nullptr, nullptr));
    std::string got;
    while (got.find('\0') == std::string::npos) {
      const auto more = receive(conn.fd);
      if (more.empty()) break;
      got += more;
    }
    CHECK(got == format_syslog_5424(e, 17, "testhost", "distribd", static_cast<int>(::getpid())) + '\0');
  }
  SECTION("UDP") {
    auto server = bind_loopback(SOCK_DGRAM);
    auto sink = make_sink("log=syslog:udp:127.0.0.1:" + std::to_string(local_port(server.fd)));
    sink->deliver(e);
    const auto got = receive(server.fd);
    CHECK(got == expected(hostname_of_this_machine()));
    CHECK(got.starts_with("<30>1 "));
    CHECK_THAT(got, Contains(e.message));
  }
  SECTION("TCP, octet counting") {
    auto server = bind_loopback(SOCK_STREAM);
    REQUIRE(::listen(server.fd, 4) == 0);
    auto sink = make_sink("log=syslog:tcp:127.0.0.1:" + std::to_string(local_port(server.fd)) + ";app=dtest");
    sink->deliver(e);
    sink->deliver(sample(6));
    Socket conn(::accept(server.fd, nullptr, nullptr));
    const auto first =
        format_syslog_5424(e, 3, hostname_of_this_machine(), "dtest", static_cast<int>(::getpid()));
    const auto second =
        format_syslog_5424(sample(6), 3, hostname_of_this_machine(), "dtest", static_cast<int>(::getpid()));
    const auto want =
        std::to_string(first.size()) + " " + first + std::to_string(second.size()) + " " + second;
    std::string got;
    while (got.size() < want.size()) {
      const auto more = receive(conn.fd);
      if (more.empty()) break;
      got += more;
    }
    CHECK(got == want);
  }
  SECTION("TCP: a connection the daemon closed is replaced before the next message") {
    auto server = bind_loopback(SOCK_STREAM);
    REQUIRE(::listen(server.fd, 4) == 0);
    auto sink = make_sink("log=syslog:tcp:127.0.0.1:" + std::to_string(local_port(server.fd)));
    sink->deliver(e);
    {
      Socket first(::accept(server.fd, nullptr, nullptr));
      CHECK_THAT(receive(first.fd), Contains(e.message));
    }  // closed, as by a restarting daemon
    sink->deliver(sample(6));
    Socket second(::accept(server.fd, nullptr, nullptr));
    CHECK_THAT(receive(second.fd), Contains("event 6"));
  }
  SECTION("nobody listening: unavailable, naming the target") {
    auto sink = make_sink("log=syslog:unix:" + (tmp / "missing.sock").string());
    try {
      sink->deliver(e);
      FAIL("deliver did not throw");
    } catch (const Error& err) {
      CHECK(err.kind() == ErrorKind::unavailable);
      CHECK_THAT(std::string(err.what()), Contains("syslog unix:" + (tmp / "missing.sock").string()));
    }
  }
}

TEST_CASE("hmac_sha256_hex matches RFC 4231 test case 2", "[events]") {
  CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("exec sink: the event in the environment, timeouts and exit statuses", "[events]") {
  TempDir tmp;
  const auto out = tmp / "out.txt";
  auto sink = make_sink(
      "run=exec:printf '%s %s|%s|%s|%s|%s' \"$DISTRIB_EVENT_TYPE\" \"$DISTRIB_EVENT_ID\" "
      "\"$DISTRIB_EVENT_SEVERITY\" \"$DISTRIB_EVENT_JOB\" \"$DISTRIB_EVENT_TIME\" \"$PWD\" > " +
      out.string());
  sink->deliver(sample(7, "entry.retrying", Severity::warning));
  CHECK(read_file(out) == "entry.retrying 7|warning|12|2026-12-01T13:30:28.123Z|/");

  auto json = make_sink("run=exec:printf '%s' \"$DISTRIB_EVENT_JSON\" > " + (tmp / "event.json").string());
  auto e = sample(8);
  e.job_id = 0;
  json->deliver(e);
  CHECK(read_file(tmp / "event.json") == event_to_json(e));

  auto slow = make_sink("slow=exec:sleep 30;timeout=1s");
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(slow->deliver(sample(9)), Contains("exec sleep 30: killed after 1 s (timeout)"));
  // Killed, not waited for: it returned before the command would have ended by itself.
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));

  auto failing = make_sink("bad=exec:echo first && echo 'it broke' >&2 && exit 3");
  CHECK_THROWS_WITH(failing->deliver(sample(10)), Contains("exit 3: it broke"));
}

TEST_CASE("webhook sink: signed POSTs, and a failing receiver is an error", "[events]") {
  struct Seen {
    std::mutex mutex;
    std::optional<HttpRequest> request;
  } seen;
  HttpServerSettings settings;
  settings.address = "127.0.0.1";
  settings.port = 0;
  HttpServer server(settings, [&](HttpRequest&& req, Responder respond) {
    HttpResponse res;
    res.content_type = "text/plain";
    if (req.path == "/fail") {
      res.status = 500;
      res.body = "backend down";
    } else {
      res.status = 204;
    }
    {
      std::lock_guard lock(seen.mutex);
      seen.request = std::move(req);
    }
    respond(std::move(res));
  });
  server.start();
  const auto base = "http://127.0.0.1:" + std::to_string(server.port());
  const auto last = [&] {
    std::lock_guard lock(seen.mutex);
    REQUIRE(seen.request);
    return *seen.request;
  };

  auto sink = make_sink("hook=webhook:" + base + "/hooks/distrib?token=abc;secret=s3cret;timeout=5s");
  const auto e = sample(7, "job.failed", Severity::error);
  sink->deliver(e);
  auto req = last();
  CHECK(req.method == "POST");
  CHECK(req.path == "/hooks/distrib");
  CHECK(req.query["token"] == "abc");
  CHECK(req.content_type == "application/json");
  CHECK(req.body == event_to_json(e));
  const auto body = boost::json::parse(req.body).as_object();
  CHECK(body.at("id").to_number<std::int64_t>() == 7);
  CHECK(body.at("type").as_string() == "job.failed");
  CHECK(req.headers.at("x-distrib-event") == "job.failed");
  CHECK(req.headers.at("x-distrib-event-id") == "7");
  CHECK(req.headers.at("x-distrib-signature") == "sha256=" + hmac_sha256_hex("s3cret", req.body));

  TempDir tmp;
  write_file(tmp / "key", "k3y\n");
  auto keyed = make_sink("hook=webhook:" + base + "/k;secret-file=" + (tmp / "key").string());
  keyed->deliver(sample(8));
  req = last();
  CHECK(req.headers.at("x-distrib-signature") == "sha256=" + hmac_sha256_hex("k3y", req.body));

  auto unsigned_sink = make_sink("hook=webhook:" + base);
  unsigned_sink->deliver(sample(9));
  req = last();
  CHECK(req.path == "/");
  CHECK(req.headers.count("x-distrib-signature") == 0);
  CHECK(req.headers.at("x-distrib-event-id") == "9");

  auto failing = make_sink("hook=webhook:" + base + "/fail?token=abc");
  CHECK_THROWS_WITH(failing->deliver(sample(10)),
                    Contains("webhook " + base + "/fail: HTTP 500: backend down") && !Contains("token=abc"));
  server.stop();

  auto down = make_sink("hook=webhook:http://127.0.0.1:1/x;timeout=2s");
  try {
    down->deliver(sample(11));
    FAIL("deliver did not throw");
  } catch (const Error& err) {
    CHECK(err.kind() == ErrorKind::unavailable);
    CHECK_THAT(std::string(err.what()), Contains("webhook http://127.0.0.1:1/x"));
  }
}

TEST_CASE("snmp sink: snmptrapd receives the trap with the event's varbinds", "[events]") {
  // The test command installs snmptrapd: its absence is a failure, not a reason to skip.
  REQUIRE(stdfs::exists("/usr/sbin/snmptrapd"));
  TempDir tmp;
  int port = 0;
  {
    auto probe = bind_loopback(SOCK_DGRAM);
    port = local_port(probe.fd);
  }
  const auto log = tmp / "traps.log";
  stdfs::create_directories(tmp / "persist");
  Process trapd({"/usr/bin/env", "SNMP_PERSISTENT_DIR=" + (tmp / "persist").string(), "/usr/sbin/snmptrapd",
                 "-f", "-C", "-n", "-On", "-m", "", "--disableAuthorization=yes", "-Lf", log.string(),
                 "udp:127.0.0.1:" + std::to_string(port)},
                tmp / "snmptrapd.out");
  REQUIRE(wait_until([&] { return read_file(log).find("NET-SNMP version") != std::string::npos; }, 10s));

  auto sink = make_sink("trap=snmp:127.0.0.1:" + std::to_string(port) + ";community=public");
  auto e = sample(77, "entry.failed", Severity::error);
  e.message = "snmp sink test 4f1c";
  // UDP without acknowledgement: send again until it shows (at-least-once is the contract).
  const bool received = wait_until(
      [&] {
        sink->deliver(e);
        return wait_until([&] { return read_file(log).find(e.message) != std::string::npos; }, 1s, 50ms);
      },
      10s, 0ms);
  const auto text = read_file(log);
  INFO(text << read_file(tmp / "snmptrapd.out"));
  CHECK(received);
  CHECK_THAT(text, Contains(".1.3.6.1.6.3.1.1.4.1.0 = OID: .1.3.6.1.4.1.8072.9999.7184.0.3"));
  CHECK_THAT(text, Contains(".1.3.6.1.4.1.8072.9999.7184.1.1 = STRING: \"entry.failed\""));
  CHECK_THAT(text, Contains(".1.3.6.1.4.1.8072.9999.7184.1.2 = STRING: \"error\""));
  CHECK_THAT(text, Contains(".1.3.6.1.4.1.8072.9999.7184.1.3 = STRING: \"2026-12-01T13:30:28.123Z\""));
  CHECK_THAT(text, Contains(".1.3.6.1.4.1.8072.9999.7184.1.4 = Counter64: 77"));
  CHECK_THAT(text, Contains(".1.3.6.1.4.1.8072.9999.7184.1.5 = STRING: \"12\""));
  CHECK_THAT(text, Contains(".1.3.6.1.4.1.8072.9999.7184.1.8 = STRING: \"snmp sink test 4f1c\""));
  trapd.stop();
}

// --- the driver: EventDispatcher over a real (SQLite) outbox and a sink type of the test's own

namespace {

// Records what it is given; fails deliveries and flushes on demand.
struct Recorder {
  std::mutex mutex;
  std::vector<std::int64_t> delivered, flushed_upto;
  int fail_deliveries = 0;  // the next N deliveries throw
  int fail_flushes = 0;     // the next N flushes throw
  std::size_t pending_since_flush = 0;
};

class RecordingSink final : public EventSink {
 public:
  explicit RecordingSink(Recorder& r) : r_(r) {}
  void deliver(const Event& e) override {
    std::lock_guard lock(r_.mutex);
    if (r_.fail_deliveries > 0) {
      --r_.fail_deliveries;
      throw Error(ErrorKind::unavailable, "receiver down");
    }
    r_.delivered.push_back(e.id);
  }
  void flush() override {
    std::lock_guard lock(r_.mutex);
    if (r_.fail_flushes > 0) {
      --r_.fail_flushes;
      throw Error(ErrorKind::unavailable, "disk full");
    }
    if (!r_.delivered.empty()) r_.flushed_upto.push_back(r_.delivered.back());
  }

 private:
  Recorder& r_;
};

struct Outbox {
  TempDir tmp;
  std::unique_ptr<Store> store;
  Outbox() {
    StoreRegistry reg;
    register_builtin_stores(reg);
    StoreSettings ss;
    ss.path = (tmp / "distrib.db").string();
    store = reg.open(ss);
  }
  void add(int n, const std::string& type = "job.completed") {
    std::vector<Event> events(static_cast<std::size_t>(n));
    for (auto& e : events) {
      e.type = type;
      e.message = "m";
    }
    store->record_events(events);
  }
};

EventSinkRegistry recording_registry(Recorder& r) {
  EventSinkRegistry reg;
  reg.add("rec", {}, [&r](const EventSinkSettings&) { return std::make_unique<RecordingSink>(r); });
  return reg;
}

std::vector<std::int64_t> delivered(Recorder& r) {
  std::lock_guard lock(r.mutex);
  return r.delivered;
}

}  // namespace

TEST_CASE("dispatcher: a new sink starts after the newest event, then takes every event in order",
          "[events]") {
  Outbox box;
  box.add(3);  // history: not for a sink that never ran
  Recorder rec;
  EventDispatcher d(*box.store, recording_registry(rec), {parse_event_sink("r=rec:x")});
  box.store->set_event_listener([&] { d.notify(); });
  d.start();
  REQUIRE(wait_until([&] { return d.status().front().cursor == 3; }, 5s, 10ms));
  box.add(5);
  REQUIRE(wait_until([&] { return delivered(rec).size() == 5; }, 5s, 10ms));
  CHECK(delivered(rec) == std::vector<std::int64_t>{4, 5, 6, 7, 8});
  REQUIRE(wait_until([&] { return box.store->event_cursor("r") == 8; }, 5s, 10ms));
  d.stop();
  box.store->set_event_listener(nullptr);
}

TEST_CASE("dispatcher: failed deliveries are retried in order, and a failed flush delivers the batch again",
          "[events]") {
  Outbox box;
  box.store->set_event_cursor("r", 0);  // has run before, took nothing
  box.add(4);
  Recorder rec;
  rec.fail_deliveries = 2;  // event 1 fails twice
  rec.fail_flushes = 1;     // then the first batch is not made durable
  EventDispatcher d(*box.store, recording_registry(rec), {parse_event_sink("r=rec:x")});
  d.start();
  REQUIRE(wait_until([&] { return box.store->event_cursor("r") == 4; }, 10s, 10ms));
  d.stop();
  const auto got = delivered(rec);
  // Everything arrived, in order; the batch whose flush failed came again (at least once).
  CHECK(got == std::vector<std::int64_t>{1, 2, 3, 4, 1, 2, 3, 4});
  const auto st = d.status().front();
  CHECK(st.failures == 3);
  CHECK(st.dropped == 0);
  CHECK(st.last_error.empty());
}

TEST_CASE("dispatcher: max-attempts gives an event up and goes on; filters skip without delivering",
          "[events]") {
  Outbox box;
  box.store->set_event_cursor("r", 0);
  box.add(1, "job.failed");
  box.add(1, "host.registered");
  box.add(1, "job.completed");
  Recorder rec;
  rec.fail_deliveries = 2;
  EventDispatcher d(*box.store, recording_registry(rec),
                    {parse_event_sink("r=rec:x;types=job.*;max-attempts=2")});
  d.start();
  REQUIRE(wait_until([&] { return box.store->event_cursor("r") == 3; }, 10s, 10ms));
  d.stop();
  CHECK(delivered(rec) == std::vector<std::int64_t>{3});  // 1 given up, 2 filtered out
  CHECK(d.status().front().dropped == 1);
  CHECK(d.status().front().failures == 2);
}

TEST_CASE("dispatcher: two sinks of one name are refused", "[events]") {
  Outbox box;
  Recorder rec;
  CHECK_THROWS_WITH(EventDispatcher(*box.store, recording_registry(rec),
                                    {parse_event_sink("r=rec:x"), parse_event_sink("r=rec:y")}),
                    Contains("configured twice"));
}

TEST_CASE("metrics label peers by host name, never by host id alone", "[events]") {
  const std::string web1 = "3b2a77bf-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                    web2 = "9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f",
                    db = "11111111-2222-4333-8444-555555555555";
  std::vector<Host> hosts(3);
  hosts[0].host_id = web1;
  hosts[0].name = "web";
  hosts[1].host_id = web2;
  hosts[1].name = "web";  // two hosts answer to one name
  hosts[2].host_id = db;
  hosts[2].name = "db";
  const std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> by_id{
      {web1, {1, 100}}, {web2, {2, 200}}, {db, {3, 300}}, {"unknown", {4, 400}}};
  const auto by_name = peers_by_name(by_id, hosts);
  CHECK(by_name.size() == 4);
  CHECK(by_name.at("db") == std::make_pair<std::uint64_t, std::uint64_t>(3, 300));
  CHECK(by_name.at("web/3b2a77bf") == std::make_pair<std::uint64_t, std::uint64_t>(1, 100));
  CHECK(by_name.at("web/9f8e7d6c") == std::make_pair<std::uint64_t, std::uint64_t>(2, 200));
  CHECK(by_name.at("(unregistered)").second == 400);  // a requester's word never becomes a label
  for (const auto& [label, v] : by_name) CHECK(label.find(web1) == std::string::npos);

  // Cardinality is capped: the heaviest peers keep their label, the rest add up.
  std::vector<Host> many;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> traffic;
  for (int i = 0; i < 1500; ++i) {
    Host h;
    h.host_id = fmt::format("00000000-0000-4000-8000-{:012d}", i + 1);
    h.name = "pc" + std::to_string(i);
    many.push_back(h);
    traffic[h.host_id] = {1, static_cast<std::uint64_t>(i + 1)};
  }
  const auto capped = peers_by_name(traffic, many);
  CHECK(capped.size() == kMaxPeerLabels);
  CHECK(capped.count("pc1499") == 1);
  CHECK(capped.count("pc0") == 0);
  CHECK(capped.at("(others)").first == 501);
  CHECK(capped.at("(others)").second == 501 * 502 / 2);
}
