// distribctl: enrolment tokens (enrol-token create, list, revoke).
#include "cli.h"

#include <ctime>
#include <iostream>

namespace distribctl {

int enrol_token_cmd(Cli& cli) {
  const char* usage =
      "usage: distribctl enrol-token create [--expires 24h] [--uses N|unlimited] [--group IDGROUP] | list | "
      "revoke ID";
  if (cli.args.size() < 2) throw UsageError(usage);
  const auto& sub = cli.args[1];
  auto c = cli.client();
  if (sub == "create") {
    cli.expect_args(2, usage);
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
    auto o = bj::parse(c.call("POST", "/v1/enrol-tokens", bj::serialize(body))).as_object();
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
