// Identities, replayed as an attacker on the same network would try them: a default-configured
// manager (TLS, enrolment) and relay, a victim agent, and "mallory", a host enrolled legitimately
// that tries to act for the victim, or to be a relay, with curl. Each attempt is refused, recorded
// in the audit trail, and changes nothing. Then enrolment (approval, rejection, token use counts,
// renewal), revocation at every tier, and plain HTTP.
#include "ctl_json.h"
#include "harness.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <thread>

using namespace distrib::test;
namespace bj = boost::json;

namespace {

struct Answer {
  int status = 0;
  std::string body;
};

// One request with curl, as `who` (nullptr: no client certificate).
Answer call(const ManagerProc& m, const TestHost* who, const std::string& method, const std::string& target,
            const std::string& body = {}) {
  std::vector<std::string> argv = {"curl", "-s", "-w", "\n%{http_code}", "-X", method};
  if (who) {
    const auto opts = who->curl();
    argv.insert(argv.end(), opts.begin(), opts.end());
  } else {
    argv.insert(argv.end(), {"--cacert", m.ca_file()});
  }
  if (!body.empty()) argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
  argv.push_back(m.url() + target);
  auto r = run(argv, 30s);
  Answer a;
  const auto nl = r.out.rfind('\n');
  a.body = nl == std::string::npos ? r.out : r.out.substr(0, nl);
  a.status = nl == std::string::npos ? 0 : std::atoi(r.out.c_str() + nl + 1);
  return a;
}

std::string entry_state(const ManagerProc& m, const std::string& job) {
  return std::string(
      ctl_json(m, {"job", "show", job}).at("entries").as_array().at(0).at("state").as_string());
}

std::size_t inventory_items(const ManagerProc& m, const std::string& host) {
  auto r = m.ctl({"inventory", "show", host}, true);
  if (r.exit_code != 0) return 0;
  return bj::parse(r.out).at("items").as_object().size();
}

}  // namespace

TEST_CASE("another host's identity, results, inventory, files and groups cannot be forged", "[security]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  const auto logs = tmp / "victim-logs";
  stdfs::create_directories(logs);
  write_file(logs / "app.log", "victim's log\n");
  auto victim = std::make_unique<AgentProc>(tmp / "victim", m.url(), "victim", "127.0.0.61",
                                            std::vector<std::string>{"--collect-allow", logs.string()});
  REQUIRE(wait_until([&] { return !id_by_name(m, "victim").empty(); }, 20s));
  const auto victim_id = id_by_name(m, "victim");
  REQUIRE(wait_until([&] { return inventory_items(m, "victim") > 10; }, 20s));
  const auto victim_items = inventory_items(m, "victim");
  // A package with a secret in it, for the victim only.
  const auto pkg = tmp / "secret";
  write_file(pkg / "config.ini", "api_key=s3cret\n");
  REQUIRE(m.ctl({"package", "create", pkg.string(), "--name", "secret", "--version", "1"}).exit_code == 0);
  REQUIRE(m.ctl({"idgroup", "create", "vault", "--password", "pw"}).exit_code == 0);
  REQUIRE(m.ctl({"idgroup", "add", "vault", "victim"}).exit_code == 0);

  // Mallory: an enrolled host of its own, registered, with nothing to do.
  const auto mallory = enrol_test_host(m, tmp / "mallory", "mallory");
  const auto self = bj::serialize(bj::object{{"host_id", mallory.host_id},
                                             {"name", "mallory"},
                                             {"addresses", bj::array{"127.0.0.66"}},
                                             {"role", "agent"}});
  REQUIRE(call(m, &mallory, "POST", "/v1/agent/register", self).status == 200);

  // The victim is stopped: its entry waits, and its record and inventory stay as they are.
  victim->stop();
  const auto job = create_job(m, {"install", "secret", "1", "victim"});
  const auto before = hosts_of(m).at(victim_id);
  const auto entry_id =
      std::to_string(ctl_json(m, {"job", "show", job}).at("entries").at(0).at("id").as_int64());

  SECTION("forged results for the victim's entry") {
    const auto forged = R"({"host_id":")" + victim_id + R"(","reports":[{"entry_id":)" + entry_id +
                        R"(,"seq":999999999,"state":"succeeded"}]})";
    CHECK(call(m, nullptr, "POST", "/v1/agent/report", forged).status == 401);
    const auto r = call(m, &mallory, "POST", "/v1/agent/report", forged);
    INFO(r.body);
    CHECK(r.status == 403);
    CHECK(r.body.find("may not act for host " + victim_id) != std::string::npos);
    CHECK(entry_state(m, job) == "waiting");
    // Its poll and transfer status are its own too.
    CHECK(call(m, &mallory, "GET", "/v1/agent/work?host_id=" + victim_id + "&wait=0").status == 403);
    CHECK(call(m, &mallory, "GET", "/v1/agent/transfer?host_id=" + victim_id + "&entry_id=" + entry_id)
              .status == 403);
  }
  SECTION("identity takeover: registering with the victim's host id") {
    const auto takeover = bj::serialize(bj::object{{"host_id", victim_id},
                                                   {"name", "victim"},
                                                   {"addresses", bj::array{"127.0.0.66"}},
                                                   {"os", "evil"},
                                                   {"role", "agent"}});
    CHECK(call(m, nullptr, "POST", "/v1/agent/register", takeover).status == 401);
    CHECK(call(m, &mallory, "POST", "/v1/agent/register", takeover).status == 403);
    const auto after = hosts_of(m).at(victim_id);
    CHECK(after.at("addresses") == before.at("addresses"));
    CHECK(after.at("os") == before.at("os"));
  }
  SECTION("a fake relay: an agent cannot be one, and a relay cannot claim hosts that are not its own") {
    auto as_relay = bj::parse(self).as_object();
    as_relay["role"] = "relay";
    CHECK(call(m, &mallory, "POST", "/v1/agent/register", bj::serialize(as_relay)).status == 403);
    const auto claim = [&](const std::string& relay_id) {
      return bj::serialize(bj::object{
          {"host_id", relay_id},
          {"hosts",
           bj::array{bj::object{
               {"host_id", victim_id}, {"name", "victim"}, {"parent", relay_id}, {"role", "agent"}}}}});
    };
    CHECK(call(m, &mallory, "POST", "/v1/relay/sync", claim(mallory.host_id)).status == 403);
    // A relay enrolled legitimately, registered, claiming the victim below it: ignored.
    const auto evil = enrol_test_host(m, tmp / "evil", "evil-relay", "relay");
    const auto evil_self = bj::serialize(bj::object{{"host_id", evil.host_id},
                                                    {"name", "evil-relay"},
                                                    {"addresses", bj::array{"127.0.0.67"}},
                                                    {"role", "relay"}});
    REQUIRE(call(m, &evil, "POST", "/v1/agent/register", evil_self).status == 200);
    CHECK(call(m, &evil, "POST", "/v1/relay/sync", claim(evil.host_id)).status == 200);
    CHECK(hosts_of(m).at(victim_id).at("parent") == before.at("parent"));
    auto events = ctl_json(m, {"events", "--type", "host.refused"});
    REQUIRE(events.at("events").as_array().size() == 1);
    CHECK(std::string(events.at("events").at(0).at("message").as_string()).find("did not enrol through it") !=
          std::string::npos);
    // Nor may it report for the victim's entry as if below it.
    CHECK(call(m, &evil, "GET", "/v1/agent/work?host_id=" + victim_id + "&wait=0").status == 403);
    CHECK(entry_state(m, job) == "waiting");
  }
  SECTION("content: the manifest only to a host with an open entry for it") {
    CHECK(call(m, nullptr, "GET", "/v1/content/manifests/secret/1").status == 401);
    const auto r = call(m, &mallory, "GET", "/v1/content/manifests/secret/1");
    INFO(r.body);
    CHECK(r.status == 403);
    CHECK(r.body.find("no open entry") != std::string::npos);
    CHECK(r.body.find("config.ini") == std::string::npos);
  }
  SECTION("collected files: only the entry's host, only the paths the job asked for") {
    const auto collect =
        create_job(m, {"collect-files", "victim", "mallory", "--path", logs.string() + "/*.log"});
    const auto forged = "/v1/agent/collect?host_id=" + victim_id + "&job_id=" + collect +
                        "&path=/etc/shadow&sha256=" + std::string(64, '0');
    CHECK(call(m, &mallory, "POST", forged, "root:x").status == 403);
    const auto outside = "/v1/agent/collect?host_id=" + mallory.host_id + "&job_id=" + collect +
                         "&path=/etc/shadow&sha256=" + std::string(64, '0');
    const auto r = call(m, &mallory, "POST", outside, "root:x");
    INFO(r.body);
    CHECK(r.status == 403);
    CHECK(r.body.find("did not ask for /etc/shadow") != std::string::npos);
    CHECK(ctl_json(m, {"collect", "list", collect}).at("files").as_array().empty());
  }
  SECTION("inventory and ID groups: only for oneself") {
    const auto forged = R"({"host_id":")" + victim_id + R"(","items":{"system.os.name":"pwned"}})";
    CHECK(call(m, &mallory, "POST", "/v1/agent/inventory", forged).status == 403);
    CHECK(inventory_items(m, "victim") == victim_items);
    const auto leave = R"({"host_id":")" + victim_id + R"(","group":"vault","leave":true})";
    CHECK(call(m, &mallory, "POST", "/v1/agent/join", leave).status == 403);
    CHECK(ctl_json(m, {"idgroup", "show", "vault"}).at("members").as_array().size() == 1);
  }
  // Whatever was tried, it is in the audit trail under the certificate it came with.
  const auto audit = ctl_json(m, {"audit"}).at("audit").as_array();
  INFO(bj::serialize(audit));
  bool recorded = false;
  for (const auto& v : audit)
    if (std::string(v.at("actor").as_string()).find(mallory.host_id) != std::string::npos &&
        v.at("status") == 403)
      recorded = true;
  CHECK(recorded);
  CHECK(entry_state(m, job) == "waiting");
}

TEST_CASE("enrolment: pending until accepted, rejected never works, tokens count their uses", "[security]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--certificate-lifetime", "2m"});
  const auto ca = m.ca_file();
  // No token: the request waits, with the key's fingerprint shown on both sides.
  AgentProc waiting(tmp / "waiting", m.url(), "waiting", "127.0.0.71", {"--ca-file", ca});
  AgentProc refused(tmp / "refused", m.url(), "refused", "127.0.0.72", {"--ca-file", ca});
  REQUIRE(wait_until(
      [&] {
        return ctl_json(m, {"hosts", "pending"}).at("enrolments").as_array().size() == 2;
      },
      20s));
  CHECK(host_count(m) == 0);
  const auto pending = ctl_json(m, {"hosts", "pending"}).at("enrolments").as_array();
  std::string fingerprint;
  for (const auto& e : pending)
    if (e.at("name") == "waiting") fingerprint = std::string(e.at("fingerprint").as_string());
  CHECK(waiting.log().find(fingerprint) != std::string::npos);
  // A wrong fingerprint is not accepted; the right one is.
  auto wrong = m.ctl({"hosts", "accept", "waiting", "--fingerprint", "sha256:00"});
  CHECK(wrong.exit_code == 1);
  CHECK(wrong.err.find("compare again") != std::string::npos);
  REQUIRE(m.ctl({"hosts", "accept", "waiting", "--fingerprint", fingerprint}).exit_code == 0);
  REQUIRE(m.ctl({"hosts", "reject", "refused"}).exit_code == 0);
  REQUIRE(wait_until([&] { return host_count(m) == 1; }, 20s));
  CHECK(!id_by_name(m, "waiting").empty());
  std::this_thread::sleep_for(3s);
  CHECK(id_by_name(m, "refused").empty());
  CHECK(refused.log().find("was rejected") != std::string::npos);

  // A token for one host: the first enrols at once (and joins the token's ID group), the second waits.
  REQUIRE(m.ctl({"idgroup", "create", "branch"}).exit_code == 0);
  auto token = ctl_json(m, {"enrol-token", "create", "--uses", "1", "--group", "branch"});
  write_file(tmp / "token", std::string(token.at("token").as_string()));
  const std::vector<std::string> with_token = {"--ca-file", ca, "--enrol-token-file",
                                               (tmp / "token").string()};
  AgentProc first(tmp / "first", m.url(), "first", "127.0.0.73", with_token);
  REQUIRE(wait_until([&] { return !id_by_name(m, "first").empty(); }, 20s));
  const auto members = ctl_json(m, {"idgroup", "show", "branch"}).at("members").as_array();
  REQUIRE(members.size() == 1);
  CHECK(std::string(members.at(0).at("host_id").as_string()) == id_by_name(m, "first"));
  AgentProc second(tmp / "second", m.url(), "second", "127.0.0.74", with_token);
  REQUIRE(wait_until([&] { return second.log().find("token is not valid") != std::string::npos; }, 20s));
  CHECK(id_by_name(m, "second").empty());
  CHECK(ctl_json(m, {"enrol-token", "list"}).at("tokens").at(0).at("uses_left").as_int64() == 0);

  // Renewal without an operator: the certificates live 2 minutes here.
  REQUIRE(
      wait_until([&] { return first.log().find("certificate renewed") != std::string::npos; }, 60s, 500ms));
  const auto job = create_job(m, {"get-system-info", "first"});
  CHECK(all_succeeded(wait_job(m, job, 30s)));
}

TEST_CASE("a revoked host is refused at every tier within one poll", "[security]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  ManagerProc relay(tmp / "relay",
                    {"--parent", m.url(), "--host-name", "relay1", "--sync-interval-ms", "200"},
                    "127.0.0.81");
  AgentProc direct(tmp / "direct", m.url(), "direct", "127.0.0.82");
  AgentProc below(tmp / "below", relay.url(), "below", "127.0.0.83");
  REQUIRE(wait_until([&] { return host_count(m) == 3; }, 30s));
  REQUIRE(m.ctl({"hosts", "revoke", "direct"}).exit_code == 0);
  REQUIRE(m.ctl({"hosts", "revoke", "below"}).exit_code == 0);
  // The relay learns at once (its poll is answered), the agents' next requests are refused.
  REQUIRE(wait_until(
      [&] { return relay.log().find("2 revoked certificate(s) known from the parent") != std::string::npos; },
      15s));
  REQUIRE(wait_until([&] { return below.log().find("is revoked") != std::string::npos; }, 20s));
  REQUIRE(wait_until([&] { return direct.log().find("is revoked") != std::string::npos; }, 20s));
  auto events = ctl_json(m, {"events", "--type", "host.revoked"});
  CHECK(events.at("events").as_array().size() == 2);
  // Jobs to them go nowhere: their polls are refused.
  const auto job = create_job(m, {"get-system-info", "direct"});
  std::this_thread::sleep_for(3s);
  CHECK(ctl_json(m, {"job", "show", job}).at("entries").at(0).at("state") == "waiting");
}

TEST_CASE("plain HTTP only when asked for, on loopback unless asked twice", "[security]") {
  TempDir tmp;
  auto anywhere = run({distribd_path(), "--role", "manager", "--state-dir", (tmp / "m").string(), "--listen",
                       "0.0.0.0", "--insecure-http", "--check-config"});
  CHECK(anywhere.exit_code == 2);
  CHECK(anywhere.err.find("--insecure-http-anywhere") != std::string::npos);
  auto check = run({distribd_path(), "--role", "manager", "--state-dir", (tmp / "m").string(),
                    "--insecure-http", "--check-config"});
  CHECK(check.exit_code == 0);
  CHECK(check.err.find("warning: --insecure-http") != std::string::npos);
  ManagerProc plain(tmp / "plain", {"--insecure-http"});
  CHECK(plain.url().starts_with("http://"));
  CHECK(plain.log().find("serving plain HTTP") != std::string::npos);
  ManagerProc secure(tmp / "secure");
  CHECK(secure.url().starts_with("https://"));
  // Plain HTTP to a TLS listener gets nothing it can use.
  auto r = run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                "http://127.0.0.1:" + std::to_string(secure.port()) + "/v1/status"});
  CHECK(r.out != "200");
}

TEST_CASE("administrators' accounts: roles hold, the audit trail names the user, wrong tokens are throttled",
          "[security]") {
  TempDir tmp;
  auto m = std::make_unique<ManagerProc>(tmp / "manager");
  const auto ca = m->ca_file();
  // Accounts made with the bootstrap admin token; each token is printed once.
  auto make_user = [&](const std::string& name, const std::string& role) {
    auto r = m->ctl({"user", "add", name, "--role", role});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto file = tmp / (name + ".token");
    write_file(file, r.out);
    return file.string();
  };
  const auto vic = make_user("vic", "viewer");
  const auto olga = make_user("olga", "operator");
  const auto ada = make_user("ada", "administrator");
  auto as = [&](const std::string& token_file, std::vector<std::string> args) {
    std::vector<std::string> argv = {distribctl_path(), "--server", m->url(), "--ca-file", ca,
                                     "--token-file",    token_file};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  };
  CHECK(as(vic, {"hosts", "list"}).exit_code == 0);
  auto r = as(vic, {"idgroup", "create", "g1"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("needs the operator role; vic has the viewer role") != std::string::npos);
  CHECK(as(olga, {"idgroup", "create", "g1"}).exit_code == 0);
  r = as(olga, {"user", "add", "mallory", "--role", "administrator"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("needs the administrator role; olga has the operator role") != std::string::npos);
  CHECK(as(ada, {"user", "list"}).out.find("olga") != std::string::npos);
  // The trail names the account, whatever the client says it is.
  const auto audit = ctl_json(*m, {"audit"}).at("audit").as_array();
  bool vic_refused = false, olga_refused = false, olga_created = false;
  for (const auto& v : audit) {
    const std::string actor(v.at("actor").as_string());
    if (actor == "vic" && v.at("status") == 403) vic_refused = true;
    if (actor == "olga" && v.at("status") == 403) olga_refused = true;
    if (actor == "olga" && v.at("status") == 201) olga_created = true;
  }
  CHECK(vic_refused);
  CHECK(olga_refused);
  CHECK(olga_created);
  // A removed account's token stops working.
  REQUIRE(as(ada, {"user", "remove", "vic"}).exit_code == 0);
  CHECK(as(vic, {"hosts", "list"}).exit_code == 1);

  // Client certificates instead of tokens: an administrator issues one for olga (the key is made
  // where distribctl runs); it carries olga's role, and the CA is found next to it.
  const auto certs = tmp / "olga-certs";
  r = as(ada, {"user", "certificate", "olga", "--days", "30", "--output", certs.string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK((stdfs::status(certs / "olga.key").permissions() & stdfs::perms::group_read) == stdfs::perms::none);
  auto as_cert = [&](const stdfs::path& dir, std::vector<std::string> args) {
    std::vector<std::string> argv = {
        distribctl_path(),          "--server", m->url(), "--cert", (dir / "olga.crt").string(), "--key",
        (dir / "olga.key").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  };
  r = as_cert(certs, {"idgroup", "create", "g2"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  r = as_cert(certs, {"user", "add", "mallory", "--role", "administrator"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("needs the administrator role; olga has the operator role") != std::string::npos);
  // A user asks for its own certificate, never another's; the new one replaces the old.
  r = as(olga, {"user", "certificate", "ada", "--output", (tmp / "stolen").string()});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("olga may ask for a certificate of its own account only") != std::string::npos);
  const auto certs2 = tmp / "olga-certs-2";
  REQUIRE(as(olga, {"user", "certificate", "olga", "--output", certs2.string()}).exit_code == 0);
  CHECK(as_cert(certs2, {"hosts", "list"}).exit_code == 0);
  r = as_cert(certs, {"hosts", "list"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("is not its current one") != std::string::npos);
  // A host's certificate is no administrator's, and bad requests change nothing.
  const auto host = enrol_test_host(*m, tmp / "h1", "h1");
  std::vector<std::string> argv = {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"};
  const auto host_opts = host.curl();
  argv.insert(argv.end(), host_opts.begin(), host_opts.end());
  argv.push_back(m->url() + "/v1/hosts");
  CHECK(run(argv).out == "401");
  auto olga_token = read_file(olga);
  while (!olga_token.empty() && (olga_token.back() == '\n' || olga_token.back() == ' '))
    olga_token.pop_back();
  auto post_cert = [&](const std::string& user, const std::string& body) {
    return run({"curl", "-s", "-w", "\n%{http_code}", "--cacert", ca, "-H",
                "Authorization: Bearer " + olga_token, "-H", "Content-Type: application/json",
                "--data-binary", body, m->url() + "/v1/users/" + user + "/certificate"})
        .out;
  };
  auto out = post_cert(
      "olga", R"({"csr":"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"})");
  CHECK(out.ends_with("400"));
  CHECK(out.find("certificate request") != std::string::npos);
  out = post_cert("olga", R"({"csr":"x","days":0})");
  CHECK(out.ends_with("400"));
  CHECK(out.find("days is 1 to 397") != std::string::npos);
  out = post_cert("olga", R"({"days":[1,2]})");
  CHECK(out.ends_with("400"));
  CHECK(as_cert(certs2, {"hosts", "list"}).exit_code == 0);

  // The bootstrap token turned off: only accounts work.
  m.reset();
  m = std::make_unique<ManagerProc>(tmp / "manager", std::vector<std::string>{"--admin-token", "false"});
  CHECK(m->ctl({"hosts", "list"}).exit_code == 1);
  CHECK(as(ada, {"hosts", "list"}).exit_code == 0);
  CHECK(as_cert(certs2, {"hosts", "list"}).exit_code == 0);

  // Twenty wrong tokens from one address: its administrative requests are refused for a while,
  // even with good credentials.
  write_file(tmp / "wrong.token", std::string(64, 'e'));
  for (int i = 0; i < 20; ++i) as((tmp / "wrong.token").string(), {"hosts", "list"});
  r = as(ada, {"hosts", "list"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("too many wrong credentials from 127.0.0.1") != std::string::npos);
}

TEST_CASE("a relay renews its certificate while it runs and serves with the new one", "[security]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager", {"--certificate-lifetime", "2m"});
  ManagerProc relay(tmp / "relay",
                    {"--parent", m.url(), "--host-name", "relay1", "--sync-interval-ms", "200"},
                    "127.0.0.86");
  const auto first = read_file(tmp / "relay/identity/host.crt");
  REQUIRE(
      wait_until([&] { return relay.log().find("certificate renewed") != std::string::npos; }, 30s, 200ms));
  CHECK(read_file(tmp / "relay/identity/host.crt") != first);
  // A host enrolling through it now meets the renewed certificate, and works.
  AgentProc below(tmp / "below", relay.url(), "below", "127.0.0.87");
  REQUIRE(wait_until([&] { return !id_by_name(m, "below").empty(); }, 30s));
  CHECK(all_succeeded(wait_job(m, create_job(m, {"get-system-info", "below"}), 30s)));
}

TEST_CASE("hostile enrolment and account requests get a 4xx naming the problem and change nothing",
          "[security]") {
  TempDir tmp;
  ManagerProc m(tmp / "manager");
  const auto host = enrol_test_host(m, tmp / "h1", "h1");
  const auto pending_before = ctl_json(m, {"hosts", "pending", "--all"}).at("enrolments").as_array().size();
  // Certificate requests made with the openssl tool, each wrong in one way.
  auto csr = [&](const std::string& name, const std::string& keyspec, const std::string& san) {
    const auto key = tmp / (name + ".key"), out = tmp / (name + ".csr");
    std::vector<std::string> argv = {"openssl", "req",        "-new",  "-newkey",     keyspec, "-nodes",
                                     "-keyout", key.string(), "-subj", "/CN=" + name, "-out",  out.string()};
    if (keyspec.starts_with("ec")) argv.insert(argv.begin() + 5, {"-pkeyopt", "ec_paramgen_curve:P-256"});
    if (!san.empty()) argv.insert(argv.end(), {"-addext", "subjectAltName=" + san});
    REQUIRE(run(argv).exit_code == 0);
    return read_file(out);
  };
  auto enrol_body = [](const std::string& request, const std::string& extra = {}) {
    return bj::serialize(bj::object{{"request", request}, {"name", "x"}}).insert(1, extra);
  };
  const std::string id = "9a0c5d0e-1111-4222-8333-444455556666";
  struct Case {
    std::string what, body;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"garbage request", enrol_body("garbage"), 400, "not a PEM certificate request"},
      {"a user's identity asked for", enrol_body(csr("u", "ec", "URI:urn:distrib:user:root")), 400,
       "neither agent nor relay"},
      {"two identities",
       enrol_body(csr("two", "ec", "URI:urn:distrib:agent:" + id + ",URI:urn:distrib:relay:" + id)), 400,
       "exactly one identity"},
      {"no identity", enrol_body(csr("none", "ec", "")), 400, "exactly one identity"},
      {"an RSA key", enrol_body(csr("rsa", "rsa:2048", "URI:urn:distrib:agent:" + id)), 400, "not an EC key"},
      {"a host id that is no UUID", enrol_body(csr("bad", "ec", "URI:urn:distrib:agent:../../etc")), 400,
       "is not a UUID"},
      {"\"via\" without a relay's certificate",
       enrol_body(csr("via", "ec", "URI:urn:distrib:agent:" + id), R"("via":["relay"],)"), 403,
       "only a relay passes enrolments on"},
      {"a body over the route's limit", enrol_body(std::string(100 * 1024, 'A')), 413, "limit"},
      {"a request over its limit", enrol_body(std::string(60 * 1024, 'A')), 400, "request"},
      {"not JSON", "{\"request\":", 400, "JSON"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const auto a = call(m, nullptr, "POST", "/v1/agent/enrol", c.body);
    CHECK(a.status == c.status);
    CHECK(a.body.find(c.says) != std::string::npos);
  }
  // An enrolled agent is no relay either.
  const auto a = call(m, &host, "POST", "/v1/agent/enrol",
                      enrol_body(csr("via2", "ec", "URI:urn:distrib:agent:" + id), R"("via":["x"],)"));
  CHECK(a.status == 403);
  CHECK(ctl_json(m, {"hosts", "pending", "--all"}).at("enrolments").as_array().size() == pending_before);

  // Accounts: names, roles and sizes are checked before anything is kept.
  const auto token_header = "Authorization: Bearer " + read_file(m.token_file()).substr(0, 64);
  auto add_user = [&](const std::string& body) {
    auto r = run({"curl", "-s", "-w", "\n%{http_code}", "--cacert", m.ca_file(), "-H", token_header, "-H",
                  "Content-Type: application/json", "--data-binary", body, m.url() + "/v1/users"});
    return r.out;
  };
  CHECK(add_user(R"({"name":"bad name!","role":"viewer"})").find("a user name is 1 to 64") !=
        std::string::npos);
  CHECK(add_user(R"({"name":"eve","role":"root"})").find("a role is viewer, operator or administrator") !=
        std::string::npos);
  CHECK(add_user(bj::serialize(bj::object{{"name", std::string(5000, 'a')}, {"role", "viewer"}}))
            .ends_with("400"));
  CHECK(add_user(R"({"name":["eve"],"role":"viewer"})").ends_with("400"));
  CHECK(add_user(R"({"name":"eve"})").ends_with("400"));
  CHECK(ctl_json(m, {"user", "list"}).at("users").as_array().empty());
}
