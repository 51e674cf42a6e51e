// distribctl: the administrator's command-line tool, a thin shell over distrib::AdminClient.
#include <distrib/client.h>
#include <distrib/error.h>
#include <distrib/model/units.h>
#include <distrib/version.h>

#include <boost/json.hpp>
#include <boost/program_options.hpp>
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <iostream>
#include <thread>
#include <unistd.h>

namespace po = boost::program_options;
namespace bj = boost::json;
using namespace distrib;

namespace {

// Exit codes (documented in README and `distribctl --help`).
constexpr int kOk = 0;
constexpr int kFailed = 1;        // the manager refused or the operation failed
constexpr int kUsage = 2;         // bad command line
constexpr int kUnreachable = 3;   // manager not reachable / unavailable
constexpr int kNotFound = 4;      // named object does not exist
constexpr int kJobFailed = 5;     // job show --wait: some entries did not succeed
constexpr int kWaitTimeout = 6;   // job show --wait: timed out

const char* kUsageText = R"(usage: distribctl [global options] COMMAND ...

Commands:
  hosts list                    every host this manager knows (with relays' subtrees)
  hosts tree                    the hierarchy: relays and what is below them, online or not
  hosts approve HOST...         approve hosts waiting for approval (auto-register off)
  stats                         content counters: chunks served per requester, relay cache
  package create DIR --name N --version V [--install-command CMD] [--install-dir PATH]
                 [--install-timeout SECONDS] [--chunk-size BYTES]
  package list
  package show NAME VERSION
  job create install NAME VERSION DESTINATION...   (destinations by the manager's key mode)
  job create transfer-to-relay NAME VERSION RELAY...   pre-stage a package in relays' caches
  job create delete-package NAME VERSION RELAY...      remove a package from relays' caches
  job list [--limit N]
  job show ID [--wait [--timeout SECONDS]]
  job cancel ID

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

std::string format_size(std::uint64_t bytes) { return distrib::format_byte_size(bytes); }

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

void print_json(const bj::value& v) { std::cout << bj::serialize(v) << "\n"; }

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

bj::object entry_json(const JobEntry& e) {
  bj::object o{{"id", e.id}, {"host_id", e.host_id}, {"host_name", e.host_name},
               {"parent_id", e.parent_id}, {"parent_name", e.parent_name},
               {"state", std::string(to_string(e.state))}, {"attempt", e.attempt},
               {"message", e.message}, {"output_tail", e.output_tail}, {"updated_at", e.updated_at}};
  o["exit_code"] = e.exit_code ? bj::value(*e.exit_code) : bj::value(nullptr);
  return o;
}

bj::object progress_json(const JobProgress& p) {
  bj::object o{{"total", p.total}, {"final", p.final_count}};
  for (auto s : kAllEntryStates) o[to_string(s)] = p.count(s);
  return o;
}

bj::object job_json(const Job& j) {
  bj::array dests;
  for (const auto& d : j.destinations) dests.emplace_back(d);
  return {{"id", j.id}, {"type", std::string(to_string(j.type))},
          {"package", bj::object{{"name", j.package_name}, {"version", j.package_version}}},
          {"destinations", dests}, {"key_mode", j.key_mode}, {"created_at", j.created_at},
          {"cancel_requested", j.cancel_requested}};
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
        throw UsageError("no admin token: pass --token-file FILE (the manager's STATE_DIR/admin.token) or set DISTRIB_TOKEN");
      std::ifstream in(file);
      if (!in) throw UsageError("cannot read token file " + file);
      std::getline(in, s.token);
    }
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
    for (const auto& v : answer.at("hosts").as_array()) names[str(v.as_object(), "host_id")] = str(v.as_object(), "name");
    Table t({"NAME", "ADDRESS", "HOST ID", "ROLE", "PARENT", "STATUS", "OS", "LAST SEEN"});
    for (const auto& v : answer.at("hosts").as_array()) {
      const auto& h = v.as_object();
      const auto parent = str(h, "parent");
      const auto& addrs = h.at("addresses").as_array();
      t.add({str(h, "name"), addrs.empty() ? "-" : std::string(addrs[0].as_string()), str(h, "host_id"),
             str(h, "role"), parent.empty() ? "-" : (names.count(parent) ? names[parent] : parent.substr(0, 8)),
             !flag(h, "approved") ? "awaiting approval" : flag(h, "online") ? "online" : "offline",
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
    std::function<void(const std::string&, const std::string&)> walk = [&](const std::string& id, const std::string& indent) {
      auto it = children.find(id);
      if (it == children.end()) return;
      for (std::size_t i = 0; i < it->second.size(); ++i) {
        const auto& h = *it->second[i];
        const bool last = i + 1 == it->second.size();
        const bool up = flag(h, "online");
        ++total;
        online += up;
        std::cout << indent << (last ? "└── " : "├── ") << str(h, "name") << "  " << str(h, "role") << "  "
                  << (!flag(h, "approved") ? "awaiting approval" : up ? "online" : "offline")
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
    if (json) print_json(bj::object{{"approved", n}});
    else std::cout << fmt::format("{} host(s) approved\n", n);
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
    std::cout << fmt::format("{} {}\nchunks served {} ({}) · cache hits {} · misses {}\n", str(answer, "role"),
                             str(answer, "host_id"), count("chunks_served"), format_size(count("bytes_served")),
                             count("cache_hits"), count("cache_misses"));
    if (c.contains("upstream_fetches"))
      std::cout << fmt::format("fetched from the parent: {} chunk(s), {} · requests that joined a fetch under way: {}\n",
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
    if (vm.count("chunk-size")) spec.chunk_size = vm["chunk-size"].as<std::uint64_t>();
    const bool tty = !json && ::isatty(STDERR_FILENO);
    auto result = client().upload_package(spec, [&](std::size_t done, std::size_t total) {
      if (!tty || total == 0) return;
      std::fprintf(stderr, "\ruploading chunks %zu/%zu", done, total);
      if (done == total) std::fprintf(stderr, "\n");
    });
    const auto& m = result.manifest;
    if (json) {
      print_json(bj::object{{"name", m.name}, {"version", m.version},
                            {"payload_digest", m.payload_digest}, {"payload_size", m.payload_size},
                            {"files", m.files.size()}, {"chunks", result.chunks_total},
                            {"chunks_uploaded", result.chunks_uploaded},
                            {"bytes_uploaded", result.bytes_uploaded},
                            {"already_registered", result.already_registered}});
      return kOk;
    }
    std::cout << fmt::format("package {} {} {}: {} file(s), {}, {} chunk(s) ({} uploaded, {})\n",
                             m.name, m.version, result.already_registered ? "already registered" : "registered",
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
        a.push_back(bj::object{{"name", p.name}, {"version", p.version}, {"payload_digest", p.payload_digest},
                               {"payload_size", p.payload_size}, {"file_count", p.file_count},
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
    std::cout << fmt::format("package {} {}\npayload   {} ({}, {} chunk(s))\ncreated   {}\n",
                             m.name, m.version, m.payload_digest, format_size(m.payload_size),
                             m.chunks.size(), format_time(m.created_at));
    std::cout << "install   dir: " << (m.install.directory.empty() ? "(agent default)" : m.install.directory)
              << "; command: " << (m.install.command.empty() ? "(none)" : m.install.command)
              << "; timeout " << m.install.timeout_seconds << " s\n\n";
    Table t({"PATH", "TYPE", "SIZE", "MODE", "SHA256"});
    for (const auto& f : m.files)
      t.add({f.type == "symlink" ? f.path + " -> " + f.link_target : f.path, f.type,
             f.type == "file" ? format_size(f.size) : "-", fmt::format("{:04o}", f.mode),
             f.sha256.empty() ? "-" : f.sha256.substr(0, 12)});
    t.print();
    return kOk;
  }

  int job_create() {
    if (args.size() < 6)
      throw UsageError("usage: distribctl job create install|transfer-to-relay|delete-package NAME VERSION DESTINATION...");
    JobType type;
    try {
      type = parse_job_type(args[2]);
    } catch (const Error& e) {
      throw UsageError(e.what());
    }
    std::vector<std::string> dests(args.begin() + 5, args.end());
    auto job = client().create_job(type, args[3], args[4], dests);
    if (json) {
      print_json(bj::object{{"job", job_json(job)}});
      return kOk;
    }
    std::cout << fmt::format("job {} created: {} {} {} on {} destination(s)\n", job.id, to_string(type),
                             job.package_name, job.package_version, dests.size());
    return kOk;
  }

  int job_list() {
    expect_args(2, "job list [--limit N]");
    const int limit = vm.count("limit") ? vm["limit"].as<int>() : 50;
    auto jobs = client().list_jobs(limit);
    if (json) {
      bj::array a;
      for (const auto& l : jobs) {
        auto o = job_json(l.job);
        o["progress"] = progress_json(l.progress);
        a.push_back(std::move(o));
      }
      print_json(bj::object{{"jobs", a}});
      return kOk;
    }
    Table t({"ID", "TYPE", "PACKAGE", "HOSTS", "DONE", "SUCCEEDED", "FAILED", "CREATED"});
    for (const auto& l : jobs)
      t.add({std::to_string(l.job.id), std::string(to_string(l.job.type)),
             l.job.package_name + " " + l.job.package_version, std::to_string(l.progress.total),
             std::to_string(l.progress.final_count), std::to_string(l.progress.count(EntryState::succeeded)),
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
      bj::array entries;
      for (const auto& e : details.entries) entries.push_back(entry_json(e));
      print_json(bj::object{{"job", job_json(details.job)}, {"progress", progress_json(details.progress)},
                            {"entries", entries}});
      return code;
    }
    const auto& j = details.job;
    std::cout << fmt::format("job {}: {} {} {} · created {} · {}/{} done{}\n\n", j.id, to_string(j.type),
                             j.package_name, j.package_version, format_time(j.created_at),
                             details.progress.final_count, details.progress.total,
                             j.cancel_requested ? " · cancel requested" : "");
    // Grouped by the relay each host is under (hosts directly under this manager first).
    auto entries = details.entries;
    std::stable_sort(entries.begin(), entries.end(), [](const JobEntry& a, const JobEntry& b) {
      return a.parent_name < b.parent_name;
    });
    Table t({"RELAY", "HOST", "STATE", "EXIT", "UPDATED", "MESSAGE"});
    for (const auto& e : entries)
      t.add({e.parent_id.empty() ? "-" : (e.parent_name.empty() ? e.parent_id.substr(0, 8) : e.parent_name),
             e.host_name.empty() ? e.host_id : e.host_name, std::string(to_string(e.state)),
             e.exit_code ? std::to_string(*e.exit_code) : "-", format_time(e.updated_at),
             one_line(e.message, 60)});
    t.print();
    for (const auto& e : details.entries)
      if (e.state == EntryState::failed && !e.output_tail.empty())
        std::cout << "\n--- output of " << (e.host_name.empty() ? e.host_id : e.host_name) << " (tail) ---\n"
                  << e.output_tail << (e.output_tail.back() == '\n' ? "" : "\n");
    return code;
  }

  int job_cancel() {
    expect_args(3, "job cancel ID");
    const auto n = client().cancel_job(parse_id(args[2]));
    if (json) print_json(bj::object{{"job_id", parse_id(args[2])}, {"cancelled", n}});
    else std::cout << fmt::format("job {}: {} entr{} cancelled\n", args[2], n, n == 1 ? "y" : "ies");
    return kOk;
  }

  int dispatch() {
    if (args.size() == 1 && args[0] == "stats") return stats();
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
    throw UsageError("unknown command \"" + a + " " + b + "\" (see distribctl --help)");
  }
};

int exit_code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::unavailable: return kUnreachable;
    case ErrorKind::not_found: return kNotFound;
    default: return kFailed;
  }
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc;
  desc.add_options()
      ("help,h", "")("version", "")("json", "")("wait", "")
      ("server", po::value<std::string>())("token", po::value<std::string>())
      ("token-file", po::value<std::string>())("ca-file", po::value<std::string>())
      ("name", po::value<std::string>())("version-string", po::value<std::string>())
      ("install-command", po::value<std::string>())("install-dir", po::value<std::string>())
      ("install-timeout", po::value<int>())("chunk-size", po::value<std::uint64_t>())
      ("timeout", po::value<int>())("limit", po::value<int>())
      ("args", po::value<std::vector<std::string>>());
  po::positional_options_description pos;
  pos.add("args", -1);

  // "--version V" is a package option after "package create"; alone it prints the tool's version.
  std::vector<std::string> argv_fixed(argv + 1, argv + argc);
  const bool creating = argv_fixed.size() >= 2 &&
                        std::find(argv_fixed.begin(), argv_fixed.end(), "create") != argv_fixed.end();
  for (std::size_t i = 0; i < argv_fixed.size(); ++i)
    if (creating && argv_fixed[i] == "--version" && i + 1 < argv_fixed.size()) argv_fixed[i] = "--version-string";
    else if (creating && argv_fixed[i].starts_with("--version=")) argv_fixed[i] = "--version-string=" + argv_fixed[i].substr(10);

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
