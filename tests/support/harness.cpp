#include "harness.h"

#include <libpq-fe.h>
#include <boost/json.hpp>

#include <algorithm>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace distrib::test {

TempDir::TempDir() {
  char tmpl[] = "/tmp/distrib-test-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}
TempDir::~TempDir() {
  std::error_code ec;
  stdfs::remove_all(path_, ec);
}

namespace {
pid_t spawn(const std::vector<std::string>& argv, int out_fd, int err_fd,
            const std::map<std::string, std::string>& env) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // A test that crashes takes its processes with it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::execvp(args[0], args.data());  // a bare name is looked up on PATH
    _exit(127);
  }
  return pid;
}
int decode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}
}  // namespace

Process::Process(std::vector<std::string> argv, stdfs::path log) : log_(std::move(log)) {
  const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open log " + log_.string());
  pid_ = spawn(argv, fd, fd, {});
  ::close(fd);
}

Process::~Process() {
  if (!status_) stop(3000ms);
}

bool Process::running() {
  if (status_) return false;
  int st = 0;
  const pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = decode(st);
    return false;
  }
  return true;
}

int Process::stop(std::chrono::milliseconds grace) {
  if (status_) return *status_;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return *status_;
    std::this_thread::sleep_for(20ms);
  }
  kill_now();
  return status_.value_or(-9);
}

void Process::kill_now() {
  if (status_) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  ::waitpid(pid_, &st, 0);
  status_ = decode(st);
}

std::string Process::log() const {
  return read_file(log_);
}

RunResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout,
              const std::map<std::string, std::string>& env) {
  TempDir tmp;
  const auto out_path = tmp / "out", err_path = tmp / "err";
  const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  const pid_t pid = spawn(argv, out, err, env);
  ::close(out);
  ::close(err);
  RunResult r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int st = 0;
  for (;;) {
    const pid_t w = ::waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      r.exit_code = decode(st);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      r.exit_code = -9;
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds deadline,
                std::chrono::milliseconds every) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= end) return pred();
    std::this_thread::sleep_for(every);
  }
}

std::string read_file(const stdfs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::uint64_t rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  return 0;
}

void write_file(const stdfs::path& p, const std::string& content, bool executable) {
  stdfs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
  if (executable) ::chmod(p.c_str(), 0755);
}

const std::string& distribd_path() {
  static const std::string p = DISTRIB_TEST_DISTRIBD;
  return p;
}
const std::string& distribctl_path() {
  static const std::string p = DISTRIB_TEST_DISTRIBCTL;
  return p;
}
const stdfs::path& examples_dir() {
  static const stdfs::path p = DISTRIB_TEST_EXAMPLES;
  return p;
}

namespace {
struct Server {
  stdfs::path state_dir;
  std::string parent;
};
std::mutex servers_mutex;
std::map<std::string, Server>& servers() {
  static std::map<std::string, Server> s;
  return s;
}

// The top of the tree `url` is in (the url itself when it has no recorded parent).
std::optional<std::pair<std::string, Server>> top_of(std::string url) {
  std::lock_guard lock(servers_mutex);
  for (int depth = 0; depth < 16; ++depth) {
    auto it = servers().find(url);
    if (it == servers().end()) return std::nullopt;
    if (it->second.parent.empty()) return *it;
    url = it->second.parent;
  }
  return std::nullopt;
}

std::string option_after(const std::vector<std::string>& v, const std::string& key) {
  auto it = std::find(v.begin(), v.end(), key);
  return it != v.end() && it + 1 != v.end() ? *(it + 1) : std::string();
}

bool has_trust_option(const std::vector<std::string>& v) {
  for (const char* k :
       {"--ca-file", "--enrol-bundle", "--ca-fingerprint", "--enrol-token-file", "--insecure-http"})
    if (std::find(v.begin(), v.end(), k) != v.end()) return true;
  return false;
}
}  // namespace

void register_server(const std::string& url, const stdfs::path& state_dir, const std::string& parent_url) {
  std::lock_guard lock(servers_mutex);
  servers()[url] = Server{state_dir, parent_url};
}

std::string ca_file_for(const std::string& url) {
  if (!url.starts_with("https://")) return {};
  const auto top = top_of(url);
  return top ? (top->second.state_dir / "pki" / "ca.crt").string() : std::string();
}

std::vector<std::string> enrol_options(const std::string& url) {
  if (!url.starts_with("https://")) return {};
  const auto top = top_of(url);
  if (!top) return {};
  const auto& [top_url, server] = *top;
  const auto token_file = server.state_dir / "test-enrol.token";
  static std::mutex token_mutex;
  std::lock_guard lock(token_mutex);
  if (!stdfs::exists(token_file)) {
    auto r = run({distribctl_path(), "--server", top_url, "--token-file",
                  (server.state_dir / "admin.token").string(), "enrol-token", "create", "--uses", "unlimited",
                  "--expires", "365d"});
    if (r.exit_code != 0)
      throw std::runtime_error("cannot create an enrolment token at " + top_url + ": " + r.err);
    std::string token = r.out;
    while (!token.empty() && token.back() == '\n') token.pop_back();
    write_file(token_file, token + "\n");
  }
  return {"--ca-file", (server.state_dir / "pki" / "ca.crt").string(), "--enrol-token-file",
          token_file.string()};
}

TestHost enrol_test_host(const ManagerProc& m, const stdfs::path& dir, const std::string& name,
                         const std::string& role) {
  const auto opts = enrol_options(m.url());
  if (opts.size() < 4) throw std::runtime_error("no enrolment options for " + m.url());
  stdfs::create_directories(dir);
  TestHost h;
  h.host_id = read_file("/proc/sys/kernel/random/uuid");
  while (!h.host_id.empty() && h.host_id.back() == '\n') h.host_id.pop_back();
  h.key_file = (dir / "host.key").string();
  h.cert_file = (dir / "host.crt").string();
  h.ca_file = m.ca_file();
  const auto csr = (dir / "host.csr").string();
  auto made = run({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", h.key_file, "-out", csr, "-subj", "/CN=" + h.host_id, "-addext",
                   "subjectAltName=URI:urn:distrib:" + role + ":" + h.host_id});
  if (made.exit_code != 0) throw std::runtime_error("openssl req failed: " + made.err);
  auto token = read_file(opts[3]);
  while (!token.empty() && token.back() == '\n') token.pop_back();
  const auto body = dir / "enrol.json";
  write_file(body, boost::json::serialize(
                       boost::json::object{{"request", read_file(csr)}, {"name", name}, {"token", token}}));
  auto r = run({"curl", "-sS", "--cacert", h.ca_file, "-H", "Content-Type: application/json", "--data-binary",
                "@" + body.string(), m.url() + "/v1/agent/enrol"});
  const auto cert = json_at(r.out, "/certificate");
  if (r.exit_code != 0 || cert.empty())
    throw std::runtime_error("enrolment of " + name + " failed: " + r.out + r.err);
  write_file(h.cert_file, cert);
  return h;
}

std::string ManagerProc::ca_file() const {
  return ca_file_for(url_);
}

ManagerProc::ManagerProc(const stdfs::path& state_dir, std::vector<std::string> extra, std::string address,
                         int port)
    : state_dir_(state_dir), extra_(std::move(extra)), address_(std::move(address)), port_(port) {
  start();
}

void ManagerProc::start() {
  proc_.reset();
  std::error_code ec;
  stdfs::remove(state_dir_ / "endpoint", ec);
  // A manager given a parent is a relay.
  const bool relay = std::find(extra_.begin(), extra_.end(), "--parent") != extra_.end();
  std::vector<std::string> argv = {
      distribd_path(), "--role", relay ? "relay" : "manager", "--state-dir", state_dir_.string(), "--listen",
      address_,        "--port", std::to_string(port_)};
  // Test defaults, unless the caller chose otherwise.
  for (const auto& [key, value] :
       {std::pair<std::string, std::string>{"--poll-timeout", "10"}, {"--log-level", "debug"}})
    if (std::find(extra_.begin(), extra_.end(), key) == extra_.end()) argv.insert(argv.end(), {key, value});
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  // "--test-open-files N" is the harness's: the process runs with at most N descriptors.
  if (auto at = std::find(argv.begin(), argv.end(), "--test-open-files");
      at != argv.end() && at + 1 != argv.end()) {
    const auto n = *(at + 1);
    argv.erase(at, at + 2);
    argv.insert(argv.begin(), {"prlimit", "--nofile=" + n + ":" + n, "--"});
  }
  // A relay enrols with its parent's tree at once.
  const auto parent = option_after(extra_, "--parent");
  if (relay && !has_trust_option(extra_))
    for (const auto& o : enrol_options(parent)) argv.push_back(o);
  stdfs::create_directories(state_dir_.parent_path());
  proc_ = std::make_unique<Process>(argv, state_dir_.string() + ".log");
  if (!wait_until([&] { return stdfs::exists(state_dir_ / "endpoint") || !proc_->running(); }, 20s, 20ms) ||
      !proc_->running())
    throw std::runtime_error("manager did not start: " + proc_->log());
  url_ = read_file(state_dir_ / "endpoint");
  while (!url_.empty() && url_.back() == '\n') url_.pop_back();
  port_ = std::stoi(url_.substr(url_.rfind(':') + 1));
  register_server(url_, state_dir_, relay ? parent : std::string());
}

RunResult ManagerProc::ctl(std::vector<std::string> args, bool json, std::chrono::seconds timeout) const {
  std::vector<std::string> argv = {distribctl_path(), "--server", url_, "--token-file",
                                   token_file().string()};
  if (json) argv.push_back("--json");
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, timeout);
}

AgentProc::AgentProc(const stdfs::path& state_dir, std::string server_url, std::string name,
                     std::string address, std::vector<std::string> extra)
    : state_dir_(state_dir),
      server_(std::move(server_url)),
      name_(std::move(name)),
      address_(std::move(address)),
      extra_(std::move(extra)) {
  start();
}

void AgentProc::start() {
  proc_.reset();
  std::vector<std::string> argv = {distribd_path(),
                                   "--role",
                                   "agent",
                                   "--state-dir",
                                   state_dir_.string(),
                                   "--server",
                                   server_,
                                   "--bind-address",
                                   address_,
                                   "--host-name",
                                   name_,
                                   "--poll-timeout",
                                   "5",
                                   "--log-level",
                                   "debug"};
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  if (!has_trust_option(extra_))
    for (const auto& o : enrol_options(server_)) argv.push_back(o);
  stdfs::create_directories(state_dir_.parent_path());
  proc_ = std::make_unique<Process>(argv, state_dir_.string() + ".log");
}

std::string json_at(const std::string& json, const std::string& pointer) {
  boost::system::error_code ec;
  auto v = boost::json::parse(json, ec);
  if (ec) return "";
  auto* p = v.find_pointer(pointer, ec);
  if (!p || ec) return "";
  if (p->is_string()) return std::string(p->as_string());
  return boost::json::serialize(*p);
}

int host_count(const ManagerProc& m) {
  auto r = m.ctl({"hosts", "list"}, true);
  boost::system::error_code ec;
  auto v = boost::json::parse(r.out, ec);
  if (ec) return -1;
  return static_cast<int>(v.at("hosts").as_array().size());
}

std::string wait_job(const ManagerProc& m, const std::string& id, std::chrono::seconds timeout) {
  auto r =
      m.ctl({"job", "show", id, "--wait", "--timeout", std::to_string(timeout.count())}, true, timeout + 10s);
  return r.out;
}

std::string pg_server() {
  const char* dir = std::getenv("DISTRIB_TEST_PG_DIR");
  if (!dir || !*dir) return {};
  // Never destroyed: the databases made here are dropped at exit (pg_databases below), after the
  // function-local statics made later would already be gone.
  static const auto* server = [&] {
    ::setenv("ODBCSYSINI", (stdfs::path(dir) / "odbc").c_str(), 1);
    std::string port = read_file(stdfs::path(dir) / "port");
    while (!port.empty() && (port.back() == '\n' || port.back() == ' ')) port.pop_back();
    return new std::string("host=127.0.0.1 port=" + port + " user=distrib password=distrib");
  }();
  return *server;
}

std::string pg_connection(const std::string& db) {
  return pg_server() + " dbname=" + db;
}

std::string pg_odbc_connection(const std::string& db) {
  std::map<std::string, std::string> kv;
  std::istringstream in(pg_server());
  for (std::string part; in >> part;) kv[part.substr(0, part.find('='))] = part.substr(part.find('=') + 1);
  return "DRIVER={PostgreSQL Unicode};SERVER=" + kv["host"] + ";PORT=" + kv["port"] + ";DATABASE=" + db +
         ";UID=" + kv["user"] + ";PWD=" + kv["password"] + ";";
}

void pg_exec(const std::string& sql, const std::string& db) {
  PGconn* c = PQconnectdb(pg_connection(db).c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    const std::string why = PQerrorMessage(c);
    PQfinish(c);
    throw std::runtime_error("cannot reach the test PostgreSQL server: " + why);
  }
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  PGresult* r = PQexec(c, sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  const std::string why = PQerrorMessage(c);
  PQclear(r);
  PQfinish(c);
  if (!ok) throw std::runtime_error(sql + ": " + why);
}

namespace {
// The databases made by this process, dropped at exit by a handler registered after the first
// connection: handlers run in reverse order, so it runs before OpenSSL's own exit handler (which
// libpq's first connection registered), never after it. Never destroyed itself.
std::vector<std::string>& pg_databases() {
  static auto* names = new std::vector<std::string>;
  return *names;
}
void drop_pg_databases() {
  for (const auto& n : pg_databases()) {
    try {
      pg_exec("DROP DATABASE IF EXISTS " + n + " WITH (FORCE)");
    } catch (...) {
    }
  }
}
}  // namespace

std::string pg_create_database(const std::string& name) {
  auto& names = pg_databases();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    pg_exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    pg_exec("CREATE DATABASE " + name);
    if (names.empty()) std::atexit(drop_pg_databases);
    names.push_back(name);
  }
  return name;
}

bool pg_script(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {DISTRIB_TEST_PG_SCRIPT};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, 120s).exit_code == 0;
}

}  // namespace distrib::test
