// distribctl: the administrator's command-line tool. Every call goes through distrib::AdminClient;
// this file parses the commands and renders tables, progress bars and JSON. It is over the usual
// size because it holds every command's parser and table in one dispatch; splitting it into one
// file per command group (hosts, packages, jobs, groups, inventory, events, cluster) is the next
// step for it.
#include <distrib/client.h>
#include <distrib/content/digest.h>
#include <distrib/error.h>
#include <distrib/model/units.h>
#include <distrib/version.h>

#include <fmt/core.h>
#include <boost/json.hpp>
#include <boost/program_options.hpp>

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <thread>

namespace po = boost::program_options;
namespace bj = boost::json;
using namespace distrib;

namespace {

// Exit codes (documented in README and `distribctl --help`).
constexpr int kOk = 0;
constexpr int kFailed = 1;       // the manager refused or the operation failed
constexpr int kUsage = 2;        // bad command line
constexpr int kUnreachable = 3;  // manager not reachable / unavailable
constexpr int kNotFound = 4;     // named object does not exist
constexpr int kJobFailed = 5;    // job show --wait: some entries did not succeed
constexpr int kWaitTimeout = 6;  // job show --wait: timed out

const char* kUsageText = R"(usage: distribctl [global options] COMMAND ...

Commands:
  hosts list                    every host this manager knows (with relays' subtrees)
  hosts tree                    the hierarchy: relays and what is below them, online or not
  hosts approve HOST...         approve hosts waiting for approval (auto-register off)
  stats                         content counters: chunks served per requester, relay cache
  package create DIR --name N --version V [--install-command CMD] [--install-dir PATH]
                 [--install-timeout SECONDS] [--chunk-size SIZE]   SIZE: average chunk, e.g. 16KiB
  package list
  package show NAME VERSION
  job create install NAME VERSION DESTINATION... [schedule and rollout options]
  job create transfer-to-relay NAME VERSION RELAY...   pre-stage a package in relays' caches
  job create delete-package NAME VERSION RELAY...      remove a package from relays' caches
  job create get-system-info|get-software-info DESTINATION...   agents report that inventory now
  job create collect-files DESTINATION... --path GLOB [--path GLOB...] [--max-file SIZE] [--max-total SIZE]
      agents send matching files back (only under their own --collect-allow); --timing at-start
      collects at the agent's next start
      destinations: HOST (by the manager's key mode), group:NAME (host group),
      id:NAME (ID group: standing, later members receive it too), relay:RELAY (every host below)
      --start TIME --expires TIME      TIME: +10m, +2h, @UNIX, 2026-12-01T22:00:00Z, "2026-12-01 22:00"
      --timing immediate|at-start|at-stop|window   --window HH:MM-HH:MM (server's local time)
      --retries N [--retry-backoff SECONDS] [--retry-installs]   automatic retries with backoff
      --waves 5,25,100 [--success-threshold PCT] [--error-threshold PCT]   staged rollout
      --split SIZE/INTERVAL            split distribution, e.g. 1MiB/60s (segments of whole chunks)
  job list [--limit N]
  job show ID [--wait [--timeout SECONDS]]
  job cancel ID
  job retry ID                  failed entries get a new attempt
  job complete-now ID           end split distribution: the rest travels unsplit
  transfer suspend|resume --job ID | --relay RELAY   stop or continue transfers of a job or below a relay
  group create NAME [HOST...] [--description TEXT]   host groups: named sets of hosts
  group add|remove NAME HOST...
  group list | group show NAME | group delete NAME
  idgroup create NAME [--password P] [--match-name GLOB] [--match-ip CIDR] [--description TEXT]
  idgroup add|remove NAME HOST...   the administrator joins hosts or removes them
  group create NAME --query QUERY   dynamic group: the hosts whose inventory matches, re-evaluated at each use
  idgroup list | idgroup show NAME | idgroup delete NAME
      (hosts also join from their own machine: distribd --role agent ... --join-group NAME,
       or with id-group = NAME[:PASSWORD] in the agent configuration)

  inventory show HOST           a host's latest inventory (system, software, user fields)
  inventory history HOST [--limit N]   what changed in it, newest first
  inventory query [QUERY] [--fields F,F...] [--csv] [--output FILE]   hosts matching QUERY
      QUERY: FIELD OP VALUE [and ...]; OP: = != < <= > >= (numbers, sizes like 10GiB, versions),
      or FIELD exists|missing; '*' in FIELD or VALUE matches anything. Examples:
      'software.dpkg.openssl >= 3.0.11'   'system.disk.*.free_bytes < 10GiB'   'system.os.version = 12'
  inventory field add NAME [--type text|number|choice] [--values A,B] [--description TEXT]
  inventory field list | inventory field remove NAME   user inventory fields agents report
  collect list JOB              files a collect-files job brought back
  collect get JOB [--host HOST] [--output DIR]   download them (DIR/HOST/PATH; default ./collected-JOB)
  cluster status                active node of an active/standby pair, lease, fencing token, takeovers
  events [--limit N] [--after ID] [--type job.*,entry.failed] [--severity warning]
                                the newest events (job, entry, host, package, inventory, cluster, database)
  events --follow [--after ID]  print events as they happen (server-sent events; resumes after a break)
  events sinks                  where events go: delivered, pending and failed per sink
  audit [--limit N]             administrative actions: who, from where, what, result (newest first)

Global options:
  --server URL        manager URL (env DISTRIB_SERVER; default http://127.0.0.1:8640)
  --token TOKEN       admin token (env DISTRIB_TOKEN)
  --token-file FILE   file holding the admin token (env DISTRIB_TOKEN_FILE)
  --ca-file FILE      CA bundle that verifies an https manager
  --json              machine-readable output
  --version, --help

Exit codes: 0 ok, 1 refused or failed, 2 usage, 3 manager unreachable, 4 not found,
            5 job finished with entries that did not succeed, 6 --wait timed out
)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string env_or(const char* name, std::string fallback = {}) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string format_time(std::int64_t t) {
  if (t == 0) return "-";
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string format_size(std::uint64_t bytes) {
  return distrib::format_byte_size(bytes);
}

std::string one_line(std::string s, std::size_t max) {
  for (auto& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  if (s.size() > max) s = s.substr(0, max - 1) + "…";
  return s;
}

// A plain text table: columns sized to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print() const {
    std::vector<std::size_t> w(headers_.size());
    auto width = [](const std::string& s) {
      std::size_t n = 0;
      for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;  // UTF-8 code points
      return n;
    };
    for (std::size_t i = 0; i < headers_.size(); ++i) w[i] = width(headers_[i]);
    for (const auto& r : rows_)
      for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], width(r[i]));
    auto line = [&](const std::vector<std::string>& r) {
      std::string out;
      for (std::size_t i = 0; i < r.size(); ++i) {
        out += r[i];
        if (i + 1 < r.size()) out += std::string(w[i] - width(r[i]) + 2, ' ');
      }
      std::cout << out << "\n";
    };
    line(headers_);
    for (const auto& r : rows_) line(r);
    if (rows_.empty()) std::cout << "(none)\n";
  }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

void print_json(const bj::value& v) {
  std::cout << bj::serialize(v) << "\n";
}

std::string progress_line(const JobProgress& p) {
  constexpr int kWidth = 30;
  const int filled = p.total ? static_cast<int>(kWidth * p.final_count / p.total) : kWidth;
  std::string bar = "[" + std::string(static_cast<std::size_t>(filled), '#') +
                    std::string(static_cast<std::size_t>(kWidth - filled), '.') + "]";
  std::string states;
  for (auto s : kAllEntryStates)
    if (p.count(s)) states += fmt::format(" {} {}", to_string(s), p.count(s));
  return fmt::format("{} {}/{} done ·{}", bar, p.final_count, p.total, states);
}

bj::object job_json(const Job& j) {
  bj::array dests;
  for (const auto& d : j.destinations) dests.emplace_back(d);
  return {{"id", j.id},
          {"type", std::string(to_string(j.type))},
          {"package", bj::object{{"name", j.package_name}, {"version", j.package_version}}},
          {"destinations", dests},
          {"key_mode", j.key_mode},
          {"created_at", j.created_at},
          {"cancel_requested", j.cancel_requested},
          {"split", j.split.enabled() ? bj::value(bj::object{{"size", j.split.size},
                                                             {"interval_seconds", j.split.interval_seconds}})
                                      : bj::value(nullptr)}};
}

struct Cli {
  po::variables_map vm;
  std::vector<std::string> args;
  bool json = false;

  std::string opt(const char* name, std::string fallback = {}) const {
    return vm.count(name) ? vm[name].as<std::string>() : fallback;
  }
  void expect_args(std::size_t n, const char* usage) const {
    if (args.size() != n) throw UsageError(std::string("usage: distribctl ") + usage);
  }

  AdminClient client() const {
    AdminClientSettings s;
    s.http.base_url = opt("server", env_or("DISTRIB_SERVER", "http://127.0.0.1:8640"));
    s.http.ca_file = opt("ca-file", env_or("DISTRIB_CA_FILE"));
    s.token = opt("token", env_or("DISTRIB_TOKEN"));
    if (s.token.empty()) {
      const auto file = opt("token-file", env_or("DISTRIB_TOKEN_FILE"));
      if (file.empty())
        throw UsageError(
            "no admin token: pass --token-file FILE (the manager's STATE_DIR/admin.token) or set "
            "DISTRIB_TOKEN");
      std::ifstream in(file);
      if (!in) throw UsageError("cannot read token file " + file);
      std::getline(in, s.token);
    }
    // Who acts, for the manager's audit trail.
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    s.actor = env_or("DISTRIB_ACTOR", env_or("USER", env_or("LOGNAME", "unknown")) + "@" + host);
    return AdminClient(s);
  }

  // The manager's /v1/hosts answer: hosts plus what only the manager knows (online, itself).
  bj::object hosts_answer() { return bj::parse(client().call("GET", "/v1/hosts")).as_object(); }

  static std::string ago(std::int64_t t) {
    if (t == 0) return "never";
    const auto d = std::max<std::int64_t>(0, static_cast<std::int64_t>(std::time(nullptr)) - t);
    if (d < 120) return fmt::format("{} s ago", d);
    if (d < 7200) return fmt::format("{} min ago", d / 60);
    if (d < 172800) return fmt::format("{} h ago", d / 3600);
    return fmt::format("{} days ago", d / 86400);
  }

  static std::string str(const bj::object& o, std::string_view key) {
    auto it = o.find(key);
    return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
  }
  static bool flag(const bj::object& o, std::string_view key) {
    auto it = o.find(key);
    return it != o.end() && it->value().is_bool() && it->value().as_bool();
  }
  static std::int64_t num(const bj::object& o, std::string_view key) {
    auto it = o.find(key);
    return it != o.end() && it->value().is_int64() ? it->value().as_int64() : 0;
  }

  int hosts_list() {
    expect_args(2, "hosts list");
    auto answer = hosts_answer();
    if (json) {
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
             str(h, "role"),
             parent.empty() ? "-" : (names.count(parent) ? names[parent] : parent.substr(0, 8)),
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

  int hosts_tree() {
    expect_args(2, "hosts tree");
    auto answer = hosts_answer();
    if (json) {
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

  int hosts_approve() {
    if (args.size() < 3) throw UsageError("usage: distribctl hosts approve HOST...");
    const int n = client().approve_hosts(std::vector<std::string>(args.begin() + 2, args.end()));
    if (json)
      print_json(bj::object{{"approved", n}});
    else
      std::cout << fmt::format("{} host(s) approved\n", n);
    return kOk;
  }

  int stats() {
    expect_args(1, "stats");
    auto answer = bj::parse(client().call("GET", "/v1/stats")).as_object();
    if (json) {
      print_json(answer);
      return kOk;
    }
    const auto& c = answer.at("content").as_object();
    auto count = [&](std::string_view k) {
      auto it = c.find(k);
      return it == c.end() ? std::uint64_t{0} : it->value().to_number<std::uint64_t>();
    };
    std::cout << fmt::format("{} {}\nchunks served {} ({}) · cache hits {} · misses {}\n",
                             str(answer, "role"), str(answer, "host_id"), count("chunks_served"),
                             format_size(count("bytes_served")), count("cache_hits"), count("cache_misses"));
    if (c.contains("upstream_fetches"))
      std::cout << fmt::format(
          "fetched from the parent: {} chunk(s), {} · requests that joined a fetch under way: {}\n",
          count("upstream_fetches"), format_size(count("upstream_bytes")), count("upstream_joined"));
    std::map<std::string, std::string> names;
    try {
      const auto hosts = hosts_answer();
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

  int package_create() {
    expect_args(3, "package create DIR --name N --version V [...]");
    PackageSpec spec;
    spec.source_dir = args[2];
    spec.name = opt("name");
    spec.version = opt("version");
    if (spec.name.empty() || spec.version.empty())
      throw UsageError("package create needs --name and --version");
    spec.install.command = opt("install-command");
    spec.install.directory = opt("install-dir");
    if (vm.count("install-timeout")) {
      const int t = vm["install-timeout"].as<int>();
      if (t <= 0) throw UsageError("--install-timeout must be a positive number of seconds");
      spec.install.timeout_seconds = static_cast<std::uint32_t>(t);
    }
    if (vm.count("chunk-size")) {
      try {
        spec.chunk_size = parse_byte_size(opt("chunk-size"));
      } catch (const Error& e) {
        throw UsageError(e.what());
      }
    }
    const bool tty = !json && ::isatty(STDERR_FILENO);
    auto result = client().upload_package(spec, [&](std::size_t done, std::size_t total) {
      if (!tty || total == 0) return;
      std::fprintf(stderr, "\ruploading chunks %zu/%zu", done, total);
      if (done == total) std::fprintf(stderr, "\n");
    });
    const auto& m = result.manifest;
    if (json) {
      print_json(bj::object{{"name", m.name},
                            {"version", m.version},
                            {"payload_digest", m.payload_digest},
                            {"payload_size", m.payload_size},
                            {"files", m.files.size()},
                            {"chunks", result.chunks_total},
                            {"chunks_uploaded", result.chunks_uploaded},
                            {"bytes_uploaded", result.bytes_uploaded},
                            {"already_registered", result.already_registered}});
      return kOk;
    }
    std::cout << fmt::format("package {} {} {}: {} file(s), {}, {} chunk(s) ({} uploaded, {})\n", m.name,
                             m.version, result.already_registered ? "already registered" : "registered",
                             m.files.size(), format_size(m.payload_size), result.chunks_total,
                             result.chunks_uploaded, format_size(result.bytes_uploaded));
    std::cout << "payload sha256 " << m.payload_digest << "\n";
    return kOk;
  }

  int package_list() {
    expect_args(2, "package list");
    auto pkgs = client().list_packages();
    if (json) {
      bj::array a;
      for (const auto& p : pkgs)
        a.push_back(bj::object{{"name", p.name},
                               {"version", p.version},
                               {"payload_digest", p.payload_digest},
                               {"payload_size", p.payload_size},
                               {"file_count", p.file_count},
                               {"created_at", p.created_at}});
      print_json(bj::object{{"packages", a}});
      return kOk;
    }
    Table t({"NAME", "VERSION", "SIZE", "FILES", "PAYLOAD", "CREATED"});
    for (const auto& p : pkgs)
      t.add({p.name, p.version, format_size(p.payload_size), std::to_string(p.file_count),
             p.payload_digest.substr(0, 12), format_time(p.created_at)});
    t.print();
    return kOk;
  }

  int package_show() {
    expect_args(4, "package show NAME VERSION");
    auto m = client().show_package(args[2], args[3]);
    if (json) {
      std::cout << manifest_to_json(m) << "\n";
      return kOk;
    }
    std::cout << fmt::format("package {} {}\npayload   {} ({}, {} chunk(s))\ncreated   {}\n", m.name,
                             m.version, m.payload_digest, format_size(m.payload_size), m.chunks.size(),
                             format_time(m.created_at));
    std::cout << "install   dir: " << (m.install.directory.empty() ? "(agent default)" : m.install.directory)
              << "; command: " << (m.install.command.empty() ? "(none)" : m.install.command) << "; timeout "
              << m.install.timeout_seconds << " s\n\n";
    Table t({"PATH", "TYPE", "SIZE", "MODE", "SHA256"});
    for (const auto& f : m.files)
      t.add({f.type == "symlink" ? f.path + " -> " + f.link_target : f.path, f.type,
             f.type == "file" ? format_size(f.size) : "-", fmt::format("{:04o}", f.mode),
             f.sha256.empty() ? "-" : f.sha256.substr(0, 12)});
    t.print();
    return kOk;
  }

  int job_create() {
    if (args.size() < 3)
      throw UsageError("usage: distribctl job create TYPE [NAME VERSION] DESTINATION... (see --help)");
    JobType type;
    try {
      type = parse_job_type(args[2]);
    } catch (const Error& e) {
      throw UsageError(e.what());
    }
    Job spec;
    spec.type = type;
    if (needs_package(type)) {
      if (args.size() < 6)
        throw UsageError("usage: distribctl job create " + args[2] + " NAME VERSION DESTINATION...");
      spec.package_name = args[3];
      spec.package_version = args[4];
      spec.destinations.assign(args.begin() + 5, args.end());
    } else {
      if (args.size() < 4) throw UsageError("usage: distribctl job create " + args[2] + " DESTINATION...");
      spec.destinations.assign(args.begin() + 3, args.end());
    }
    if (type == JobType::collect_files) {
      if (vm.count("path")) spec.collect.paths = vm["path"].as<std::vector<std::string>>();
      try {
        if (vm.count("max-file")) spec.collect.max_file_bytes = parse_byte_size(opt("max-file"));
        if (vm.count("max-total")) spec.collect.max_total_bytes = parse_byte_size(opt("max-total"));
        validate_collect(spec.collect);
      } catch (const Error& e) {
        throw UsageError(e.what());
      }
    } else if (vm.count("path") || vm.count("max-file") || vm.count("max-total")) {
      throw UsageError("--path, --max-file and --max-total go with collect-files jobs");
    }
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    auto& sc = spec.schedule;
    try {
      if (vm.count("start")) sc.start_at = parse_time_spec(opt("start"), now);
      if (vm.count("expires")) sc.expires_at = parse_time_spec(opt("expires"), now);
      if (vm.count("timing")) sc.timing = parse_install_timing(opt("timing"));
      if (vm.count("window")) {
        sc.window = parse_daily_window(opt("window"));
        if (!vm.count("timing")) sc.timing = InstallTiming::window;
      }
      if (sc.timing == InstallTiming::window && !vm.count("window"))
        throw UsageError("--timing window needs --window HH:MM-HH:MM");
      if (vm.count("retries")) sc.max_retries = vm["retries"].as<int>();
      if (vm.count("retry-backoff"))
        sc.retry_backoff_seconds = static_cast<int>(parse_duration_seconds(opt("retry-backoff")));
      sc.retry_installs = vm.count("retry-installs") > 0;
      if (vm.count("waves")) spec.rollout.waves = parse_waves(opt("waves"));
      if (vm.count("success-threshold")) spec.rollout.success_threshold = vm["success-threshold"].as<int>();
      if (vm.count("error-threshold")) spec.rollout.error_threshold = vm["error-threshold"].as<int>();
      if (vm.count("split")) spec.split = parse_split(opt("split"));
    } catch (const Error& e) {
      throw UsageError(e.what());
    }
    auto job = client().create_job(spec);
    if (json) {
      print_json(bj::object{{"job", job_json(job)}});
      return kOk;
    }
    std::cout << fmt::format("job {} created: {} {} for {}\n", job.id, to_string(type), what_of(job),
                             one_line(join(spec.destinations), 80));
    if (!job.id_groups.empty())
      std::cout << "standing job: hosts joining " << join(job.id_groups) << " later receive it too\n";
    if (job.schedule.start_at) std::cout << "starts " << format_time(job.schedule.start_at) << "\n";
    if (job.schedule.expires_at) std::cout << "expires " << format_time(job.schedule.expires_at) << "\n";
    if (!job.rollout.waves.empty())
      std::cout << fmt::format(
          "rollout in {} waves ({} %), next wave at {} % success, stop above {} % errors\n",
          job.rollout.waves.size(), waves_text(job.rollout.waves), job.rollout.success_threshold,
          job.rollout.error_threshold);
    if (job.split.enabled()) std::cout << "split distribution: segments of " << to_string(job.split) << "\n";
    return kOk;
  }

  // What a job is about: its package, or the paths it collects.
  static std::string what_of(const Job& j) {
    if (needs_package(j.type)) return j.package_name + " " + j.package_version;
    if (j.type == JobType::collect_files) return one_line(join(j.collect.paths), 50);
    return "-";
  }

  static std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : sep) + x;
    return out;
  }
  static std::string waves_text(const std::vector<int>& w) {
    std::string out;
    for (int x : w) out += (out.empty() ? "" : " → ") + std::to_string(x);
    return out;
  }

  int job_complete_now() {
    expect_args(3, "job complete-now ID");
    const auto id = parse_id(args[2]);
    const auto n = client().complete_now(id);
    if (json)
      print_json(bj::object{{"job_id", id}, {"entries", n}});
    else
      std::cout << fmt::format("job {}: split distribution ended; {} open entr{} receive the rest unsplit\n",
                               id, n, n == 1 ? "y" : "ies");
    return kOk;
  }

  int transfer_cmd() {
    expect_args(2, "transfer suspend|resume --job ID | --relay RELAY");
    const auto& verb = args[1];
    if (verb != "suspend" && verb != "resume")
      throw UsageError("transfer takes suspend or resume, not \"" + verb + "\"");
    if (vm.count("job") == vm.count("relay"))
      throw UsageError("transfer " + verb + " needs --job ID or --relay RELAY");
    const std::int64_t job = vm.count("job") ? parse_id(opt("job")) : 0;
    const auto relay = vm.count("relay") ? opt("relay") : std::string();
    const bool suspend = verb == "suspend";
    const auto n = client().suspend_transfers(job, relay, suspend);
    const auto scope = job ? "job " + std::to_string(job) : "relay " + relay;
    if (json)
      print_json(bj::object{{suspend ? "suspended" : "resumed", n}, {"scope", scope}});
    else
      std::cout << fmt::format("{}: {} transfer{} {}\n", scope, n, n == 1 ? "" : "s",
                               suspend ? "suspended" : "resumed");
    return kOk;
  }

  int job_retry() {
    expect_args(3, "job retry ID");
    const auto n = client().retry_job(parse_id(args[2]));
    if (json)
      print_json(bj::object{{"job_id", parse_id(args[2])}, {"retried", n}});
    else
      std::cout << fmt::format("job {}: {} failed entr{} retried\n", args[2], n, n == 1 ? "y" : "ies");
    return kOk;
  }

  // --- host groups and ID groups -------------------------------------------------------------

  std::vector<std::string> rest(std::size_t from) const {
    return from < args.size() ? std::vector<std::string>(args.begin() + static_cast<long>(from), args.end())
                              : std::vector<std::string>{};
  }

  static std::string host_names(const bj::object& g) {
    std::string out;
    if (auto it = g.find("hosts"); it != g.end() && it->value().is_array())
      for (const auto& v : it->value().as_array()) {
        const auto& h = v.as_object();
        const auto n = str(h, "name");
        out += (out.empty() ? "" : ", ") + (n.empty() ? str(h, "host_id") : n);
      }
    return out;
  }

  int group_cmd() {
    const auto& sub = args[1];
    auto c = client();
    if (sub == "list") {
      expect_args(2, "group list");
      auto o = bj::parse(c.call("GET", "/v1/groups")).as_object();
      if (json) return print_json(o), kOk;
      Table t({"GROUP", "HOSTS", "MEMBERS", "DESCRIPTION"});
      for (const auto& v : o.at("groups").as_array()) {
        const auto& g = v.as_object();
        t.add({str(g, "name"), std::to_string(g.at("members").as_array().size()), one_line(host_names(g), 60),
               one_line(str(g, "description"), 40)});
      }
      t.print();
      return kOk;
    }
    if (args.size() < 3) throw UsageError("usage: distribctl group create|add|remove|show|delete NAME ...");
    const auto& name = args[2];
    if (sub == "create" && vm.count("query")) {
      if (args.size() > 3) throw UsageError("a host group has either members or --query, not both");
      auto o = bj::parse(
                   c.call("POST", "/v1/groups",
                          bj::serialize(bj::object{
                              {"name", name}, {"description", opt("description")}, {"query", opt("query")}})))
                   .as_object();
      if (json) return print_json(o), kOk;
      std::cout << fmt::format("host group {} created: the hosts matching {} ({} now)\n", name,
                               str(o, "query"), o.at("members").as_array().size());
      return kOk;
    }
    if (sub == "create") {
      c.create_host_group(name, rest(3), opt("description"));
      if (json) return print_json(bj::object{{"created", name}}), kOk;
      std::cout << fmt::format("host group {} created with {} host(s)\n", name, args.size() - 3);
      return kOk;
    }
    if (sub == "add" || sub == "remove") {
      if (args.size() < 4) throw UsageError("usage: distribctl group " + sub + " NAME HOST...");
      c.change_members(false, name, sub == "add" ? rest(3) : std::vector<std::string>{},
                       sub == "remove" ? rest(3) : std::vector<std::string>{});
      if (!json)
        std::cout << fmt::format("host group {}: {} host(s) {}\n", name, args.size() - 3,
                                 sub == "add" ? "added" : "removed");
      else
        print_json(bj::object{{"group", name}});
      return kOk;
    }
    if (sub == "show") {
      expect_args(3, "group show NAME");
      auto o = bj::parse(c.call("GET", "/v1/groups/" + url_encode(name))).as_object();
      if (json) return print_json(o), kOk;
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
      expect_args(3, "group delete NAME");
      c.call("DELETE", "/v1/groups/" + url_encode(name));
      if (json)
        print_json(bj::object{{"deleted", name}});
      else
        std::cout << "host group " << name << " deleted\n";
      return kOk;
    }
    throw UsageError("unknown command \"group " + sub + "\" (see distribctl --help)");
  }

  int idgroup_cmd() {
    const auto& sub = args[1];
    auto c = client();
    if (sub == "list") {
      expect_args(2, "idgroup list");
      auto o = bj::parse(c.call("GET", "/v1/id-groups")).as_object();
      if (json) return print_json(o), kOk;
      Table t({"ID GROUP", "MEMBERS", "STANDING JOBS", "PASSWORD", "JOIN POLICY", "DESCRIPTION"});
      for (const auto& v : o.at("id_groups").as_array()) {
        const auto& g = v.as_object();
        const auto& pol = g.at("policy").as_object();
        std::string policy;
        if (!str(pol, "name_pattern").empty()) policy = "name " + str(pol, "name_pattern");
        if (!str(pol, "ip_range").empty())
          policy += (policy.empty() ? "" : " or ") + std::string("ip ") + str(pol, "ip_range");
        t.add({str(g, "name"), std::to_string(num(g, "member_count")),
               std::to_string(num(g, "standing_jobs")), flag(g, "password") ? "yes" : "no",
               policy.empty() ? "-" : policy, one_line(str(g, "description"), 40)});
      }
      t.print();
      return kOk;
    }
    if (args.size() < 3) throw UsageError("usage: distribctl idgroup create|add|remove|show|delete NAME ...");
    const auto& name = args[2];
    if (sub == "create") {
      expect_args(3, "idgroup create NAME [--password P] [--match-name GLOB] [--match-ip CIDR]");
      JoinPolicy policy{opt("match-name"), opt("match-ip")};
      auto g = c.create_id_group(name, opt("password"), policy, opt("description"));
      if (json) return print_json(bj::object{{"created", name}, {"members", g.members.size()}}), kOk;
      std::cout << fmt::format(
          "ID group {} created{}{}\n", name,
          g.has_password() || vm.count("password") ? " (join password set)" : "",
          policy.empty() ? "" : fmt::format("; {} host(s) joined by its policy", g.members.size()));
      return kOk;
    }
    if (sub == "add" || sub == "remove") {
      if (args.size() < 4) throw UsageError("usage: distribctl idgroup " + sub + " NAME HOST...");
      bj::array hosts;
      for (const auto& h : rest(3)) hosts.emplace_back(h);
      auto o = bj::parse(c.call("POST", "/v1/id-groups/" + url_encode(name) + "/members",
                                bj::serialize(bj::object{{sub, hosts}})))
                   .as_object();
      if (json) return print_json(o), kOk;
      if (sub == "add")
        std::cout << fmt::format("ID group {}: {} host(s) joined; {} standing job entr{} created\n", name,
                                 num(o, "joined"), num(o, "entries"), num(o, "entries") == 1 ? "y" : "ies");
      else
        std::cout << fmt::format("ID group {}: {} host(s) left; {} pending entr{} cancelled\n", name,
                                 num(o, "left"), num(o, "cancelled"), num(o, "cancelled") == 1 ? "y" : "ies");
      return kOk;
    }
    if (sub == "show") {
      expect_args(3, "idgroup show NAME");
      auto o = bj::parse(c.call("GET", "/v1/id-groups/" + url_encode(name))).as_object();
      if (json) return print_json(o), kOk;
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
      expect_args(3, "idgroup delete NAME");
      c.call("DELETE", "/v1/id-groups/" + url_encode(name));
      if (json)
        print_json(bj::object{{"deleted", name}});
      else
        std::cout << "ID group " << name << " deleted (its jobs stop standing)\n";
      return kOk;
    }
    throw UsageError("unknown command \"idgroup " + sub + "\" (see distribctl --help)");
  }

  int job_list() {
    expect_args(2, "job list [--limit N]");
    const int limit = vm.count("limit") ? vm["limit"].as<int>() : 50;
    auto c = client();
    if (json) {
      // The manager's answer as is: schedules, rollouts and ID groups included.
      std::cout << c.call("GET", "/v1/jobs?limit=" + std::to_string(limit)) << "\n";
      return kOk;
    }
    auto jobs = c.list_jobs(limit);
    Table t({"ID", "TYPE", "PACKAGE / PATHS", "HOSTS", "DONE", "SUCCEEDED", "FAILED", "CREATED"});
    for (const auto& l : jobs)
      t.add({std::to_string(l.job.id), std::string(to_string(l.job.type)), what_of(l.job),
             std::to_string(l.progress.total), std::to_string(l.progress.final_count),
             std::to_string(l.progress.count(EntryState::succeeded)),
             std::to_string(l.progress.count(EntryState::failed)), format_time(l.job.created_at)});
    t.print();
    return kOk;
  }

  static std::int64_t parse_id(const std::string& s) {
    try {
      std::size_t used = 0;
      const auto id = std::stoll(s, &used);
      if (used == s.size() && id > 0) return id;
    } catch (const std::exception&) {
    }
    throw UsageError("\"" + s + "\" is not a job id");
  }

  int job_show() {
    expect_args(3, "job show ID [--wait [--timeout SECONDS]]");
    const auto id = parse_id(args[2]);
    auto c = client();
    auto details = c.show_job(id);
    int code = kOk;
    if (vm.count("wait")) {
      const int timeout = vm.count("timeout") ? vm["timeout"].as<int>() : 0;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
      const bool tty = ::isatty(STDERR_FILENO);
      std::string last;
      while (true) {
        const auto line = progress_line(details.progress);
        if (!json && line != last) {
          std::fprintf(stderr, tty ? "\r%s\033[K" : "%s\n", line.c_str());
          std::fflush(stderr);
          last = line;
        }
        if (details.progress.done()) break;
        if (timeout > 0 && std::chrono::steady_clock::now() >= deadline) {
          code = kWaitTimeout;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        details = c.show_job(id);
      }
      if (!json && tty) std::fprintf(stderr, "\n");
      if (code == kOk && details.progress.count(EntryState::succeeded) != details.progress.total)
        code = kJobFailed;
    }
    if (json) {
      // The manager's answer as is: entries, schedule, rollout and waves.
      std::cout << c.call("GET", "/v1/jobs/" + std::to_string(id)) << "\n";
      return code;
    }
    const auto& j = details.job;
    std::cout << fmt::format("job {}: {} {} · created {} · {}/{} done{}\n", j.id, to_string(j.type),
                             what_of(j), format_time(j.created_at), details.progress.final_count,
                             details.progress.total, j.cancel_requested ? " · cancel requested" : "");
    // Grouped by the relay each host is under (hosts directly under this manager first).
    auto entries = details.entries;
    std::stable_sort(entries.begin(), entries.end(),
                     [](const JobEntry& a, const JobEntry& b) { return a.parent_name < b.parent_name; });
    if (!j.id_groups.empty()) std::cout << "standing for ID group(s) " << join(j.id_groups) << "\n";
    if (j.schedule.start_at || j.schedule.expires_at || j.schedule.timing != InstallTiming::immediate ||
        j.schedule.max_retries)
      std::cout << fmt::format(
          "schedule: start {} · expires {} · timing {}{} · retries {}{}\n",
          j.schedule.start_at ? format_time(j.schedule.start_at) : "now",
          j.schedule.expires_at ? format_time(j.schedule.expires_at) : "never", to_string(j.schedule.timing),
          j.schedule.timing == InstallTiming::window ? " " + to_string(j.schedule.window) : "",
          j.schedule.max_retries, j.schedule.retry_installs ? " (installs too)" : "");
    if (j.split.enabled()) std::cout << "split distribution: segments of " << to_string(j.split) << "\n";
    if (!j.rollout.waves.empty()) {
      std::cout << fmt::format(
          "rollout {}: waves {} % · next wave at {} % success · stop above {} % errors{}\n",
          to_string(j.rollout_state), waves_text(j.rollout.waves), j.rollout.success_threshold,
          j.rollout.error_threshold, j.rollout_message.empty() ? "" : " · " + j.rollout_message);
      Table w({"WAVE", "SHARE", "STATE", "HOSTS", "SUCCEEDED", "FAILED", "DONE"});
      for (const auto& wc : details.waves) {
        const auto share = wc.wave >= 1 && wc.wave <= static_cast<int>(j.rollout.waves.size())
                               ? j.rollout.waves[static_cast<std::size_t>(wc.wave - 1)]
                               : 0;
        w.add({std::to_string(wc.wave), std::to_string(share) + " %", std::string(wave_state(j, wc)),
               std::to_string(wc.total), std::to_string(wc.succeeded), std::to_string(wc.failed),
               std::to_string(wc.final_count)});
      }
      w.print();
    }
    std::cout << "\n";
    const bool waves = !j.rollout.waves.empty();
    std::vector<std::string> headers{"RELAY", "HOST"};
    if (waves) headers.push_back("WAVE");
    const bool segments =
        std::any_of(entries.begin(), entries.end(), [](const JobEntry& e) { return !e.progress.empty(); });
    headers.push_back("STATE");
    if (segments) headers.insert(headers.end(), {"SEGMENTS", "RECEIVED"});
    for (const char* h : {"TRY", "EXIT", "UPDATED", "MESSAGE"}) headers.push_back(h);
    Table t(headers);
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    for (const auto& e : entries) {
      std::string state(to_string(e.state));
      if (e.state == EntryState::waiting && e.ready_at >= kHeldUntilReleased)
        state = "held";
      else if (e.state == EntryState::waiting && e.ready_at > now)
        state = "waiting until " + format_time(e.ready_at);
      std::vector<std::string> row{
          e.parent_id.empty() ? "-" : (e.parent_name.empty() ? e.parent_id.substr(0, 8) : e.parent_name),
          (e.host_name.empty() ? e.host_id : e.host_name) + (e.late_join ? " (joined later)" : "")};
      if (waves) row.push_back(std::to_string(e.wave));
      row.push_back(state);
      if (segments) {
        const auto& pr = e.progress;
        row.push_back(pr.segments_total ? fmt::format("{}/{}", pr.segments_done, pr.segments_total) : "-");
        row.push_back(pr.bytes_received ? format_size(static_cast<std::uint64_t>(pr.bytes_received)) +
                                              (pr.bad_chunks ? fmt::format(" ({} bad)", pr.bad_chunks) : "")
                                        : "-");
      }
      for (auto& x :
           {std::to_string(e.attempt), e.exit_code ? std::to_string(*e.exit_code) : std::string("-"),
            format_time(e.updated_at), one_line(e.message, 60)})
        row.push_back(x);
      t.add(std::move(row));
    }
    t.print();
    for (const auto& e : details.entries)
      if (e.state == EntryState::failed && !e.output_tail.empty())
        std::cout << "\n--- output of " << (e.host_name.empty() ? e.host_id : e.host_name) << " (tail) ---\n"
                  << e.output_tail << (e.output_tail.back() == '\n' ? "" : "\n");
    return code;
  }

  // --- inventory and remote collection --------------------------------------------------------

  static std::string csv_cell(const std::string& v) {
    if (v.find_first_of(",\"\n\r") == std::string::npos) return v;
    std::string out = "\"";
    for (char ch : v) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return out + "\"";
  }

  // Writes to --output FILE when given (atomically enough for a report), else to stdout.
  void emit(const std::string& text) const {
    if (!vm.count("output")) {
      std::cout << text;
      return;
    }
    const auto file = opt("output");
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(ErrorKind::invalid_argument, "cannot write " + file);
    out << text;
    if (!out.flush()) throw Error(ErrorKind::internal, "writing " + file + " failed");
  }

  int inventory_cmd() {
    const auto& sub = args[1];
    auto c = client();
    if (sub == "show") {
      expect_args(3, "inventory show HOST");
      auto o = bj::parse(c.call("GET", "/v1/inventory/hosts/" + url_encode(args[2]))).as_object();
      if (json) return print_json(o), kOk;
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
      expect_args(3, "inventory history HOST [--limit N]");
      const int limit = vm.count("limit") ? vm["limit"].as<int>() : 100;
      auto o = bj::parse(c.call("GET", "/v1/inventory/hosts/" + url_encode(args[2]) +
                                           "/history?limit=" + std::to_string(limit)))
                   .as_object();
      if (json) return print_json(o), kOk;
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
      for (const auto& a : rest(2)) query += (query.empty() ? "" : " ") + a;
      auto o = bj::parse(c.call("GET", "/v1/inventory?query=" + url_encode(query) +
                                           "&fields=" + url_encode(opt("fields"))))
                   .as_object();
      const auto& hosts = o.at("hosts").as_array();
      if (json) return emit(bj::serialize(o) + "\n"), kOk;
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
      if (vm.count("csv")) {
        std::string text = "host,host_id";
        for (const auto& k : keys) text += "," + csv_cell(k);
        text += "\n";
        for (const auto& v : hosts) {
          const auto& h = v.as_object();
          text += csv_cell(str(h, "name")) + "," + str(h, "host_id");
          for (const auto& k : keys) text += "," + csv_cell(cell(h, k));
          text += "\n";
        }
        emit(text);
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
      if (args.size() < 3) throw UsageError("usage: distribctl inventory field add|list|remove ...");
      const auto& verb = args[2];
      if (verb == "list") {
        auto o = bj::parse(c.call("GET", "/v1/inventory/fields")).as_object();
        if (json) return print_json(o), kOk;
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
      if (args.size() != 4) throw UsageError("usage: distribctl inventory field " + verb + " NAME");
      const auto& name = args[3];
      if (verb == "add") {
        bj::array values;
        std::string list = opt("values");
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
                                                {"type", opt("type", values.empty() ? "text" : "choice")},
                                                {"values", values},
                                                {"description", opt("description")}})))
                .as_object();
        if (json) return print_json(o), kOk;
        std::cout << "inventory field " << name << " defined; agents report it as user." << name << "\n";
        return kOk;
      }
      if (verb == "remove") {
        c.call("DELETE", "/v1/inventory/fields/" + url_encode(name));
        if (json)
          print_json(bj::object{{"deleted", name}});
        else
          std::cout << "inventory field " << name << " removed\n";
        return kOk;
      }
      throw UsageError("usage: distribctl inventory field add|list|remove ...");
    }
    throw UsageError("unknown command \"inventory " + sub + "\" (see distribctl --help)");
  }

  static std::string event_time(std::int64_t at_ms) {
    return format_time(at_ms / 1000) + fmt::format(".{:03d}", static_cast<int>(at_ms % 1000));
  }

  int events_cmd() {
    if (args.size() >= 2 && args[1] == "sinks") {
      expect_args(2, "events sinks");
      auto o = bj::parse(client().call("GET", "/v1/events/sinks")).as_object();
      if (json) return print_json(o), kOk;
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
    if (args.size() != 1)
      throw UsageError(
          "usage: distribctl events [--follow] [--after ID] [--limit N] [--type T,T] [--severity S] | events "
          "sinks");
    const std::string types = opt("type", "");
    const auto severity = parse_severity(opt("severity", "info"));
    std::int64_t after = -1;
    if (vm.count("after")) {
      const auto text = vm["after"].as<std::string>();
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
      if (json) {
        std::cout << event_to_json(e) << std::endl;
        return;
      }
      std::cout << fmt::format("{:>6}  {}  {:<7}  {:<18}  {}\n", e.id, event_time(e.at_ms),
                               to_string(e.severity), e.type, one_line(e.message, 160))
                << std::flush;
    };
    auto c = client();
    if (vm.count("follow")) {
      if (!json) std::cerr << "following events (Ctrl-C to stop)\n";
      c.follow_events(after, types, severity, [&](const Event& e) {
        print(e);
        return true;
      });
      return kOk;
    }
    const int limit = vm.count("limit") ? vm["limit"].as<int>() : 50;
    const auto list = c.events(after, limit, types, severity);
    if (json) {
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

  int audit_cmd() {
    expect_args(1, "audit");
    const int limit = vm.count("limit") ? vm["limit"].as<int>() : 50;
    const auto list = client().audit(limit);
    if (json) {
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
      t.add({std::to_string(r.id), event_time(r.at_ms), one_line(r.actor, 32), r.remote,
             one_line(r.action, 48), r.target.empty() ? "-" : one_line(r.target, 32),
             std::to_string(r.status), one_line(r.result, 80)});
    t.print();
    return kOk;
  }

  int cluster_cmd() {
    if (args.size() != 2 || args[1] != "status") throw UsageError("usage: distribctl cluster status");
    auto c = client();
    auto o = bj::parse(c.call("GET", "/v1/cluster/status")).as_object();
    if (json) return print_json(o), kOk;
    const auto now = num(o, "now_ms");
    const auto expires = num(o, "expires_at_ms");
    std::cout << fmt::format("active node: {} (answered by {}, coordinator {})\n", str(o, "holder"),
                             str(o, "node"), str(o, "coordinator"));
    const auto left = expires - now;
    std::cout << fmt::format(
        "active since {} · {} · fencing token {}\n", format_time(num(o, "since_ms") / 1000),
        left > 100'000'000'000 ? std::string("held until the node stops (no expiry)")
                               : fmt::format("lease expires in {:.1f} s", static_cast<double>(left) / 1000.0),
        num(o, "token"));
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

  int collect_cmd() {
    const auto& sub = args[1];
    if (args.size() != 3) throw UsageError("usage: distribctl collect list|get JOB");
    const auto id = parse_id(args[2]);
    auto c = client();
    auto o = bj::parse(c.call("GET", "/v1/jobs/" + std::to_string(id) + "/files")).as_object();
    std::vector<bj::object> files;
    const auto host = opt("host");
    for (const auto& v : o.at("files").as_array()) {
      const auto& f = v.as_object();
      if (host.empty() || str(f, "host_name") == host || str(f, "host_id") == host) files.push_back(f);
    }
    if (sub == "list") {
      if (json) return print_json(o), kOk;
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
                  "job " + args[2] + " has no collected files" + (host.empty() ? "" : " from " + host));
    const std::filesystem::path out = opt("output", "collected-" + args[2]);
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
      if (!json && isatty(STDOUT_FILENO))
        std::cout << fmt::format("\r{}/{} files, {}", n, files.size(), format_size(bytes)) << std::flush;
    }
    if (json)
      return print_json(
                 bj::object{{"job_id", id}, {"files", n}, {"bytes", bytes}, {"directory", out.string()}}),
             kOk;
    if (isatty(STDOUT_FILENO)) std::cout << "\n";
    std::cout << fmt::format("{} file(s), {} written under {}\n", n, format_size(bytes), out.string());
    return kOk;
  }

  int job_cancel() {
    expect_args(3, "job cancel ID");
    const auto n = client().cancel_job(parse_id(args[2]));
    if (json)
      print_json(bj::object{{"job_id", parse_id(args[2])}, {"cancelled", n}});
    else
      std::cout << fmt::format("job {}: {} entr{} cancelled\n", args[2], n, n == 1 ? "y" : "ies");
    return kOk;
  }

  int dispatch() {
    if (args.size() == 1 && args[0] == "stats") return stats();
    if (!args.empty() && args[0] == "events") return events_cmd();
    if (args.size() == 1 && args[0] == "audit") return audit_cmd();
    if (args.size() < 2) throw UsageError("missing command (see distribctl --help)");
    const auto& a = args[0];
    const auto& b = args[1];
    if (a == "hosts" && b == "list") return hosts_list();
    if (a == "hosts" && b == "tree") return hosts_tree();
    if (a == "hosts" && b == "approve") return hosts_approve();
    if (a == "package" && b == "create") return package_create();
    if (a == "package" && b == "list") return package_list();
    if (a == "package" && b == "show") return package_show();
    if (a == "job" && b == "create") return job_create();
    if (a == "job" && b == "list") return job_list();
    if (a == "job" && b == "show") return job_show();
    if (a == "job" && b == "cancel") return job_cancel();
    if (a == "job" && b == "retry") return job_retry();
    if (a == "job" && b == "complete-now") return job_complete_now();
    if (a == "transfer") return transfer_cmd();
    if (a == "group") return group_cmd();
    if (a == "idgroup") return idgroup_cmd();
    if (a == "inventory") return inventory_cmd();
    if (a == "collect") return collect_cmd();
    if (a == "cluster") return cluster_cmd();
    throw UsageError("unknown command \"" + a + " " + b + "\" (see distribctl --help)");
  }
};

int exit_code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::unavailable:
      return kUnreachable;
    case ErrorKind::not_found:
      return kNotFound;
    default:
      return kFailed;
  }
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc;
  desc.add_options()("help,h", "")("version", "")("json", "")("wait", "")("server", po::value<std::string>())(
      "token", po::value<std::string>())("token-file", po::value<std::string>())(
      "ca-file", po::value<std::string>())("name", po::value<std::string>())(
      "version-string", po::value<std::string>())("install-command", po::value<std::string>())(
      "install-dir", po::value<std::string>())("install-timeout", po::value<int>())(
      "chunk-size", po::value<std::string>())("split", po::value<std::string>())(
      "job", po::value<std::string>())("relay", po::value<std::string>())("timeout", po::value<int>())(
      "limit", po::value<int>())("description", po::value<std::string>())(
      "password", po::value<std::string>())("match-name", po::value<std::string>())(
      "match-ip", po::value<std::string>())("start", po::value<std::string>())(
      "expires", po::value<std::string>())("timing", po::value<std::string>())(
      "window", po::value<std::string>())("retries", po::value<int>())(
      "retry-backoff", po::value<std::string>())("retry-installs", "")("waves", po::value<std::string>())(
      "success-threshold", po::value<int>())("error-threshold", po::value<int>())(
      "path", po::value<std::vector<std::string>>()->composing())("max-file", po::value<std::string>())(
      "max-total", po::value<std::string>())("query", po::value<std::string>())(
      "fields", po::value<std::string>())("csv", "")("output", po::value<std::string>())(
      "host", po::value<std::string>())("type", po::value<std::string>())("values", po::value<std::string>())(
      "follow", "")("after", po::value<std::string>())("severity", po::value<std::string>())(
      "args", po::value<std::vector<std::string>>());
  po::positional_options_description pos;
  pos.add("args", -1);

  // "--version V" is a package option after "package create"; alone it prints the tool's version.
  std::vector<std::string> argv_fixed(argv + 1, argv + argc);
  const bool creating =
      argv_fixed.size() >= 2 && std::find(argv_fixed.begin(), argv_fixed.end(), "create") != argv_fixed.end();
  for (std::size_t i = 0; i < argv_fixed.size(); ++i)
    if (creating && argv_fixed[i] == "--version" && i + 1 < argv_fixed.size())
      argv_fixed[i] = "--version-string";
    else if (creating && argv_fixed[i].starts_with("--version="))
      argv_fixed[i] = "--version-string=" + argv_fixed[i].substr(10);

  Cli cli;
  try {
    po::store(po::command_line_parser(argv_fixed).options(desc).positional(pos).run(), cli.vm);
    po::notify(cli.vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "distribctl: %s (see distribctl --help)\n", e.what());
    return kUsage;
  }
  if (cli.vm.count("help")) {
    std::cout << kUsageText;
    return kOk;
  }
  if (cli.vm.count("version") && !creating) {
    std::cout << "distribctl " << distrib::version() << "\n";
    return kOk;
  }
  if (cli.vm.count("version-string")) cli.vm.insert({"version", cli.vm["version-string"]});
  cli.json = cli.vm.count("json") > 0;
  if (cli.vm.count("args")) cli.args = cli.vm["args"].as<std::vector<std::string>>();
  try {
    return cli.dispatch();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "distribctl: %s\n", e.what());
    return kUsage;
  } catch (const Error& e) {
    std::fprintf(stderr, "distribctl: %s\n", e.what());
    if (e.kind() == ErrorKind::unavailable)
      std::fprintf(stderr, "hint: is the manager running? check --server or DISTRIB_SERVER\n");
    if (e.kind() == ErrorKind::unauthorized)
      std::fprintf(stderr, "hint: pass the manager's STATE_DIR/admin.token with --token-file\n");
    return exit_code_for(e.kind());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "distribctl: %s\n", e.what());
    return kFailed;
  }
}
