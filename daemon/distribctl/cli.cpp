// distribctl's shared parts (cli.h): output helpers and the Cli's access to options and the manager.
#include "cli.h"

#include <filesystem>

#include <unistd.h>
#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>

namespace distribctl {

std::string env_or(const char* name, std::string fallback) {
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

void Table::print() const {
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

std::string ago(std::int64_t t) {
  if (t == 0) return "never";
  const auto d = std::max<std::int64_t>(0, static_cast<std::int64_t>(std::time(nullptr)) - t);
  if (d < 120) return fmt::format("{} s ago", d);
  if (d < 7200) return fmt::format("{} min ago", d / 60);
  if (d < 172800) return fmt::format("{} h ago", d / 3600);
  return fmt::format("{} days ago", d / 86400);
}

std::string str(const bj::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}

bool flag(const bj::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_bool() && it->value().as_bool();
}

std::int64_t num(const bj::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_int64() ? it->value().as_int64() : 0;
}

// What a job is about: its package, or the paths it collects.
std::string what_of(const Job& j) {
  if (needs_package(j.type)) return j.package_name + " " + j.package_version;
  if (j.type == JobType::collect_files) return one_line(join(j.collect.paths), 50);
  return "-";
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : sep) + x;
  return out;
}

std::string waves_text(const std::vector<int>& w) {
  std::string out;
  for (int x : w) out += (out.empty() ? "" : " → ") + std::to_string(x);
  return out;
}

std::string host_names(const bj::object& g) {
  std::string out;
  if (auto it = g.find("hosts"); it != g.end() && it->value().is_array())
    for (const auto& v : it->value().as_array()) {
      const auto& h = v.as_object();
      const auto n = str(h, "name");
      out += (out.empty() ? "" : ", ") + (n.empty() ? str(h, "host_id") : n);
    }
  return out;
}

std::int64_t parse_id(const std::string& s) {
  try {
    std::size_t used = 0;
    const auto id = std::stoll(s, &used);
    if (used == s.size() && id > 0) return id;
  } catch (const std::exception&) {
  }
  throw UsageError("\"" + s + "\" is not a job id");
}

std::string csv_cell(const std::string& v) {
  if (v.find_first_of(",\"\n\r") == std::string::npos) return v;
  std::string out = "\"";
  for (char ch : v) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

std::string event_time(std::int64_t at_ms) {
  return format_time(at_ms / 1000) + fmt::format(".{:03d}", static_cast<int>(at_ms % 1000));
}

std::string Cli::opt(const char* name, std::string fallback) const {
  return vm.count(name) ? vm[name].as<std::string>() : fallback;
}

void Cli::expect_args(std::size_t n, const char* usage) const {
  if (args.size() != n) throw UsageError(std::string("usage: distribctl ") + usage);
}

AdminClient Cli::client() const {
  AdminClientSettings s;
  s.http.base_url = opt("server", env_or("DISTRIB_SERVER", kDefaultServer));
  s.http.ca_file = opt("ca-file", env_or("DISTRIB_CA_FILE"));
  s.http.cert_file = opt("cert", env_or("DISTRIB_CERT_FILE"));
  s.http.key_file = opt("key", env_or("DISTRIB_KEY_FILE"));
  if (s.http.cert_file.empty() != s.http.key_file.empty())
    throw UsageError("a client certificate needs both --cert FILE and --key FILE");
  const auto token_file = opt("token-file", env_or("DISTRIB_TOKEN_FILE"));
  // On the manager's machine the CA is in its state directory next to the token; a user's
  // certificate directory (distribctl user certificate) holds it next to the certificate.
  const auto credentials = !token_file.empty() ? token_file : s.http.cert_file;
  if (s.http.ca_file.empty() && !credentials.empty()) {
    const auto dir = std::filesystem::path(credentials).parent_path();
    for (const auto* p : {"pki/ca.crt", "identity/ca.crt", "ca.crt"})
      if (std::error_code ec; std::filesystem::exists(dir / p, ec)) {
        s.http.ca_file = (dir / p).string();
        break;
      }
  }
  s.token = opt("token", env_or("DISTRIB_TOKEN"));
  if (s.token.empty() && s.http.cert_file.empty()) {
    const auto& file = token_file;
    if (file.empty())
      throw UsageError(
          "no credentials: pass --token-file FILE (the manager's STATE_DIR/admin.token or a user's token), "
          "set DISTRIB_TOKEN, or pass a user's --cert FILE --key FILE");
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

void Cli::emit(const std::string& text) const {
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

std::vector<std::string> Cli::rest(std::size_t from) const {
  return from < args.size() ? std::vector<std::string>(args.begin() + static_cast<long>(from), args.end())
                            : std::vector<std::string>{};
}

bj::object Cli::hosts_answer() const {
  return bj::parse(client().call("GET", "/v1/hosts")).as_object();
}

}  // namespace distribctl
