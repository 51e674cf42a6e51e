// distribctl: Hosts and content counters: hosts list, hosts tree, hosts approve, stats.
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

int hosts_list(Cli& cli) {
  cli.expect_args(2, "hosts list");
  auto answer = cli.hosts_answer();
  if (cli.json) {
    print_json(answer);
    return kOk;
  }
  std::map<std::string, std::string> names;
  for (const auto& v : answer.at("hosts").as_array())
    names[str(v.as_object(), "host_id")] = str(v.as_object(), "name");
  Table t({"NAME", "ADDRESS", "HOST ID", "ROLE", "PARENT", "STATUS", "OS", "LAST SEEN"});
  for (const auto& v : answer.at("hosts").as_array()) {
    const auto& h = v.as_object();
    const auto parent = str(h, "parent");
    const auto& addrs = h.at("addresses").as_array();
    t.add({str(h, "name"), addrs.empty() ? "-" : std::string(addrs[0].as_string()), str(h, "host_id"),
           str(h, "role"), parent.empty() ? "-" : (names.count(parent) ? names[parent] : parent.substr(0, 8)),
           !flag(h, "approved") ? "awaiting approval"
           : flag(h, "online")  ? "online"
                                : "offline",
           one_line(str(h, "os"), 40), format_time(num(h, "last_seen"))});
  }
  t.print();
  const auto& dups = answer.at("duplicate_keys").as_array();
  if (!dups.empty()) {
    std::cout << "\nconflict: these " << str(answer, "key_mode")
              << " keys are claimed by more than one host identifier and cannot be used as destinations:\n";
    for (const auto& d : dups) std::cout << "  " << d.as_string() << "\n";
    std::cout << "hint: rename or readdress one of the machines, or use --key-mode host-id\n";
  }
  return kOk;
}

int hosts_tree(Cli& cli) {
  cli.expect_args(2, "hosts tree");
  auto answer = cli.hosts_answer();
  if (cli.json) {
    print_json(answer);
    return kOk;
  }
  std::map<std::string, std::vector<const bj::object*>> children;
  std::set<std::string> known;
  for (const auto& v : answer.at("hosts").as_array()) known.insert(str(v.as_object(), "host_id"));
  for (const auto& v : answer.at("hosts").as_array()) {
    const auto& h = v.as_object();
    auto parent = str(h, "parent");
    if (!parent.empty() && !known.count(parent)) parent.clear();  // parent not (yet) reported
    children[parent].push_back(&h);
  }
  for (auto& [p, list] : children)
    std::sort(list.begin(), list.end(), [](auto* a, auto* b) {
      const bool ra = str(*a, "role") == "relay", rb = str(*b, "role") == "relay";
      return ra != rb ? ra : str(*a, "name") < str(*b, "name");
    });
  const auto& me = answer.at("manager").as_object();
  std::cout << "this " << str(me, "role") << " (" << str(me, "host_id") << ")\n";
  std::size_t online = 0, total = 0;
  std::function<void(const std::string&, const std::string&)> walk = [&](const std::string& id,
                                                                         const std::string& indent) {
    auto it = children.find(id);
    if (it == children.end()) return;
    for (std::size_t i = 0; i < it->second.size(); ++i) {
      const auto& h = *it->second[i];
      const bool last = i + 1 == it->second.size();
      const bool up = flag(h, "online");
      ++total;
      online += up;
      std::cout << indent << (last ? "└── " : "├── ") << str(h, "name") << "  " << str(h, "role") << "  "
                << (!flag(h, "approved") ? "awaiting approval"
                    : up                 ? "online"
                                         : "offline")
                << "  last seen " << ago(num(h, "last_seen")) << "\n";
      walk(str(h, "host_id"), indent + (last ? "    " : "│   "));
    }
  };
  walk("", "");
  std::cout << fmt::format("\n{} host(s), {} online\n", total, online);
  return kOk;
}

int hosts_approve(Cli& cli) {
  if (cli.args.size() < 3) throw UsageError("usage: distribctl hosts approve HOST...");
  const int n = cli.client().approve_hosts(std::vector<std::string>(cli.args.begin() + 2, cli.args.end()));
  if (cli.json)
    print_json(bj::object{{"approved", n}});
  else
    std::cout << fmt::format("{} host(s) approved\n", n);
  return kOk;
}

int stats(Cli& cli) {
  cli.expect_args(1, "stats");
  auto answer = bj::parse(cli.client().call("GET", "/v1/stats")).as_object();
  if (cli.json) {
    print_json(answer);
    return kOk;
  }
  const auto& c = answer.at("content").as_object();
  auto count = [&](std::string_view k) {
    auto it = c.find(k);
    return it == c.end() ? std::uint64_t{0} : it->value().to_number<std::uint64_t>();
  };
  std::cout << fmt::format("{} {}\nchunks served {} ({}) · cache hits {} · misses {}\n", str(answer, "role"),
                           str(answer, "host_id"), count("chunks_served"), format_size(count("bytes_served")),
                           count("cache_hits"), count("cache_misses"));
  if (c.contains("upstream_fetches"))
    std::cout << fmt::format(
        "fetched from the parent: {} chunk(s), {} · requests that joined a fetch under way: {}\n",
        count("upstream_fetches"), format_size(count("upstream_bytes")), count("upstream_joined"));
  std::map<std::string, std::string> names;
  try {
    const auto hosts = cli.hosts_answer();
    for (const auto& v : hosts.at("hosts").as_array())
      names[str(v.as_object(), "host_id")] = str(v.as_object(), "name");
  } catch (const Error&) {
  }
  std::cout << "\n";
  Table t({"REQUESTER", "HOST ID", "CHUNKS", "BYTES"});
  for (const auto& v : c.at("by_requester").as_array()) {
    const auto& o = v.as_object();
    const auto id = str(o, "host_id");
    t.add({names.count(id) ? names[id] : "-", id, std::to_string(o.at("chunks").to_number<std::uint64_t>()),
           format_size(o.at("bytes").to_number<std::uint64_t>())});
  }
  t.print();
  return kOk;
}

}  // namespace distribctl
