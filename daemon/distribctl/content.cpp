// distribctl: content verify — the scrub of a manager's or relay's store, with progress and result.
#include "cli.h"

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

namespace distribctl {

namespace {

void print_result(const bj::object& o) {
  const auto bad = num(o, "bad_count");
  std::cout << fmt::format(
      "{} {}: {} of {} chunk(s) checked ({}) in {:.1f} s · {} bad{}\n", str(o, "tier"),
      num(o, "finished_at") ? "verified" : "verifying", num(o, "chunks_checked"), num(o, "chunks_total"),
      format_size(static_cast<std::uint64_t>(num(o, "bytes_checked"))), o.at("seconds").to_number<double>(),
      bad,
      num(o, "repaired") ? fmt::format(" · {} fetched again from the parent", num(o, "repaired"))
                         : std::string());
  if (bad > 0) {
    Table t({"BAD CHUNK"});
    for (const auto& d : o.at("bad").as_array()) t.add({std::string(d.as_string())});
    t.print();
    std::cout << "bad chunks were moved aside (quarantine) and count as missing";
    std::cout << (str(o, "tier") == "relay"
                      ? "; the relay fetches them again when asked (or now with --repair)\n"
                      : "\n");
  }
  const auto& packages = o.at("packages").as_array();
  if (!packages.empty()) {
    Table t({"PACKAGE", "VERSION", "MISSING CHUNKS", "PROBLEM"});
    for (const auto& v : packages) {
      const auto& p = v.as_object();
      t.add({str(p, "name"), str(p, "version"), std::to_string(num(p, "missing_count")),
             p.contains("invalid") ? str(p, "invalid") : "chunks missing or corrupt"});
    }
    t.print();
    std::cout << "to repair: run distribctl package create again for each package above, from its source "
                 "directory (only what is missing is uploaded)\n";
  }
  if (o.contains("error")) std::cout << "error: " << str(o, "error") << "\n";
}

}  // namespace

int content_verify(Cli& cli) {
  cli.expect_args(2,
                  "content verify [--repair] [--rate SIZE|unlimited] [--no-wait] | content verify --status");
  auto c = cli.client();
  bj::object o;
  if (cli.vm.count("status")) {
    o = bj::parse(c.call("GET", "/v1/content/verify")).as_object();
  } else {
    bj::object body{{"repair", cli.vm.count("repair") > 0}};
    if (cli.vm.count("rate")) body["rate"] = cli.opt("rate");
    o = bj::parse(c.call("POST", "/v1/content/verify", bj::serialize(body))).as_object();
    if (!cli.vm.count("no-wait")) {
      const bool tty = ::isatty(STDERR_FILENO);
      while (o.at("running").as_bool()) {
        if (!cli.json && num(o, "chunks_total") > 0) {
          const auto total = std::max<std::int64_t>(1, num(o, "bytes_total"));
          std::fprintf(stderr, tty ? "\r%s\033[K" : "%s\n",
                       fmt::format("verifying: {} of {} chunk(s), {} of {} ({}%) · {} bad",
                                   num(o, "chunks_checked"), num(o, "chunks_total"),
                                   format_size(static_cast<std::uint64_t>(num(o, "bytes_checked"))),
                                   format_size(static_cast<std::uint64_t>(num(o, "bytes_total"))),
                                   100 * num(o, "bytes_checked") / total, num(o, "bad_count"))
                           .c_str());
          std::fflush(stderr);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 300 : 2000));
        o = bj::parse(c.call("GET", "/v1/content/verify")).as_object();
      }
      if (!cli.json && tty) std::fprintf(stderr, "\n");
    }
  }
  if (cli.json) {
    print_json(o);
  } else if (o.at("running").as_bool()) {
    std::cout << "verification under way; see distribctl content verify --status\n";
  } else {
    print_result(o);
  }
  const bool clean = num(o, "bad_count") == 0 && o.at("packages").as_array().empty() && !o.contains("error");
  return o.at("running").as_bool() || clean ? kOk : kFailed;
}

}  // namespace distribctl
