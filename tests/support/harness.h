#pragma once
// Shared test helpers: temporary directories, real processes with hard deadlines, a manager and
// agents on loopback addresses, and running distribctl. Every process started here is killed by
// pid when its owner goes out of scope.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace distrib::test {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

/// A fresh directory under /tmp, removed with its contents at scope exit.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const stdfs::path& path() const { return path_; }
  stdfs::path operator/(const std::string& p) const { return path_ / p; }

 private:
  stdfs::path path_;
};

/// A child process with stdout+stderr to a log file.
class Process {
 public:
  Process(std::vector<std::string> argv, stdfs::path log);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  int pid() const { return pid_; }
  bool running();
  /// SIGTERM, then SIGKILL after `grace`; returns the exit status (or -signal).
  int stop(std::chrono::milliseconds grace = 5000ms);
  void kill_now();
  std::string log() const;

 private:
  int pid_ = -1;
  std::optional<int> status_;
  stdfs::path log_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
/// Runs a command to completion (killed after `timeout`).
RunResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout = 60s,
              const std::map<std::string, std::string>& env = {});

/// Polls `pred` until it is true or the deadline passes; returns its last value.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds deadline,
                std::chrono::milliseconds every = 100ms);

std::string read_file(const stdfs::path& p);
/// Resident memory of process `pid` in KiB (VmRSS), 0 when it cannot be read.
std::uint64_t rss_kib(int pid);
void write_file(const stdfs::path& p, const std::string& content, bool executable = false);

const std::string& distribd_path();
const std::string& distribctl_path();
const stdfs::path& examples_dir();

// --- the run's PostgreSQL server (tests/support/postgres.sh, started by CTest's "postgres"
// fixture, which sets DISTRIB_TEST_PG_DIR)
/// "host=127.0.0.1 port=P user=distrib password=distrib" (no dbname), or "" when the run has no
/// server. Also points ODBCSYSINI at the server directory's odbcinst.ini (driver logs off).
std::string pg_server();
/// The same server as a PostgreSQL/ODBC connection string to database `db`.
std::string pg_connection(const std::string& db);
std::string pg_odbc_connection(const std::string& db);
/// Runs one statement on the server's "postgres" database (throws with the server's message).
void pg_exec(const std::string& sql, const std::string& db = "postgres");
/// Creates database `name` (once per process); every database made here is dropped at exit.
std::string pg_create_database(const std::string& name);
/// Runs tests/support/postgres.sh with `args` (start DIR PORT, restart DIR, destroy DIR...);
/// false when it failed.
bool pg_script(const std::vector<std::string>& args);

/// A manager process (or a relay, given --parent) on a loopback address with its own state
/// directory. `extra` may hold the harness's own "--test-open-files N": the process then runs
/// with at most N open files.
class ManagerProc {
 public:
  explicit ManagerProc(const stdfs::path& state_dir, std::vector<std::string> extra = {},
                       std::string address = "127.0.0.1", int port = 0);
  void start();
  void stop() { proc_.reset(); }
  /// SIGKILL: no orderly shutdown.
  void kill() {
    if (proc_) proc_->kill_now();
  }
  const std::string& url() const { return url_; }
  int port() const { return port_; }
  /// The CA certificate that verifies this server (empty with --insecure-http).
  std::string ca_file() const;
  stdfs::path state_dir() const { return state_dir_; }
  stdfs::path token_file() const { return state_dir_ / "admin.token"; }
  /// distribctl against this manager; `json` adds --json.
  RunResult ctl(std::vector<std::string> args, bool json = false, std::chrono::seconds timeout = 60s) const;
  std::string log() const { return proc_ ? proc_->log() : ""; }
  int pid() const { return proc_ ? proc_->pid() : -1; }
  bool running() { return proc_ && proc_->running(); }

 private:
  stdfs::path state_dir_;
  std::vector<std::string> extra_;
  std::string address_;
  int port_;
  std::string url_;
  std::unique_ptr<Process> proc_;
};

/// An agent process bound to its own 127.0.0.x address. It starts when constructed; start()
/// restarts it (after stop() or kill()).
class AgentProc {
 public:
  AgentProc(const stdfs::path& state_dir, std::string server_url, std::string name, std::string address,
            std::vector<std::string> extra = {});
  void start();
  void stop() { proc_.reset(); }
  /// SIGKILL: no orderly shutdown (a crash or a pulled plug).
  void kill() {
    if (proc_) proc_->kill_now();
  }
  bool running() { return proc_ && proc_->running(); }
  stdfs::path state_dir() const { return state_dir_; }
  const std::string& name() const { return name_; }
  std::string log() const { return proc_ ? proc_->log() : ""; }

 private:
  stdfs::path state_dir_;
  std::string server_;
  std::string name_;
  std::string address_;
  std::vector<std::string> extra_;
  std::unique_ptr<Process> proc_;
};

/// Identities (TLS and enrolment are on by default): every manager and relay started here is
/// recorded with its state directory and parent, so that a host started against its URL enrols
/// at once with the tree's CA and a test token (made by the top manager on first use).
/// Servers started otherwise (cluster nodes) are recorded by the test.
void register_server(const std::string& url, const stdfs::path& state_dir,
                     const std::string& parent_url = {});
/// "--ca-file CA --enrol-token-file FILE" for a host whose parent is `url`; empty when `url` is
/// plain http or not recorded.
std::vector<std::string> enrol_options(const std::string& url);
/// The CA file of the tree `url` belongs to (empty when unknown).
std::string ca_file_for(const std::string& url);

/// A host identity a test speaks for without running an agent: an EC key and a certificate
/// request made with the openssl tool, enrolled at `m` with the tree's test token through
/// POST /v1/agent/enrol (sent with curl): an implementation of the enrolment protocol
/// independent of the library's.
struct TestHost {
  std::string host_id, cert_file, key_file, ca_file;
  /// curl options presenting this identity and trusting the manager's CA.
  std::vector<std::string> curl() const {
    return {"--cacert", ca_file, "--cert", cert_file, "--key", key_file};
  }
};
TestHost enrol_test_host(const ManagerProc& m, const stdfs::path& dir, const std::string& name,
                         const std::string& role = "agent");

/// Parses JSON text and returns the value at a "/"-separated path as text ("" when absent).
std::string json_at(const std::string& json, const std::string& pointer);
/// Number of hosts `distribctl hosts list` shows.
int host_count(const ManagerProc& m);
/// Waits until job `id` has every entry final; returns `job show --json` output.
std::string wait_job(const ManagerProc& m, const std::string& id, std::chrono::seconds timeout = 60s);

}  // namespace distrib::test
