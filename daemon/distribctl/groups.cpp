// distribctl: Host groups and ID groups.
#include "cli.h"

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <thread>

namespace distribctl {

int group_cmd(Cli& cli) {
  const auto& sub = cli.args[1];
  auto c = cli.client();
  if (sub == "list") {
    cli.expect_args(2, "group list");
    auto o = bj::parse(c.call("GET", "/v1/groups")).as_object();
    if (cli.json) return print_json(o), kOk;
    Table t({"GROUP", "HOSTS", "MEMBERS", "DESCRIPTION"});
    for (const auto& v : o.at("groups").as_array()) {
      const auto& g = v.as_object();
      t.add({str(g, "name"), std::to_string(g.at("members").as_array().size()), one_line(host_names(g), 60),
             one_line(str(g, "description"), 40)});
    }
    t.print();
    return kOk;
  }
  if (cli.args.size() < 3) throw UsageError("usage: distribctl group create|add|remove|show|delete NAME ...");
  const auto& name = cli.args[2];
  if (sub == "create" && cli.vm.count("query")) {
    if (cli.args.size() > 3) throw UsageError("a host group has either members or --query, not both");
    auto o = bj::parse(c.call("POST", "/v1/groups",
                              bj::serialize(bj::object{{"name", name},
                                                       {"description", cli.opt("description")},
                                                       {"query", cli.opt("query")}})))
                 .as_object();
    if (cli.json) return print_json(o), kOk;
    std::cout << fmt::format("host group {} created: the hosts matching {} ({} now)\n", name, str(o, "query"),
                             o.at("members").as_array().size());
    return kOk;
  }
  if (sub == "create") {
    c.create_host_group(name, cli.rest(3), cli.opt("description"));
    if (cli.json) return print_json(bj::object{{"created", name}}), kOk;
    std::cout << fmt::format("host group {} created with {} host(s)\n", name, cli.args.size() - 3);
    return kOk;
  }
  if (sub == "add" || sub == "remove") {
    if (cli.args.size() < 4) throw UsageError("usage: distribctl group " + sub + " NAME HOST...");
    c.change_members(false, name, sub == "add" ? cli.rest(3) : std::vector<std::string>{},
                     sub == "remove" ? cli.rest(3) : std::vector<std::string>{});
    if (!cli.json)
      std::cout << fmt::format("host group {}: {} host(s) {}\n", name, cli.args.size() - 3,
                               sub == "add" ? "added" : "removed");
    else
      print_json(bj::object{{"group", name}});
    return kOk;
  }
  if (sub == "show") {
    cli.expect_args(3, "group show NAME");
    auto o = bj::parse(c.call("GET", "/v1/groups/" + url_encode(name))).as_object();
    if (cli.json) return print_json(o), kOk;
    std::cout << fmt::format("host group {} · {} host(s) · created {}\n", name,
                             o.at("members").as_array().size(), format_time(num(o, "created_at")));
    if (!str(o, "query").empty())
      std::cout << "dynamic: the hosts whose inventory matches " << str(o, "query") << "\n";
    if (!str(o, "description").empty()) std::cout << str(o, "description") << "\n";
    std::cout << "\n";
    Table t({"HOST", "HOST ID"});
    for (const auto& v : o.at("hosts").as_array())
      t.add({str(v.as_object(), "name"), str(v.as_object(), "host_id")});
    t.print();
    return kOk;
  }
  if (sub == "delete") {
    cli.expect_args(3, "group delete NAME");
    c.call("DELETE", "/v1/groups/" + url_encode(name));
    if (cli.json)
      print_json(bj::object{{"deleted", name}});
    else
      std::cout << "host group " << name << " deleted\n";
    return kOk;
  }
  throw UsageError("unknown command \"group " + sub + "\" (see distribctl --help)");
}

int idgroup_cmd(Cli& cli) {
  const auto& sub = cli.args[1];
  auto c = cli.client();
  if (sub == "list") {
    cli.expect_args(2, "idgroup list");
    auto o = bj::parse(c.call("GET", "/v1/id-groups")).as_object();
    if (cli.json) return print_json(o), kOk;
    Table t({"ID GROUP", "MEMBERS", "STANDING JOBS", "PASSWORD", "JOIN POLICY", "DESCRIPTION"});
    for (const auto& v : o.at("id_groups").as_array()) {
      const auto& g = v.as_object();
      const auto& pol = g.at("policy").as_object();
      std::string policy;
      if (!str(pol, "name_pattern").empty()) policy = "name " + str(pol, "name_pattern");
      if (!str(pol, "ip_range").empty())
        policy += (policy.empty() ? "" : " or ") + std::string("ip ") + str(pol, "ip_range");
      t.add({str(g, "name"), std::to_string(num(g, "member_count")), std::to_string(num(g, "standing_jobs")),
             flag(g, "password") ? "yes" : "no", policy.empty() ? "-" : policy,
             one_line(str(g, "description"), 40)});
    }
    t.print();
    return kOk;
  }
  if (cli.args.size() < 3)
    throw UsageError("usage: distribctl idgroup create|add|remove|show|delete NAME ...");
  const auto& name = cli.args[2];
  if (sub == "create") {
    cli.expect_args(3, "idgroup create NAME [--password P] [--match-name GLOB] [--match-ip CIDR]");
    JoinPolicy policy{cli.opt("match-name"), cli.opt("match-ip")};
    auto g = c.create_id_group(name, cli.opt("password"), policy, cli.opt("description"));
    if (cli.json) return print_json(bj::object{{"created", name}, {"members", g.members.size()}}), kOk;
    std::cout << fmt::format(
        "ID group {} created{}{}\n", name,
        g.has_password() || cli.vm.count("password") ? " (join password set)" : "",
        policy.empty() ? "" : fmt::format("; {} host(s) joined by its policy", g.members.size()));
    return kOk;
  }
  if (sub == "add" || sub == "remove") {
    if (cli.args.size() < 4) throw UsageError("usage: distribctl idgroup " + sub + " NAME HOST...");
    bj::array hosts;
    for (const auto& h : cli.rest(3)) hosts.emplace_back(h);
    auto o = bj::parse(c.call("POST", "/v1/id-groups/" + url_encode(name) + "/members",
                              bj::serialize(bj::object{{sub, hosts}})))
                 .as_object();
    if (cli.json) return print_json(o), kOk;
    if (sub == "add")
      std::cout << fmt::format("ID group {}: {} host(s) joined; {} standing job entr{} created\n", name,
                               num(o, "joined"), num(o, "entries"), num(o, "entries") == 1 ? "y" : "ies");
    else
      std::cout << fmt::format("ID group {}: {} host(s) left; {} pending entr{} cancelled\n", name,
                               num(o, "left"), num(o, "cancelled"), num(o, "cancelled") == 1 ? "y" : "ies");
    return kOk;
  }
  if (sub == "show") {
    cli.expect_args(3, "idgroup show NAME");
    auto o = bj::parse(c.call("GET", "/v1/id-groups/" + url_encode(name))).as_object();
    if (cli.json) return print_json(o), kOk;
    const auto& pol = o.at("policy").as_object();
    std::cout << fmt::format("ID group {} · {} member(s) · password {} · created {}\n", name,
                             o.at("members").as_array().size(), flag(o, "password") ? "yes" : "no",
                             format_time(num(o, "created_at")));
    if (!str(pol, "name_pattern").empty() || !str(pol, "ip_range").empty())
      std::cout << "join policy: "
                << (str(pol, "name_pattern").empty() ? "" : "name " + str(pol, "name_pattern") + " ")
                << (str(pol, "ip_range").empty() ? "" : "ip " + str(pol, "ip_range")) << "\n";
    std::cout << "\nMembers\n";
    Table t({"HOST", "HOST ID", "JOINED BY", "JOINED"});
    for (const auto& v : o.at("members").as_array()) {
      const auto& m = v.as_object();
      t.add({str(m, "host_name"), str(m, "host_id"), str(m, "how"), format_time(num(m, "joined_at"))});
    }
    t.print();
    std::cout << "\nStanding jobs (oldest first)\n";
    Table jt({"JOB", "TYPE", "PACKAGE", "CREATED"});
    for (const auto& v : o.at("jobs").as_array()) {
      const auto& j = v.as_object();
      const auto& pkg = j.at("package").as_object();
      jt.add({std::to_string(num(j, "id")), str(j, "type"), str(pkg, "name") + " " + str(pkg, "version"),
              format_time(num(j, "created_at"))});
    }
    jt.print();
    return kOk;
  }
  if (sub == "delete") {
    cli.expect_args(3, "idgroup delete NAME");
    c.call("DELETE", "/v1/id-groups/" + url_encode(name));
    if (cli.json)
      print_json(bj::object{{"deleted", name}});
    else
      std::cout << "ID group " << name << " deleted (its jobs stop standing)\n";
    return kOk;
  }
  throw UsageError("unknown command \"idgroup " + sub + "\" (see distribctl --help)");
}

}  // namespace distribctl
