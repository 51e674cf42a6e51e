// Remote collection on the agent: what may be sent and sending it.
#include "services/agent/collection.h"

#include <fnmatch.h>
#include <glob.h>

namespace distrib::agent {

auto FileCollector::collect_allowed(const stdfs::path& canonical) const -> bool {
  const auto text = canonical.string();
  for (const auto& a : ctx_.settings.collect_allow) {
    if (a.find_first_of("*?[") != std::string::npos) {
      if (::fnmatch(a.c_str(), text.c_str(), FNM_PATHNAME) == 0) return true;
      continue;
    }
    std::error_code ec;
    auto base = stdfs::weakly_canonical(a, ec).string();
    if (ec) continue;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    if (text == base || text.starts_with(base == "/" ? base : base + "/")) return true;
  }
  return false;
}

void FileCollector::collect_files(const bj::object& item, std::int64_t entry_id, std::int32_t attempt) {
  const auto job_id = json::get_int(item, "job_id");
  auto it = item.find("collect");
  if (it == item.end() || !it->value().is_object())
    throw Error(ErrorKind::invalid_argument, "collect-files work arrived without the paths to collect");
  const auto spec = json::collect_from_json(it->value().as_object());
  std::string allow_list;
  for (const auto& a : ctx_.settings.collect_allow) allow_list += (allow_list.empty() ? "" : ", ") + a;
  if (ctx_.settings.collect_allow.empty())
    throw Error(ErrorKind::forbidden,
                "this agent collects no files: its configuration allows none (--collect-allow DIR)");
  // Everything is checked before anything is sent: a refused path fails the entry whole.
  std::vector<std::pair<std::string, std::uint64_t>> files;
  std::set<std::string> seen;
  std::vector<std::string> problems, unmatched;
  std::uint64_t total = 0;
  auto consider = [&](const stdfs::path& p) {
    std::error_code ec;
    const auto canon = stdfs::canonical(p, ec);
    if (ec) return problems.push_back(p.string() + ": " + ec.message());
    if (!collect_allowed(canon))
      return problems.push_back(p.string() + " is outside this agent's collection allowlist (" + allow_list +
                                ")");
    if (!stdfs::is_regular_file(canon, ec) || !seen.insert(canon.string()).second) return;
    const auto size = stdfs::file_size(canon, ec);
    if (ec) return problems.push_back(canon.string() + ": " + ec.message());
    if (size > spec.max_file_bytes)
      return problems.push_back(canon.string() + " is " + format_byte_size(size) +
                                ", over the per-file limit of " + format_byte_size(spec.max_file_bytes));
    total += size;
    files.emplace_back(canon.string(), size);
  };
  for (const auto& pattern : spec.paths) {
    glob_t g{};
    const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) unmatched.push_back(pattern);
    for (std::size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) {
      const stdfs::path match = g.gl_pathv[i];
      std::error_code ec;
      if (stdfs::is_directory(match, ec)) {
        const auto canon = stdfs::canonical(match, ec);
        if (!ec && !collect_allowed(canon)) {
          problems.push_back(match.string() + " is outside this agent's collection allowlist (" + allow_list +
                             ")");
          continue;
        }
        for (auto d = stdfs::recursive_directory_iterator(
                 match, stdfs::directory_options::skip_permission_denied, ec);
             !ec && d != stdfs::recursive_directory_iterator(); d.increment(ec))
          if (d->is_regular_file(ec)) consider(d->path());
      } else {
        consider(match);
      }
    }
    ::globfree(&g);
  }
  if (total > spec.max_total_bytes)
    problems.push_back("the files add up to " + format_byte_size(total) + ", over the per-host limit of " +
                       format_byte_size(spec.max_total_bytes));
  if (!problems.empty()) {
    std::string all;
    for (const auto& x : problems) all += (all.empty() ? "" : "; ") + x;
    throw Error(ErrorKind::forbidden, "nothing collected: " + all);
  }
  if (files.empty()) {
    std::string all;
    for (const auto& x : unmatched) all += (all.empty() ? "" : ", ") + x;
    throw Error(ErrorKind::not_found, "nothing collected: no file matches " + all);
  }
  link_.report(entry_id, attempt, EntryState::transferring,
               std::to_string(files.size()) + " file(s) to send");
  std::uint64_t sent = 0;
  for (const auto& [path, size] : files) {
    const auto data = fs::read_file(path);
    if (data.size() > spec.max_file_bytes)
      throw Error(ErrorKind::forbidden, "nothing more collected: " + path + " grew to " +
                                            format_byte_size(data.size()) + ", over the per-file limit of " +
                                            format_byte_size(spec.max_file_bytes));
    auto res =
        ctx_.http->request("POST",
                           "/v1/agent/collect?host_id=" + ctx_.host_id + "&job_id=" + std::to_string(job_id) +
                               "&path=" + url_encode(path) + "&sha256=" + sha256_hex(data),
                           data, "application/octet-stream");
    if (res.status == 400 || res.status == 403 || res.status == 422)
      throw Error(ErrorKind::invalid_argument, json::error_message(res.body, res.status));
    require_ok(res, "upload of " + path);
    sent += data.size();
  }
  link_.report(
      entry_id, attempt, EntryState::succeeded,
      std::to_string(files.size()) + " file(s), " + format_byte_size(sent) + " collected" +
          (unmatched.empty() ? "" : " (no match for " + std::to_string(unmatched.size()) + " pattern(s))"));
}

}  // namespace distrib::agent
