#pragma once
// distribctl's shared parts: exit codes, the command line as parsed (Cli, with the AdminClient it
// builds), output helpers (tables, JSON, times, sizes), and the commands of each group, defined
// one file per group: hosts.cpp, packages.cpp, jobs.cpp, groups.cpp, inventory.cpp, events.cpp;
// main.cpp parses the command line and dispatches.
#include <distrib/client.h>
#include <distrib/content/digest.h>
#include <distrib/error.h>
#include <distrib/model/units.h>
#include <distrib/version.h>

#include <fmt/core.h>
#include <boost/json.hpp>
#include <boost/program_options.hpp>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace distribctl {

namespace po = boost::program_options;
namespace bj = boost::json;
using namespace distrib;

// Exit codes (documented in README and `distribctl --help`).
inline constexpr int kOk = 0;
inline constexpr int kFailed = 1;       // the manager refused or the operation failed
inline constexpr int kUsage = 2;        // bad command line
inline constexpr int kUnreachable = 3;  // manager not reachable / unavailable
inline constexpr int kNotFound = 4;     // named object does not exist
inline constexpr int kJobFailed = 5;    // job show --wait: some entries did not succeed
inline constexpr int kWaitTimeout = 6;  // job show --wait: timed out

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The environment variable's value, `fallback` when unset or empty.
std::string env_or(const char* name, std::string fallback = {});
/// The manager distribctl talks to unless told otherwise.
inline constexpr const char* kDefaultServer = "https://127.0.0.1:8640";
/// Local time "YYYY-MM-DD HH:MM:SS"; "-" for 0.
std::string format_time(std::int64_t t);
std::string format_size(std::uint64_t bytes);
/// The text on one line, cut at `max` code units with an ellipsis.
std::string one_line(std::string s, std::size_t max);
void print_json(const bj::value& v);
/// "[####....] 3/10 done · succeeded 3 transferring 7"
std::string progress_line(const JobProgress& p);
bj::object job_json(const Job& j);
/// "12 s ago", "3 min ago", ...; "never" for 0.
std::string ago(std::int64_t t);
/// Members of a JSON answer: empty, false or 0 when absent or of another type.
std::string str(const bj::object& o, std::string_view key);
bool flag(const bj::object& o, std::string_view key);
std::int64_t num(const bj::object& o, std::string_view key);
std::string what_of(const Job& j);
std::string join(const std::vector<std::string>& v, const char* sep = ", ");
std::string waves_text(const std::vector<int>& w);
/// The names (or host ids) of a group answer's hosts.
std::string host_names(const bj::object& g);
std::int64_t parse_id(const std::string& s);
std::string csv_cell(const std::string& v);
std::string event_time(std::int64_t at_ms);

// A plain text table: columns sized to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

/// The command line as parsed, and what every command uses of it.
struct Cli {
  po::variables_map vm;
  std::vector<std::string> args;
  bool json = false;

  std::string opt(const char* name, std::string fallback = {}) const;
  void expect_args(std::size_t n, const char* usage) const;
  /// The admin client for --server/--token(-file)/--ca-file (or their environment variables).
  AdminClient client() const;
  /// The manager's /v1/hosts answer: hosts plus what only the manager knows (online, itself).
  bj::object hosts_answer() const;
  /// Writes `text` to --output FILE, or to standard output.
  void emit(const std::string& text) const;
  /// The positional arguments from `from` on.
  std::vector<std::string> rest(std::size_t from) const;
};

// Commands, by group. Each returns the exit code.
int hosts_list(Cli& cli);
int hosts_tree(Cli& cli);
int hosts_approve(Cli& cli);
int stats(Cli& cli);
int package_create(Cli& cli);
int package_list(Cli& cli);
int package_show(Cli& cli);
int job_create(Cli& cli);
int job_list(Cli& cli);
int job_show(Cli& cli);
int job_cancel(Cli& cli);
int job_retry(Cli& cli);
int job_complete_now(Cli& cli);
int transfer_cmd(Cli& cli);
int group_cmd(Cli& cli);
int idgroup_cmd(Cli& cli);
int inventory_cmd(Cli& cli);
int collect_cmd(Cli& cli);
int enrol_token_cmd(Cli& cli);
int enrolment_cmd(Cli& cli);
int user_cmd(Cli& cli);
int keys_cmd(Cli& cli);
/// Writes `text` to `file` readable by its owner only / by everyone (keys, certificates).
void write_private(const std::filesystem::path& file, const std::string& text);
void write_public(const std::filesystem::path& file, const std::string& text);
/// The whole of a small file; throws UsageError naming it when it cannot be read.
std::string read_text_file(const std::filesystem::path& file);
int enrol_bundle_cmd(Cli& cli);
int events_cmd(Cli& cli);
int audit_cmd(Cli& cli);
int cluster_cmd(Cli& cli);
// content.cpp
int content_verify(Cli& cli);

}  // namespace distribctl
