// distribctl: Events (pages, --follow, sinks), the audit trail and cluster status.
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

int events_cmd(Cli& cli) {
  if (cli.args.size() >= 2 && cli.args[1] == "sinks") {
    cli.expect_args(2, "events sinks");
    auto o = bj::parse(cli.client().call("GET", "/v1/events/sinks")).as_object();
    if (cli.json) return print_json(o), kOk;
    Table t({"SINK", "TYPE", "TARGET", "DELIVERED", "PENDING", "FAILURES", "DROPPED", "LAST ERROR"});
    for (const auto& v : o.at("sinks").as_array()) {
      const auto& x = v.as_object();
      t.add({str(x, "name"), str(x, "type"), one_line(str(x, "target"), 40),
             std::to_string(num(x, "delivered")), std::to_string(num(x, "pending")),
             std::to_string(num(x, "failures")), std::to_string(num(x, "dropped")),
             str(x, "last_error").empty() ? "-" : one_line(str(x, "last_error"), 60)});
    }
    if (o.at("sinks").as_array().empty())
      std::cout << "no event sinks configured (distribd --event-sink)\n";
    else
      t.print();
    return kOk;
  }
  if (cli.args.size() != 1)
    throw UsageError(
        "usage: distribctl events [--follow] [--after ID] [--limit N] [--type T,T] [--severity S] | events "
        "sinks");
  const std::string types = cli.opt("type", "");
  const auto severity = parse_severity(cli.opt("severity", "info"));
  std::int64_t after = -1;
  if (cli.vm.count("after")) {
    const auto text = cli.vm["after"].as<std::string>();
    std::size_t used = 0;
    try {
      after = std::stoll(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || after < 0)
      throw UsageError("--after takes an event id (0: from the first), not \"" + text + "\"");
  }
  auto print = [&](const Event& e) {
    if (cli.json) {
      std::cout << event_to_json(e) << std::endl;
      return;
    }
    std::cout << fmt::format("{:>6}  {}  {:<7}  {:<18}  {}\n", e.id, event_time(e.at_ms),
                             to_string(e.severity), e.type, one_line(e.message, 160))
              << std::flush;
  };
  auto c = cli.client();
  if (cli.vm.count("follow")) {
    if (!cli.json) std::cerr << "following events (Ctrl-C to stop)\n";
    c.follow_events(after, types, severity, [&](const Event& e) {
      print(e);
      return true;
    });
    return kOk;
  }
  const int limit = cli.vm.count("limit") ? cli.vm["limit"].as<int>() : 50;
  const auto list = c.events(after, limit, types, severity);
  if (cli.json) {
    bj::array a;
    for (const auto& e : list) a.push_back(bj::parse(event_to_json(e)));
    return print_json(bj::object{{"events", std::move(a)}}), kOk;
  }
  if (list.empty()) {
    std::cout << "no events\n";
    return kOk;
  }
  Table t({"ID", "TIME", "SEVERITY", "TYPE", "JOB", "SUBJECT", "MESSAGE"});
  for (const auto& e : list)
    t.add({std::to_string(e.id), event_time(e.at_ms), std::string(to_string(e.severity)), e.type,
           e.job_id ? std::to_string(e.job_id) : "-", e.subject.empty() ? "-" : one_line(e.subject, 30),
           one_line(e.message, 100)});
  t.print();
  return kOk;
}

int audit_cmd(Cli& cli) {
  cli.expect_args(1, "audit");
  const int limit = cli.vm.count("limit") ? cli.vm["limit"].as<int>() : 50;
  const auto list = cli.client().audit(limit);
  if (cli.json) {
    bj::array a;
    for (const auto& r : list)
      a.push_back(bj::object{{"id", r.id},
                             {"at_ms", r.at_ms},
                             {"actor", r.actor},
                             {"remote", r.remote},
                             {"action", r.action},
                             {"target", r.target},
                             {"status", r.status},
                             {"result", r.result}});
    return print_json(bj::object{{"audit", std::move(a)}}), kOk;
  }
  if (list.empty()) {
    std::cout << "the audit trail is empty\n";
    return kOk;
  }
  Table t({"ID", "TIME", "WHO", "FROM", "ACTION", "TARGET", "STATUS", "RESULT"});
  for (const auto& r : list)
    t.add({std::to_string(r.id), event_time(r.at_ms), one_line(r.actor, 32), r.remote, one_line(r.action, 48),
           r.target.empty() ? "-" : one_line(r.target, 32), std::to_string(r.status),
           one_line(r.result, 80)});
  t.print();
  return kOk;
}

int cluster_cmd(Cli& cli) {
  if (cli.args.size() != 2 || cli.args[1] != "status") throw UsageError("usage: distribctl cluster status");
  auto c = cli.client();
  auto o = bj::parse(c.call("GET", "/v1/cluster/status")).as_object();
  if (cli.json) return print_json(o), kOk;
  const auto now = num(o, "now_ms");
  const auto expires = num(o, "expires_at_ms");
  std::cout << fmt::format("active node: {} (answered by {}{}, coordinator {})\n", str(o, "holder"),
                           str(o, "node"), o.contains("state") ? ", " + str(o, "state") : std::string(),
                           str(o, "coordinator"));
  const auto left = expires - now;
  std::cout << fmt::format(
      "active since {} · {} · fencing token {}\n", format_time(num(o, "since_ms") / 1000),
      left > 100'000'000'000 ? std::string("held until the node stops (no expiry)")
                             : fmt::format("lease expires in {:.1f} s", static_cast<double>(left) / 1000.0),
      num(o, "token"));
  if (const auto* r = o.if_contains("renewals"); r && r->is_object() && num(r->as_object(), "count") > 0) {
    const auto& x = r->as_object();
    const auto ms = [&](const char* k) { return x.contains(k) ? x.at(k).to_number<double>() : 0.0; };
    std::cout << fmt::format(
        "renewals by {}: {} · late by p50 {:.0f} ms, p99 {:.0f} ms, max {:.0f} ms · {} step-down(s)\n",
        str(o, "node"), num(x, "count"), ms("p50_ms"), ms("p99_ms"), ms("max_ms"), num(x, "step_downs"));
  }
  Table t({"TOKEN", "NODE", "TOOK OVER FROM", "AT", "GAP"});
  for (const auto& v : o.at("takeovers").as_array()) {
    const auto& x = v.as_object();
    const auto prev = str(x, "previous");
    t.add({std::to_string(num(x, "token")), str(x, "holder"), prev.empty() ? "-" : prev,
           format_time(num(x, "at_ms") / 1000),
           prev.empty() ? "-" : fmt::format("{:.1f} s", static_cast<double>(num(x, "gap_ms")) / 1000.0)});
  }
  t.print();
  return kOk;
}

}  // namespace distribctl
