// Events, the audit trail and metrics on real processes: a job's events reach a JSON-lines file,
// a syslog socket, a webhook receiver, snmptrapd, a command and the server-sent event stream in
// order; a webhook receiver that was down gets everything once; promtool accepts /metrics; bad
// sink configurations and hanging sink commands are refused or reported.
#include "ctl_json.h"
#include "harness.h"

#include <distrib/error.h>
#include <distrib/net/http.h>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/hmac.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

using namespace distrib::test;
namespace bj = boost::json;

namespace {

struct Seen {
  std::int64_t id = 0;
  std::string type;
};

// The job's own events in the order a sink received them.
std::vector<std::string> job_types(const std::vector<Seen>& seen) {
  std::vector<std::string> out;
  for (const auto& s : seen)
    if (s.type.starts_with("job.") || s.type.starts_with("entry.")) out.push_back(s.type);
  return out;
}

const std::vector<std::string> kJobEvents = {"job.created", "entry.succeeded", "entry.succeeded",
                                             "entry.succeeded", "job.completed"};

bool increasing(const std::vector<Seen>& seen) {
  for (std::size_t i = 1; i < seen.size(); ++i)
    if (seen[i].id <= seen[i - 1].id) return false;
  return true;
}

Seen seen_of_json(const std::string& line) {
  const auto v = bj::parse(line).as_object();
  return {v.at("id").as_int64(), std::string(v.at("type").as_string())};
}

std::vector<Seen> json_lines(const std::string& text) {
  std::vector<Seen> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line.front() == '{') out.push_back(seen_of_json(line));
  return out;
}

bool has_type(const std::vector<Seen>& seen, const std::string& type) {
  return std::any_of(seen.begin(), seen.end(), [&](const Seen& s) { return s.type == type; });
}

std::string hmac_hex(const std::string& key, const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

// A socket bound to a free port on 127.0.0.1 (UDP or TCP), and that port.
std::pair<int, int> bind_loopback(int type) {
  const int fd = ::socket(AF_INET, type, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return {fd, ntohs(a.sin_port)};
}

// A port on 127.0.0.1 free a moment ago.
int free_port(int type) {
  const auto [fd, port] = bind_loopback(type);
  ::close(fd);
  return port;
}

// A syslog receiver on a UDP port: every datagram, as text.
class SyslogReceiver {
 public:
  SyslogReceiver() {
    std::tie(fd_, port_) = bind_loopback(SOCK_DGRAM);
    timeval tv{0, 200000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    thread_ = std::thread([this] {
      char buf[65536];
      while (!stop_) {
        const auto n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) continue;
        std::lock_guard lock(mutex_);
        messages_.emplace_back(buf, static_cast<std::size_t>(n));
      }
    });
  }
  ~SyslogReceiver() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  std::vector<std::string> messages() {
    std::lock_guard lock(mutex_);
    return messages_;
  }

 private:
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::string> messages_;
};

// RFC 5424: "<PRI>1 TIME HOST APP PROCID MSGID [SD] MSG"; MSGID is the event type.
std::vector<Seen> syslog_seen(const std::vector<std::string>& messages) {
  std::vector<Seen> out;
  for (const auto& m : messages) {
    std::istringstream in(m);
    std::string pri, time, host, app, procid, msgid;
    in >> pri >> time >> host >> app >> procid >> msgid;
    const auto id_at = m.find(" id=\"");
    if (id_at == std::string::npos) continue;
    out.push_back({std::stoll(m.substr(id_at + 5)), msgid});
  }
  return out;
}

// A webhook receiver: what arrived, and whether each signature was right.
class WebhookReceiver {
 public:
  WebhookReceiver(std::string secret, int port = 0) : secret_(std::move(secret)) {
    distrib::HttpServerSettings s;
    s.address = "127.0.0.1";
    s.port = static_cast<std::uint16_t>(port);
    server_ =
        std::make_unique<distrib::HttpServer>(s, [this](distrib::HttpRequest&& req, distrib::Responder r) {
          {
            std::lock_guard lock(mutex_);
            const auto sig =
                req.headers.count("x-distrib-signature") ? req.headers.at("x-distrib-signature") : "";
            if (sig != "sha256=" + hmac_hex(secret_, req.body)) ++bad_signatures_;
            if (req.path != "/hook" || req.method != "POST") ++bad_requests_;
            bodies_.push_back(req.body);
          }
          r(distrib::HttpResponse{200, "application/json", "{}", {}, {}, {}});
        });
    server_->start();
  }
  int port() const { return server_->port(); }
  std::vector<Seen> seen() {
    std::lock_guard lock(mutex_);
    std::vector<Seen> out;
    for (const auto& b : bodies_) out.push_back(seen_of_json(b));
    return out;
  }
  int bad_signatures() {
    std::lock_guard lock(mutex_);
    return bad_signatures_;
  }
  int bad_requests() {
    std::lock_guard lock(mutex_);
    return bad_requests_;
  }

 private:
  std::string secret_;
  std::unique_ptr<distrib::HttpServer> server_;
  std::mutex mutex_;
  std::vector<std::string> bodies_;
  int bad_signatures_ = 0, bad_requests_ = 0;
};

std::string install_job(const ManagerProc& m, const std::vector<std::string>& args) {
  std::vector<std::string> a = {"install"};
  a.insert(a.end(), args.begin(), args.end());
  return create_job(m, a);
}

bool wait_registered(const ManagerProc& m, int n) {
  return wait_until([&] { return host_count(m) == n; }, 20s, 100ms);
}

}  // namespace

TEST_CASE("a job to three agents produces its events in order in every sink and the event stream",
          "[events]") {
  TempDir tmp;
  SyslogReceiver syslog;
  WebhookReceiver hook("s3cret");
  // snmptrapd on a free UDP port, logging every trap to a file.
  const int trap_port = free_port(SOCK_DGRAM);
  write_file(tmp / "snmptrapd.conf", "disableAuthorization yes\n");
  Process trapd({"/usr/sbin/snmptrapd", "-f", "-C", "-c", (tmp / "snmptrapd.conf").string(), "-Lf",
                 (tmp / "traps.log").string(), "-n", "127.0.0.1:" + std::to_string(trap_port)},
                tmp / "snmptrapd.out");
  write_file(
      tmp / "on-event.sh",
      "#!/bin/sh\necho \"$DISTRIB_EVENT_ID $DISTRIB_EVENT_TYPE\" >> " + (tmp / "exec.out").string() + "\n",
      true);

  ManagerProc m(
      tmp / "manager",
      {"--silent-after", "2", "--event-sink", "json=file:" + (tmp / "events.jsonl").string(), "--event-sink",
       "sys=syslog:udp:127.0.0.1:" + std::to_string(syslog.port()) + ";facility=daemon", "--event-sink",
       "hook=webhook:http://127.0.0.1:" + std::to_string(hook.port()) + "/hook;secret=s3cret", "--event-sink",
       "trap=snmp:127.0.0.1:" + std::to_string(trap_port) + ";types=job.*", "--event-sink",
       "cmd=exec:" + (tmp / "on-event.sh").string() + ";types=job.*,entry.*"});
  // The live stream, followed by distribctl from before anything happens.
  Process follower({distribctl_path(), "--server", m.url(), "--token-file", m.token_file().string(), "--json",
                    "events", "--follow"},
                   tmp / "follow.out");
  std::vector<std::unique_ptr<AgentProc>> agents;
  for (int i = 1; i <= 3; ++i) {
    agents.push_back(std::make_unique<AgentProc>(tmp / ("a" + std::to_string(i)), m.url(),
                                                 "ev" + std::to_string(i), "127.0.0.10" + std::to_string(i)));
  }
  REQUIRE(wait_registered(m, 3));
  make_package(m, tmp, "evapp", "1.0");
  const auto job = install_job(m, {"evapp", "1.0", "ev1", "ev2", "ev3"});
  const auto shown = wait_job(m, job);
  REQUIRE(json_at(shown, "/progress/succeeded") == "3");

  // Every sink sees the job's events, in order, each once.
  auto file_seen = [&] {
    return json_lines(stdfs::exists(tmp / "events.jsonl") ? read_file(tmp / "events.jsonl") : "");
  };
  REQUIRE(wait_until([&] { return has_type(file_seen(), "job.completed"); }, 30s));
  const auto file = file_seen();
  CHECK(job_types(file) == kJobEvents);
  CHECK(increasing(file));
  CHECK(has_type(file, "host.registered"));
  CHECK(has_type(file, "package.registered"));

  REQUIRE(wait_until([&] { return has_type(syslog_seen(syslog.messages()), "job.completed"); }, 30s));
  const auto sys = syslog_seen(syslog.messages());
  CHECK(job_types(sys) == kJobEvents);
  CHECK(increasing(sys));
  for (const auto& msg : syslog.messages()) {
    // daemon (3) * 8 + informational (6) = 30; warnings 28, errors 27
    CHECK((msg.starts_with("<30>1 ") || msg.starts_with("<28>1 ") || msg.starts_with("<27>1 ")));
  }

  REQUIRE(wait_until([&] { return has_type(hook.seen(), "job.completed"); }, 30s));
  const auto hooked = hook.seen();
  CHECK(job_types(hooked) == kJobEvents);
  CHECK(increasing(hooked));
  CHECK(hook.bad_signatures() == 0);
  CHECK(hook.bad_requests() == 0);

  auto exec_seen = [&] {
    std::vector<Seen> out;
    if (!stdfs::exists(tmp / "exec.out")) return out;
    std::istringstream in(read_file(tmp / "exec.out"));
    for (Seen s; in >> s.id >> s.type;) out.push_back(s);
    return out;
  };
  REQUIRE(wait_until([&] { return has_type(exec_seen(), "job.completed"); }, 30s));
  CHECK(job_types(exec_seen()) == kJobEvents);
  CHECK(increasing(exec_seen()));

  // The trap sink takes job.* only: job.created and job.completed reach snmptrapd.
  auto traps = [&] {
    return stdfs::exists(tmp / "traps.log") ? read_file(tmp / "traps.log") : std::string();
  };
  INFO(trapd.log());
  REQUIRE(wait_until([&] { return traps().find("job.completed") != std::string::npos; }, 30s));
  CHECK(traps().find("job.created") != std::string::npos);
  CHECK(traps().find("entry.succeeded") == std::string::npos);

  REQUIRE(wait_until([&] { return has_type(json_lines(follower.log()), "job.completed"); }, 30s));
  const auto streamed = json_lines(follower.log());
  CHECK(job_types(streamed) == kJobEvents);
  CHECK(increasing(streamed));

  // The same events through the API, and the sinks' state.
  const auto listed = ctl_json(m, {"events", "--limit", "1000"});
  std::vector<Seen> api;
  for (const auto& v : listed.at("events").as_array())
    api.push_back({v.at("id").as_int64(), std::string(v.at("type").as_string())});
  CHECK(job_types(api) == kJobEvents);
  const auto sinks = ctl_json(m, {"events", "sinks"});
  REQUIRE(sinks.at("sinks").as_array().size() == 5);
  for (const auto& v : sinks.at("sinks").as_array()) CHECK(v.at("failures").as_int64() == 0);

  // The job's creation is in the audit trail: who, from where, what, result.
  const auto audit = ctl_json(m, {"audit"});
  bool found = false;
  for (const auto& v : audit.at("audit").as_array()) {
    const auto& a = v.as_object();
    if (a.at("action").as_string() == "POST /v1/jobs") {
      found = true;
      // Who the credentials are (the bootstrap token here), not what distribctl says it is.
      CHECK(a.at("actor").as_string() == "admin-token");
      CHECK(a.at("remote").as_string() == "127.0.0.1");
      CHECK(a.at("result").as_string() == "ok");
      CHECK(a.at("target").as_string() == "job " + job);
    }
  }
  CHECK(found);

  // An agent that goes away is reported silent.
  agents[2]->kill();
  REQUIRE(wait_until(
      [&] {
        std::istringstream in(read_file(tmp / "events.jsonl"));
        for (std::string l; std::getline(in, l);)
          if (l.find("\"host.silent\"") != std::string::npos && l.find("ev3") != std::string::npos)
            return true;
        return false;
      },
      40s, 250ms));
  // A severity filter takes only what is at least that severe.
  const auto warnings = ctl_json(m, {"events", "--severity", "warning", "--limit", "1000"});
  REQUIRE_FALSE(warnings.at("events").as_array().empty());
  for (const auto& v : warnings.at("events").as_array()) CHECK(v.at("severity").as_string() != "info");
}

TEST_CASE("a webhook receiver that was down receives every event afterwards, in order, once each",
          "[events]") {
  TempDir tmp;
  const int port = free_port(SOCK_STREAM);
  ManagerProc m(tmp / "manager", {"--event-sink", "hook=webhook:http://127.0.0.1:" + std::to_string(port) +
                                                      "/hook;secret=k3y;timeout=2s"});
  std::vector<std::unique_ptr<AgentProc>> agents;
  for (int i = 1; i <= 2; ++i) {
    agents.push_back(std::make_unique<AgentProc>(tmp / ("a" + std::to_string(i)), m.url(),
                                                 "down" + std::to_string(i),
                                                 "127.0.0.11" + std::to_string(i)));
  }
  REQUIRE(wait_registered(m, 2));
  for (int v = 1; v <= 3; ++v) make_package(m, tmp, "downapp", std::to_string(v) + ".0");
  const auto job = install_job(m, {"downapp", "3.0", "down1", "down2"});
  wait_job(m, job);
  // Nothing listens: the sink fails and keeps everything.
  REQUIRE(wait_until(
      [&] {
        const auto s = ctl_json(m, {"events", "sinks"}).at("sinks").as_array().at(0).as_object();
        return s.at("failures").as_int64() >= 2 && s.at("pending").as_int64() > 0 &&
               !s.at("last_error").as_string().empty();
      },
      20s));
  const auto table = m.ctl({"events", "sinks"});
  CHECK(table.out.find("hook") != std::string::npos);

  WebhookReceiver hook("k3y", port);
  const auto all = ctl_json(m, {"events", "--after", "0", "--limit", "10000"});
  std::vector<std::int64_t> expected;
  for (const auto& v : all.at("events").as_array()) expected.push_back(v.at("id").as_int64());
  REQUIRE(expected.size() >= 9);  // 2 hosts, 3 packages, the job, its 2 entries and its end at least
  REQUIRE(wait_until(
      [&] {
        const auto s = hook.seen();
        return !s.empty() && s.back().id >= expected.back();
      },
      60s, 200ms));
  std::vector<std::int64_t> got;
  for (const auto& s : hook.seen()) got.push_back(s.id);
  // In order, once each, nothing missing (events after the listing may follow).
  REQUIRE(got.size() >= expected.size());
  CHECK(std::vector<std::int64_t>(got.begin(), got.begin() + static_cast<long>(expected.size())) == expected);
  CHECK(std::set<std::int64_t>(got.begin(), got.end()).size() == got.size());
  CHECK(hook.bad_signatures() == 0);
  REQUIRE(wait_until(
      [&] {
        return ctl_json(m, {"events", "sinks"}).at("sinks").as_array().at(0).at("pending").as_int64() == 0;
      },
      20s));
}

TEST_CASE("promtool accepts the live /metrics and the figures follow a job", "[events]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--event-sink", "json=file:" + (tmp / "e.jsonl").string()});
  AgentProc a(tmp / "a1", m.url(), "met1", "127.0.0.121");
  REQUIRE(wait_registered(m, 1));
  make_package(m, tmp, "metapp", "1.0");
  wait_job(m, install_job(m, {"metapp", "1.0", "met1"}));
  distrib::HttpClientSettings hs;
  hs.base_url = m.url();
  hs.ca_file = m.ca_file();
  distrib::HttpClient client(hs);
  // Not without credentials: /metrics tells who the hosts are and what they fetched.
  CHECK(client.request("GET", "/metrics").status == 401);
  const auto token = read_file(m.token_file()).substr(0, 64);
  const auto res = client.request("GET", "/metrics", "", "", token);
  REQUIRE(res.status == 200);
  CHECK(res.content_type.starts_with("text/plain"));
  write_file(tmp / "metrics.txt", res.body);
  const auto check = run({"sh", "-c", "promtool check metrics < " + (tmp / "metrics.txt").string()});
  INFO(res.body);
  INFO(check.out + check.err);
  CHECK(check.exit_code == 0);
  CHECK(res.body.find("distrib_job_entries{state=\"succeeded\"} 1\n") != std::string::npos);
  CHECK(res.body.find("distrib_jobs{state=\"finished\"} 1\n") != std::string::npos);
  CHECK(res.body.find("distrib_hosts 1\n") != std::string::npos);
  CHECK(res.body.find("distrib_agents_connected 1\n") != std::string::npos);
  CHECK(res.body.find("distrib_polls_total 0\n") == std::string::npos);
  CHECK(res.body.find("distrib_database_call_duration_seconds_count") != std::string::npos);
  CHECK(res.body.find("distrib_event_outbox_pending{sink=\"json\"}") != std::string::npos);
  // Peers by name, never by host id (an agent's host id is what it proves itself with).
  CHECK(res.body.find("distrib_link_sent_bytes_total{peer=\"met1\"}") != std::string::npos);
  const auto hosts = boost::json::parse(m.ctl({"hosts", "list"}, true).out).at("hosts").as_array();
  REQUIRE(hosts.size() == 1);
  CHECK(res.body.find(std::string(hosts[0].at("host_id").as_string())) == std::string::npos);
}

TEST_CASE("a scraper's metrics token reads /metrics and nothing else", "[events]") {
  TempDir tmp;
  const std::string scrape(48, 's');
  write_file(tmp / "scrape.token", scrape + "\n");
  ManagerProc m(tmp / "manager", {"--metrics-token-file", (tmp / "scrape.token").string()});
  distrib::HttpClientSettings hs;
  hs.base_url = m.url();
  hs.ca_file = m.ca_file();
  distrib::HttpClient client(hs);
  CHECK(client.request("GET", "/metrics", "", "", scrape).status == 200);
  CHECK(client.request("HEAD", "/metrics", "", "", scrape).status == 200);
  const auto refused = client.request("GET", "/v1/hosts", "", "", scrape);
  CHECK(refused.status == 403);
  CHECK(refused.body.find("needs the viewer role") != std::string::npos);
  CHECK(client.request("GET", "/metrics", "", "", std::string(48, 'x')).status == 401);
  // The refusal is in the audit trail, with the route it was refused.
  const auto audit = m.ctl({"audit"}, true).out;
  CHECK(audit.find("/v1/hosts") != std::string::npos);
  CHECK(audit.find("403") != std::string::npos);

  // A token too short to be a secret is refused at start, with the remedy.
  write_file(tmp / "short.token", "abc\n");
  auto bad = run({distribd_path(), "--role", "manager", "--state-dir", (tmp / "other").string(), "--port",
                  "0", "--metrics-token-file", (tmp / "short.token").string()},
                 std::chrono::seconds(20));
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("too short") != std::string::npos);
}

TEST_CASE("metrics can be turned off", "[events]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--metrics", "false"});
  distrib::HttpClientSettings hs;
  hs.base_url = m.url();
  hs.ca_file = m.ca_file();
  distrib::HttpClient client(hs);
  CHECK(client.request("GET", "/metrics").status == 404);
  CHECK(client.request("GET", "/v1/status").status == 200);
}

TEST_CASE("wrong event sink configurations are refused at start with the part named", "[events]") {
  TempDir tmp;
  auto start = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {
        distribd_path(), "--role", "manager", "--state-dir", (tmp / "m").string(), "--listen",
        "127.0.0.1",     "--port", "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv, 20s);
  };
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--event-sink", "x=foo:bar"}, "unknown type \"foo\""},
      {{"--event-sink", "x=foo:bar"}, "exec, file, snmp, syslog, webhook"},
      {{"--event-sink", "x=file:/tmp/e.jsonl;types=nope.*"}, "\"nope.*\" matches no event type"},
      {{"--event-sink", "x=file:/tmp/e.jsonl;severity=loud"}, "unknown severity \"loud\""},
      {{"--event-sink", "x=file:relative.jsonl"}, "absolute"},
      {{"--event-sink", "x=webhook:ftp://host/x"}, "x"},
      {{"--event-sink", "x=file:/tmp/e.jsonl;colour=red"}, "colour"},
      {{"--event-sink", "x=file:/tmp/a.jsonl", "--event-sink", "x=file:/tmp/b.jsonl"}, "configured twice"},
      {{"--event-sink", "no-equals-sign"}, "NAME=TYPE:TARGET"},
      {{"--silent-after", "-1"}, "--silent-after"},
      {{"--event-retention-days", "-3"}, "--event-retention-days"},
      {{"--event-sink", "x=file:/tmp/e.jsonl;max-attempts=lots"}, "max-attempts"},
      {{"--event-sink", "x=exec:"}, "x"},
  };
  for (const auto& c : cases) {
    INFO(c.args.back());
    auto r = start(c.args);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(c.message) != std::string::npos);
    auto checked = start([&] {
      auto a = c.args;
      a.push_back("--check-config");
      return a;
    }());
    CHECK(checked.exit_code == 2);
  }
  // Nothing was started: no endpoint was written.
  CHECK_FALSE(stdfs::exists(tmp / "m" / "endpoint"));
  // Agents take no sinks.
  auto agent = run({distribd_path(), "--role", "agent", "--state-dir", (tmp / "a").string(), "--server",
                    "http://127.0.0.1:1", "--event-sink", "x=file:/tmp/e.jsonl"},
                   20s);
  CHECK(agent.exit_code == 2);
  CHECK(agent.err.find("manager and relay option") != std::string::npos);
}

TEST_CASE("a sink command that hangs is killed at its timeout and reported", "[events]") {
  TempDir tmp;
  const auto script = tmp / "hang-events-test.sh";
  write_file(script, "#!/bin/sh\nsleep 60\n", true);
  ManagerProc m(tmp / "manager",
                {"--event-sink", "slow=exec:" + script.string() + ";timeout=1s;max-attempts=2",
                 "--event-sink", "json=file:" + (tmp / "e.jsonl").string()});
  make_package(m, tmp, "hangapp", "1.0");
  REQUIRE(wait_until(
      [&] {
        const auto sinks = ctl_json(m, {"events", "sinks"});
        for (const auto& v : sinks.at("sinks").as_array())
          if (v.at("name").as_string() == "slow") return v.at("dropped").as_int64() >= 1;
        return false;
      },
      30s, 250ms));
  const auto sinks = ctl_json(m, {"events", "sinks"});
  for (const auto& v : sinks.at("sinks").as_array()) {
    if (v.at("name").as_string() != "slow") {
      CHECK(v.at("failures").as_int64() == 0);  // the other sink is not held up
      continue;
    }
    CHECK(v.at("failures").as_int64() >= 2);
    CHECK(std::string(v.at("last_error").as_string()).find("timeout") != std::string::npos);
  }
  CHECK(m.log().find("gave up event") != std::string::npos);
  // The command and what it started were killed
  // (the shells that ran it; the manager's own command line names the script too)
  CHECK(run({"pgrep", "-f", "^/bin/sh .*" + script.string()}).exit_code == 1);
}

TEST_CASE("the audit trail records refused actions and the event API refuses bad queries", "[events]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  auto r = m.ctl({"job", "create", "install", "nothere", "1.0", "ghost"});
  REQUIRE(r.exit_code != 0);
  auto bad = run({distribctl_path(), "--server", m.url(), "--ca-file", m.ca_file(), "--token",
                  std::string(40, 'x'), "package", "list"});
  REQUIRE(bad.exit_code != 0);
  REQUIRE(wait_until([&] { return ctl_json(m, {"audit"}).at("audit").as_array().size() >= 2; }, 10s));
  const auto audit = ctl_json(m, {"audit"}).at("audit").as_array();
  bool refused_job = false, bad_token = false;
  for (const auto& v : audit) {
    const auto& a = v.as_object();
    if (a.at("action").as_string() == "POST /v1/jobs" && a.at("status").as_int64() >= 400) {
      refused_job = true;
      CHECK(std::string(a.at("result").as_string()).find("nothere") != std::string::npos);
    }
    if (a.at("action").as_string() == "GET /v1/packages" && a.at("status").as_int64() == 401)
      bad_token = true;
  }
  CHECK(refused_job);
  CHECK(bad_token);
  const auto table = m.ctl({"audit"});
  CHECK(table.out.find("WHO") != std::string::npos);

  distrib::HttpClientSettings hs;
  hs.base_url = m.url();
  hs.ca_file = m.ca_file();
  distrib::HttpClient client(hs);
  const auto token = [&] {
    auto t = read_file(m.token_file());
    while (!t.empty() && t.back() == '\n') t.pop_back();
    return t;
  }();
  for (const auto& [target, message] :
       std::vector<std::pair<std::string, std::string>>{{"/v1/events?limit=abc", "limit"},
                                                        {"/v1/events?limit=0", "limit"},
                                                        {"/v1/events?type=nope", "matches no event type"},
                                                        {"/v1/events?severity=loud", "unknown severity"},
                                                        {"/v1/events/stream?after=-5", "after"},
                                                        {"/v1/audit?limit=x", "limit"}}) {
    const auto res = client.request("GET", target, {}, "application/json", token);
    INFO(target << " → " << res.body);
    CHECK(res.status == 400);
    CHECK(res.body.find(message) != std::string::npos);
  }
  const auto res =
      client.request("GET", "/v1/events/stream", {}, "application/json",
                     std::vector<std::pair<std::string, std::string>>{{"Last-Event-ID", "yesterday"}}, token);
  CHECK(res.status == 400);
  // The manager still answers.
  CHECK(m.ctl({"events"}).exit_code == 0);
}

TEST_CASE("two hosts answering to one name raise a host.conflict event", "[events]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  AgentProc a(tmp / "a1", m.url(), "twin", "127.0.0.125");  // starts at once
  if (!wait_registered(m, 1))
    FAIL("the first twin did not register:\n" << a.log() << "\nmanager:\n" << m.log());
  AgentProc b(tmp / "b1", m.url(), "twin", "127.0.0.126");
  if (!wait_registered(m, 2))
    FAIL("the second twin did not register:\n" << b.log() << "\nmanager:\n" << m.log());
  bj::object listed;
  REQUIRE(wait_until(
      [&] {
        listed = ctl_json(m, {"events", "--type", "host.conflict"});
        return !listed.at("events").as_array().empty();
      },
      10s));
  const auto& e = listed.at("events").as_array().at(0).as_object();
  CHECK(e.at("severity").as_string() == "warning");
  CHECK(std::string(e.at("message").as_string()).find("both answer to name twin") != std::string::npos);
  // The conflict is real: a job by that name is refused.
  make_package(m, tmp, "twinapp", "1.0");
  CHECK(m.ctl({"job", "create", "install", "twinapp", "1.0", "twin"}).exit_code != 0);
}

TEST_CASE("the example webhook receiver verifies signatures and shows each event once", "[events]") {
  TempDir tmp;
  const int port = free_port(SOCK_STREAM);
  write_file(tmp / "hook.key", "example-key\n");
  Process receiver({"/usr/bin/python3", (examples_dir() / "events" / "webhook-receiver.py").string(),
                    "--port", std::to_string(port), "--secret-file", (tmp / "hook.key").string(), "--out",
                    (tmp / "received.jsonl").string()},
                   tmp / "receiver.out");
  REQUIRE(wait_until([&] { return receiver.log().find("listening") != std::string::npos; }, 10s));
  ManagerProc m(tmp / "manager", {"--event-sink",
                                  "hook=webhook:http://127.0.0.1:" + std::to_string(port) +
                                      "/distrib;secret-file=" + (tmp / "hook.key").string(),
                                  "--event-sink",
                                  "wrong=webhook:http://127.0.0.1:" + std::to_string(port) +
                                      "/distrib;secret=not-the-key;max-attempts=1"});
  make_package(m, tmp, "pyapp", "1.0");
  REQUIRE(wait_until(
      [&] { return receiver.log().find("package.registered: package pyapp 1.0") != std::string::npos; },
      20s));
  REQUIRE(wait_until([&] { return receiver.log().find("wrong signature") != std::string::npos; }, 20s));
  // The wrongly signed copy was refused: the event is shown and stored once.
  CHECK(json_lines(read_file(tmp / "received.jsonl")).size() == 1);
}
