// distribctl: administrators' accounts (user add, list, remove, token).
#include "cli.h"

#include <iostream>

namespace distribctl {

int user_cmd(Cli& cli) {
  const char* usage =
      "user add NAME --role viewer|operator|administrator | user list | user remove NAME | user token NAME";
  if (cli.args.size() < 2) throw UsageError(std::string("usage: distribctl ") + usage);
  const auto& sub = cli.args[1];
  auto c = cli.client();
  if (sub == "list") {
    cli.expect_args(2, usage);
    auto o = bj::parse(c.call("GET", "/v1/users")).as_object();
    if (cli.json) return print_json(o), kOk;
    Table t({"NAME", "ROLE", "CREATED", "CREATED BY"});
    for (const auto& v : o.at("users").as_array()) {
      const auto& u = v.as_object();
      t.add({str(u, "name"), str(u, "role"), format_time(num(u, "created_at")), str(u, "created_by")});
    }
    t.print();
    std::cerr << "the admin token (STATE_DIR/admin.token) is "
              << (flag(o, "admin_token") ? "accepted too (distribd --admin-token false turns it off)"
                                         : "turned off")
              << "\n";
    return kOk;
  }
  if (sub == "add" || sub == "token") {
    cli.expect_args(3, usage);
    std::string answer;
    if (sub == "add") {
      const auto role = cli.opt("role");
      if (role.empty()) throw UsageError("user add needs --role viewer|operator|administrator");
      answer = c.call("POST", "/v1/users", bj::serialize(bj::object{{"name", cli.args[2]}, {"role", role}}));
    } else {
      answer = c.call("POST", "/v1/users/" + cli.args[2] + "/token", "{}");
    }
    auto o = bj::parse(answer).as_object();
    if (cli.json) return print_json(o), kOk;
    std::cout << str(o, "token") << "\n";
    std::cerr << "token of " << str(o, "name")
              << ": shown only now. Its holder passes it with --token-file FILE (or DISTRIB_TOKEN).\n";
    return kOk;
  }
  if (sub == "remove") {
    cli.expect_args(3, usage);
    auto o = bj::parse(c.call("DELETE", "/v1/users/" + cli.args[2])).as_object();
    if (cli.json) return print_json(o), kOk;
    std::cout << "user " << cli.args[2] << " removed; its token no longer works\n";
    return kOk;
  }
  throw UsageError(std::string("usage: distribctl ") + usage);
}

}  // namespace distribctl
