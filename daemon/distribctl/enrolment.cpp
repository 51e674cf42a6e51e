// distribctl: enrolment of hosts (hosts pending, accept, reject, revoke), enrolment tokens
// (enrol-token create, list, revoke) and enrolment bundles (enrol-bundle).
#include "cli.h"

#include <ctime>
#include <iostream>

namespace distribctl {

namespace {

// The body of POST /v1/enrol-tokens from --expires, --uses and --group.
bj::object token_request(const Cli& cli) {
  bj::object body{{"expires_in_seconds", parse_duration_seconds(cli.opt("expires", "24h"))}};
  const auto uses = cli.opt("uses", "1");
  if (uses == "unlimited") {
    body["uses"] = -1;
  } else {
    std::size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(uses, &used);
    } catch (const std::exception&) {
    }
    if (used != uses.size() || n < 1)
      throw UsageError("--uses is a number from 1 or \"unlimited\", not \"" + uses + "\"");
    body["uses"] = n;
  }
  if (const auto g = cli.opt("group"); !g.empty()) body["group"] = g;
  return body;
}

// A host named by id, or by the name of its enrolment when exactly one has it.
std::string enrolled_host(AdminClient& c, const std::string& given) {
  if (given.size() == 36 && given[8] == '-') return given;
  auto o = bj::parse(c.call("GET", "/v1/enrolments")).as_object();
  std::vector<std::string> ids;
  for (const auto& v : o.at("enrolments").as_array())
    if (str(v.as_object(), "name") == given) ids.push_back(str(v.as_object(), "host_id"));
  if (ids.size() == 1) return ids.front();
  throw distrib::Error(ids.empty() ? ErrorKind::not_found : ErrorKind::conflict,
                       ids.empty()
                           ? "no enrolment of a host named " + given + " (distribctl hosts pending --all)"
                           : std::to_string(ids.size()) + " enrolments of hosts named " + given +
                                 "; name the host by its id (distribctl hosts pending --all)");
}

std::string short_fingerprint(const std::string& fp) {
  return fp.size() > 7 + 16 ? fp.substr(0, 7 + 16) + "…" : fp;
}

}  // namespace

// hosts pending [--all] | hosts accept|reject|revoke HOST [--fingerprint FP]
int enrolment_cmd(Cli& cli) {
  const auto& sub = cli.args[1];
  auto c = cli.client();
  if (sub == "pending") {
    cli.expect_args(2, "hosts pending [--all]");
    const bool all = cli.vm.count("all") > 0;
    auto o = bj::parse(c.call("GET", all ? "/v1/enrolments" : "/v1/enrolments?state=pending")).as_object();
    if (cli.json) return print_json(o), kOk;
    const auto& list = o.at("enrolments").as_array();
    if (list.empty()) {
      std::cout << (all ? "no enrolments yet\n" : "no host waits for approval\n");
      return kOk;
    }
    Table t({"HOST ID", "NAME", "ROLE", "ADDRESS", "VIA", "KEY FINGERPRINT", "REQUESTED", "STATE"});
    for (const auto& v : list) {
      const auto& e = v.as_object();
      t.add({str(e, "host_id"), str(e, "name"), str(e, "role"), str(e, "address"),
             str(e, "via").empty() ? "-" : str(e, "via"),
             all ? short_fingerprint(str(e, "fingerprint")) : str(e, "fingerprint"),
             format_time(num(e, "requested_at")), str(e, "state")});
    }
    t.print();
    if (!all)
      std::cerr << "compare the fingerprint with the host's (its log says it), then: distribctl hosts accept "
                   "HOST\n";
    return kOk;
  }
  const char* usage = "hosts accept|reject|revoke HOST [--fingerprint sha256:...]";
  cli.expect_args(3, usage);
  const auto host = enrolled_host(c, cli.args[2]);
  bj::object body;
  if (const auto fp = cli.opt("fingerprint"); !fp.empty()) body["fingerprint"] = fp;
  auto o = bj::parse(c.call("POST", "/v1/enrolments/" + host + "/" + sub, bj::serialize(body))).as_object();
  if (cli.json) return print_json(o), kOk;
  const auto what = sub == "accept"
                        ? "accepted: its certificate is issued; it starts working at its next contact"
                    : sub == "reject" ? "rejected: it gets no certificate"
                                      : "revoked: its certificate is refused from now on";
  std::cout << str(o, "role") << " " << str(o, "name") << " (" << host << ") " << what << "\n";
  return kOk;
}

// enrol-bundle [--output FILE] [--parent URL...] [--new-token [--expires D] [--uses N] [--group G]]
int enrol_bundle_cmd(Cli& cli) {
  cli.expect_args(1,
                  "enrol-bundle [--output FILE] [--parent URL...] [--new-token [--expires 24h] "
                  "[--uses N|unlimited] [--group IDGROUP]]");
  auto c = cli.client();
  bj::array servers;
  for (const auto& p : cli.vm.count("parent") ? cli.vm["parent"].as<std::vector<std::string>>()
                                              : std::vector<std::string>{cli.opt(
                                                    "server", env_or("DISTRIB_SERVER", kDefaultServer))})
    servers.emplace_back(p);
  bj::object body{{"servers", std::move(servers)}};
  std::string token_note;
  if (cli.vm.count("new-token")) {
    auto t = bj::parse(c.call("POST", "/v1/enrol-tokens", bj::serialize(token_request(cli)))).as_object();
    body["token"] = str(t, "token");
    token_note =
        " with token " + str(t, "id") + " (" +
        (num(t, "uses_left") < 0 ? std::string("any number of") : std::to_string(num(t, "uses_left"))) +
        " enrolment(s) until " + format_time(num(t, "expires_at")) + ")";
  }
  auto o = bj::parse(c.call("POST", "/v1/enrol-bundle", bj::serialize(body))).as_object();
  cli.emit(str(o, "bundle"));
  std::cerr << "enrolment bundle" << token_note << "; CA " << str(o, "ca_fingerprint")
            << (cli.vm.count("output") ? "; written to " + cli.opt("output") : std::string()) << "\n"
            << "on the new host: distribd --role agent --enrol-bundle FILE --state-dir DIR\n";
  return kOk;
}

int enrol_token_cmd(Cli& cli) {
  const char* usage =
      "usage: distribctl enrol-token create [--expires 24h] [--uses N|unlimited] [--group IDGROUP] | list | "
      "revoke ID";
  if (cli.args.size() < 2) throw UsageError(usage);
  const auto& sub = cli.args[1];
  auto c = cli.client();
  if (sub == "create") {
    cli.expect_args(2, usage);
    auto o = bj::parse(c.call("POST", "/v1/enrol-tokens", bj::serialize(token_request(cli)))).as_object();
    if (cli.json) return print_json(o), kOk;
    std::cout << str(o, "token") << "\n";
    std::cerr << "token " << str(o, "id") << ": "
              << (num(o, "uses_left") < 0 ? std::string("any number of")
                                          : std::to_string(num(o, "uses_left")))
              << " enrolment(s) until " << format_time(num(o, "expires_at"))
              << (str(o, "group").empty() ? "" : ", joining ID group " + str(o, "group"))
              << ". It is shown only now: keep it where hosts can read it (an enrolment bundle).\n";
    return kOk;
  }
  if (sub == "list") {
    cli.expect_args(2, usage);
    auto o = bj::parse(c.call("GET", "/v1/enrol-tokens")).as_object();
    if (cli.json) return print_json(o), kOk;
    Table t({"ID", "USES LEFT", "EXPIRES", "GROUP", "STATE", "CREATED BY"});
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    for (const auto& v : o.at("tokens").as_array()) {
      const auto& k = v.as_object();
      const auto left = num(k, "uses_left");
      const auto state = flag(k, "revoked")            ? "revoked"
                         : num(k, "expires_at") <= now ? "expired"
                         : left == 0                   ? "used up"
                                                       : "valid";
      t.add({str(k, "id"), left < 0 ? "unlimited" : std::to_string(left), format_time(num(k, "expires_at")),
             str(k, "group").empty() ? "-" : str(k, "group"), state, str(k, "created_by")});
    }
    t.print();
    return kOk;
  }
  if (sub == "revoke") {
    cli.expect_args(3, usage);
    auto o = bj::parse(c.call("DELETE", "/v1/enrol-tokens/" + cli.args[2])).as_object();
    if (cli.json) return print_json(o), kOk;
    std::cout << "enrolment token " << cli.args[2] << " revoked\n";
    return kOk;
  }
  throw UsageError(usage);
}

}  // namespace distribctl
