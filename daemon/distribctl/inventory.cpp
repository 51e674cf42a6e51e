// distribctl: Inventory (show, history, query, user fields) and collected files (collect list|get).
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

int inventory_cmd(Cli& cli) {
  const auto& sub = cli.args[1];
  auto c = cli.client();
  if (sub == "show") {
    cli.expect_args(3, "inventory show HOST");
    auto o = bj::parse(c.call("GET", "/v1/inventory/hosts/" + url_encode(cli.args[2]))).as_object();
    if (cli.json) return print_json(o), kOk;
    const auto& items = o.at("items").as_object();
    std::cout << fmt::format("host {} ({}) · {} items · collected {} · reported {}\n", str(o, "name"),
                             str(o, "host_id"), items.size(), format_time(num(o, "collected_at")),
                             format_time(num(o, "reported_at")));
    // System and user fields first, then software as one table.
    for (const char* root : {"system.", "user.", "software."}) {
      Table t({"ITEM", "VALUE"});
      std::size_t n = 0;
      for (const auto& kv : items)
        if (std::string_view(kv.key()).starts_with(root)) {
          t.add({std::string(kv.key()), one_line(std::string(kv.value().as_string()), 80)});
          ++n;
        }
      if (n == 0) continue;
      std::cout << "\n";
      t.print();
    }
    return kOk;
  }
  if (sub == "history") {
    cli.expect_args(3, "inventory history HOST [--limit N]");
    const int limit = cli.vm.count("limit") ? cli.vm["limit"].as<int>() : 100;
    auto o = bj::parse(c.call("GET", "/v1/inventory/hosts/" + url_encode(cli.args[2]) +
                                         "/history?limit=" + std::to_string(limit)))
                 .as_object();
    if (cli.json) return print_json(o), kOk;
    std::cout << fmt::format("inventory history of {} ({}), newest first\n\n", str(o, "name"),
                             str(o, "host_id"));
    Table t({"WHEN", "CHANGE", "ITEM", "BEFORE", "AFTER"});
    for (const auto& v : o.at("history").as_array()) {
      const auto& h = v.as_object();
      t.add({format_time(num(h, "at")), str(h, "change"), str(h, "key"), one_line(str(h, "old"), 40),
             one_line(str(h, "new"), 40)});
    }
    t.print();
    return kOk;
  }
  if (sub == "query") {
    std::string query;
    for (const auto& a : cli.rest(2)) query += (query.empty() ? "" : " ") + a;
    auto o = bj::parse(c.call("GET", "/v1/inventory?query=" + url_encode(query) +
                                         "&fields=" + url_encode(cli.opt("fields"))))
                 .as_object();
    const auto& hosts = o.at("hosts").as_array();
    if (cli.json) return cli.emit(bj::serialize(o) + "\n"), kOk;
    // Columns: every item key shown, in order (a '*' field expands to the keys it matched).
    std::vector<std::string> keys;
    std::set<std::string> seen;
    for (const auto& v : hosts)
      for (const auto& kv : v.as_object().at("items").as_object())
        if (seen.insert(std::string(kv.key())).second) keys.emplace_back(kv.key());
    std::sort(keys.begin(), keys.end());
    auto cell = [](const bj::object& h, const std::string& k) {
      const auto& items = h.at("items").as_object();
      auto it = items.find(k);
      return it == items.end() ? std::string() : std::string(it->value().as_string());
    };
    if (cli.vm.count("csv")) {
      std::string text = "host,host_id";
      for (const auto& k : keys) text += "," + csv_cell(k);
      text += "\n";
      for (const auto& v : hosts) {
        const auto& h = v.as_object();
        text += csv_cell(str(h, "name")) + "," + str(h, "host_id");
        for (const auto& k : keys) text += "," + csv_cell(cell(h, k));
        text += "\n";
      }
      cli.emit(text);
      return kOk;
    }
    std::vector<std::string> headers{"HOST", "HOST ID"};
    headers.insert(headers.end(), keys.begin(), keys.end());
    Table t(headers);
    for (const auto& v : hosts) {
      const auto& h = v.as_object();
      std::vector<std::string> row{str(h, "name"), str(h, "host_id")};
      for (const auto& k : keys) row.push_back(one_line(cell(h, k), 40));
      t.add(std::move(row));
    }
    t.print();
    std::cout << fmt::format("{} host(s){}\n", hosts.size(),
                             query.empty() ? " with an inventory" : " match " + str(o, "query"));
    return kOk;
  }
  if (sub == "field") {
    if (cli.args.size() < 3) throw UsageError("usage: distribctl inventory field add|list|remove ...");
    const auto& verb = cli.args[2];
    if (verb == "list") {
      auto o = bj::parse(c.call("GET", "/v1/inventory/fields")).as_object();
      if (cli.json) return print_json(o), kOk;
      Table t({"FIELD", "TYPE", "VALUES", "DESCRIPTION"});
      for (const auto& v : o.at("fields").as_array()) {
        const auto& f = v.as_object();
        std::string values;
        for (const auto& x : f.at("values").as_array())
          values += (values.empty() ? "" : ", ") + std::string(x.as_string());
        t.add({str(f, "name"), str(f, "type"), values.empty() ? "-" : values,
               one_line(str(f, "description"), 40)});
      }
      t.print();
      return kOk;
    }
    if (cli.args.size() != 4) throw UsageError("usage: distribctl inventory field " + verb + " NAME");
    const auto& name = cli.args[3];
    if (verb == "add") {
      bj::array values;
      std::string list = cli.opt("values");
      for (std::size_t start = 0; start < list.size();) {
        auto comma = list.find(',', start);
        if (comma == std::string::npos) comma = list.size();
        if (comma > start) values.emplace_back(list.substr(start, comma - start));
        start = comma + 1;
      }
      auto o =
          bj::parse(
              c.call("POST", "/v1/inventory/fields",
                     bj::serialize(bj::object{{"name", name},
                                              {"type", cli.opt("type", values.empty() ? "text" : "choice")},
                                              {"values", values},
                                              {"description", cli.opt("description")}})))
              .as_object();
      if (cli.json) return print_json(o), kOk;
      std::cout << "inventory field " << name << " defined; agents report it as user." << name << "\n";
      return kOk;
    }
    if (verb == "remove") {
      c.call("DELETE", "/v1/inventory/fields/" + url_encode(name));
      if (cli.json)
        print_json(bj::object{{"deleted", name}});
      else
        std::cout << "inventory field " << name << " removed\n";
      return kOk;
    }
    throw UsageError("usage: distribctl inventory field add|list|remove ...");
  }
  throw UsageError("unknown command \"inventory " + sub + "\" (see distribctl --help)");
}

int collect_cmd(Cli& cli) {
  const auto& sub = cli.args[1];
  if (cli.args.size() != 3) throw UsageError("usage: distribctl collect list|get JOB");
  const auto id = parse_id(cli.args[2]);
  auto c = cli.client();
  auto o = bj::parse(c.call("GET", "/v1/jobs/" + std::to_string(id) + "/files")).as_object();
  std::vector<bj::object> files;
  const auto host = cli.opt("host");
  for (const auto& v : o.at("files").as_array()) {
    const auto& f = v.as_object();
    if (host.empty() || str(f, "host_name") == host || str(f, "host_id") == host) files.push_back(f);
  }
  if (sub == "list") {
    if (cli.json) return print_json(o), kOk;
    Table t({"HOST", "PATH", "SIZE", "SHA256", "STORED"});
    for (const auto& f : files)
      t.add({str(f, "host_name"), str(f, "path"), format_size(static_cast<std::uint64_t>(num(f, "size"))),
             str(f, "sha256").substr(0, 12), format_time(num(f, "stored_at"))});
    t.print();
    return kOk;
  }
  if (sub != "get") throw UsageError("usage: distribctl collect list|get JOB");
  if (files.empty())
    throw Error(ErrorKind::not_found,
                "job " + cli.args[2] + " has no collected files" + (host.empty() ? "" : " from " + host));
  const std::filesystem::path out = cli.opt("output", "collected-" + cli.args[2]);
  std::uint64_t bytes = 0;
  std::size_t n = 0;
  for (const auto& f : files) {
    const auto data = c.call("GET", "/v1/jobs/" + std::to_string(id) + "/files/" + str(f, "host_id") +
                                        "?path=" + url_encode(str(f, "path")));
    if (sha256_hex(data) != str(f, "sha256"))
      throw Error(ErrorKind::integrity, "file " + str(f, "path") + " from " + str(f, "host_name") +
                                            " arrived damaged (SHA-256 differs); run the command again");
    const auto name = str(f, "host_name").empty() ? str(f, "host_id") : str(f, "host_name");
    const auto target = out / name / std::filesystem::path(str(f, "path")).relative_path();
    std::filesystem::create_directories(target.parent_path());
    std::ofstream w(target, std::ios::binary | std::ios::trunc);
    w << data;
    if (!w.flush()) throw Error(ErrorKind::internal, "cannot write " + target.string());
    bytes += data.size();
    ++n;
    if (!cli.json && isatty(STDOUT_FILENO))
      std::cout << fmt::format("\r{}/{} files, {}", n, files.size(), format_size(bytes)) << std::flush;
  }
  if (cli.json)
    return print_json(
               bj::object{{"job_id", id}, {"files", n}, {"bytes", bytes}, {"directory", out.string()}}),
           kOk;
  if (isatty(STDOUT_FILENO)) std::cout << "\n";
  std::cout << fmt::format("{} file(s), {} written under {}\n", n, format_size(bytes), out.string());
  return kOk;
}

}  // namespace distribctl
