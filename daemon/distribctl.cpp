// distribctl: the administrator's command-line tool, a thin shell over distrib::AdminClient.
#include <distrib/client.h>
#include <distrib/error.h>
#include <distrib/version.h>

#include <boost/json.hpp>
#include <boost/program_options.hpp>
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
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
  hosts list
  package create DIR --name N --version V [--install-command CMD] [--install-dir PATH]
                 [--install-timeout SECONDS] [--chunk-size BYTES]
  package list
  package show NAME VERSION
  job create install NAME VERSION DESTINATION...   (destinations by the manager's key mode)
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

std::string format_size(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, units[u]);
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

  int hosts_list() {
    expect_args(2, "hosts list");
    auto hosts = client().list_hosts();
    if (json) {
      bj::array a;
      for (const auto& h : hosts) {
        bj::array addrs;
        for (const auto& x : h.addresses) addrs.emplace_back(x);
        a.push_back(bj::object{{"host_id", h.host_id}, {"name", h.name}, {"addresses", addrs},
                               {"os", h.os}, {"role", std::string(to_string(h.role))},
                               {"agent_version", h.agent_version},
                               {"registered_at", h.registered_at}, {"last_seen", h.last_seen}});
      }
      print_json(bj::object{{"hosts", a}});
      return kOk;
    }
    Table t({"NAME", "ADDRESS", "HOST ID", "ROLE", "OS", "LAST SEEN"});
    for (const auto& h : hosts)
      t.add({h.name, h.addresses.empty() ? "-" : h.addresses.front(), h.host_id,
             std::string(to_string(h.role)), one_line(h.os, 40), format_time(h.last_seen)});
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
    if (args.size() < 6 || args[2] != "install")
      throw UsageError("usage: distribctl job create install NAME VERSION DESTINATION...");
    std::vector<std::string> dests(args.begin() + 5, args.end());
    auto job = client().create_install_job(args[3], args[4], dests);
    if (json) {
      print_json(bj::object{{"job", job_json(job)}});
      return kOk;
    }
    std::cout << fmt::format("job {} created: install {} {} on {} destination(s)\n", job.id,
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
    Table t({"HOST", "STATE", "EXIT", "UPDATED", "MESSAGE"});
    for (const auto& e : details.entries)
      t.add({e.host_name.empty() ? e.host_id : e.host_name, std::string(to_string(e.state)),
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
    if (args.size() < 2) throw UsageError("missing command (see distribctl --help)");
    const auto& a = args[0];
    const auto& b = args[1];
    if (a == "hosts" && b == "list") return hosts_list();
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
