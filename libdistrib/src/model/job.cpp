#include <distrib/error.h>
#include <distrib/model/job.h>
#include <distrib/model/units.h>

#include <fnmatch.h>

#include <algorithm>
#include <cstdio>

namespace distrib {

std::string_view to_string(JobType type) noexcept {
  switch (type) {
    case JobType::install:
      return "install";
    case JobType::transfer_to_relay:
      return "transfer-to-relay";
    case JobType::delete_package:
      return "delete-package";
    case JobType::get_system_info:
      return "get-system-info";
    case JobType::get_software_info:
      return "get-software-info";
    case JobType::collect_files:
      return "collect-files";
    case JobType::uninstall:
      return "uninstall";
  }
  return "?";
}

JobType parse_job_type(std::string_view text) {
  for (auto t :
       {JobType::install, JobType::transfer_to_relay, JobType::delete_package, JobType::get_system_info,
        JobType::get_software_info, JobType::collect_files, JobType::uninstall})
    if (text == to_string(t)) return t;
  throw Error(ErrorKind::invalid_argument,
              "unknown job type \"" + std::string(text) +
                  "\" (expected install, uninstall, transfer-to-relay, delete-package, get-system-info, "
                  "get-software-info or collect-files)");
}

bool targets_agents(JobType type) noexcept {
  return type != JobType::transfer_to_relay && type != JobType::delete_package;
}

bool needs_package(JobType type) noexcept {
  return type == JobType::install || type == JobType::transfer_to_relay || type == JobType::delete_package ||
         type == JobType::uninstall;
}

std::string order_type(const Job& job) {
  return std::string(to_string(job.type)) + (job.force ? "+force" : "");
}

bool collect_requested(const CollectSpec& spec, const std::string& path) {
  for (const auto& pattern : spec.paths) {
    // The path itself, then each directory above it.
    for (std::string p = path; !p.empty();) {
      if (::fnmatch(pattern.c_str(), p.c_str(), FNM_PATHNAME) == 0) return true;
      const auto slash = p.rfind('/');
      if (slash == 0 || slash == std::string::npos) break;
      p.resize(slash);
    }
  }
  return false;
}

void validate_collect(const CollectSpec& spec) {
  auto bad = [](const std::string& why) {
    throw Error(ErrorKind::invalid_argument, "collect-files: " + why + "; no job was created");
  };
  if (spec.paths.empty()) bad("name at least one path or glob pattern (--path /var/log/*.log)");
  if (spec.paths.size() > 256) bad("at most 256 paths per job");
  for (const auto& p : spec.paths) {
    if (p.empty() || p.front() != '/') bad("path \"" + p + "\" is not absolute");
    if (p.size() > 4096) bad("a path is longer than 4096 characters");
    if (p == "/.." || p.find("/../") != std::string::npos || p.ends_with("/.."))
      bad("path \"" + p + "\" contains \"..\"");
    if (p.find('\0') != std::string::npos || p.find('\n') != std::string::npos)
      bad("a path contains a control character");
  }
  if (spec.max_file_bytes == 0 || spec.max_file_bytes > kMaxCollectFile)
    bad("the per-file limit must be between 1 byte and " + format_byte_size(kMaxCollectFile));
  if (spec.max_total_bytes == 0 || spec.max_total_bytes > kMaxCollectTotal)
    bad("the per-host limit must be between 1 byte and " + format_byte_size(kMaxCollectTotal));
  if (spec.max_file_bytes > spec.max_total_bytes) bad("the per-file limit is above the per-host limit");
}

std::string_view to_string(EntryState state) noexcept {
  switch (state) {
    case EntryState::waiting:
      return "waiting";
    case EntryState::transferring:
      return "transferring";
    case EntryState::transferred:
      return "transferred";
    case EntryState::installing:
      return "installing";
    case EntryState::suspended:
      return "suspended";
    case EntryState::succeeded:
      return "succeeded";
    case EntryState::failed:
      return "failed";
    case EntryState::cancelled:
      return "cancelled";
    case EntryState::expired:
      return "expired";
    case EntryState::not_applicable:
      return "not_applicable";
  }
  return "?";
}

EntryState parse_entry_state(std::string_view text) {
  for (auto s : kAllEntryStates)
    if (to_string(s) == text) return s;
  std::string known;
  for (auto s : kAllEntryStates) {
    if (!known.empty()) known += ", ";
    known += to_string(s);
  }
  throw Error(ErrorKind::invalid_argument,
              "unknown entry state \"" + std::string(text) + "\" (known: " + known + ")");
}

bool is_final(EntryState state) noexcept {
  switch (state) {
    case EntryState::succeeded:
    case EntryState::failed:
    case EntryState::cancelled:
    case EntryState::expired:
    case EntryState::not_applicable:
      return true;
    default:
      return false;
  }
}

bool can_transition(EntryState from, EntryState to) noexcept {
  using S = EntryState;
  if (from == to || is_final(from)) return false;
  switch (from) {
    case S::waiting:
      return to == S::transferring || to == S::succeeded || to == S::failed || to == S::cancelled ||
             to == S::expired || to == S::suspended || to == S::not_applicable;
    case S::transferring:
      return to == S::transferred || to == S::waiting || to == S::suspended || to == S::succeeded ||
             to == S::failed || to == S::cancelled || to == S::expired || to == S::not_applicable;
    case S::transferred:
      return to == S::installing || to == S::succeeded || to == S::failed || to == S::cancelled ||
             to == S::expired;
    case S::installing:
      // An install under way is never interrupted by the manager: it ends on the agent.
      return to == S::succeeded || to == S::failed;
    case S::suspended:
      return to == S::transferring || to == S::waiting || to == S::cancelled || to == S::expired;
    default:
      return false;
  }
}

bool can_reach(EntryState from, EntryState to) noexcept {
  // Breadth-first over the (small) transition graph.
  bool seen[std::size(kAllEntryStates)] = {};
  EntryState queue[std::size(kAllEntryStates)];
  std::size_t head = 0, tail = 0;
  queue[tail++] = from;
  seen[static_cast<int>(from)] = true;
  while (head < tail) {
    const auto s = queue[head++];
    for (auto next : kAllEntryStates) {
      if (seen[static_cast<int>(next)] || !can_transition(s, next)) continue;
      if (next == to) return true;
      seen[static_cast<int>(next)] = true;
      queue[tail++] = next;
    }
  }
  return false;
}

EntryState transition(EntryState from, EntryState to) {
  if (!can_transition(from, to))
    throw Error(ErrorKind::conflict,
                "entry cannot go from " + std::string(to_string(from)) + " to " + std::string(to_string(to)));
  return to;
}

JobProgress summarize(const std::vector<JobEntry>& entries) {
  JobProgress p;
  for (const auto& e : entries) {
    ++p.total;
    ++p.by_state[static_cast<int>(e.state)];
    if (is_final(e.state)) ++p.final_count;
  }
  return p;
}

std::string_view to_string(InstallTiming timing) noexcept {
  switch (timing) {
    case InstallTiming::immediate:
      return "immediate";
    case InstallTiming::at_start:
      return "at-start";
    case InstallTiming::at_stop:
      return "at-stop";
    case InstallTiming::window:
      return "window";
  }
  return "?";
}

InstallTiming parse_install_timing(std::string_view text) {
  for (auto t :
       {InstallTiming::immediate, InstallTiming::at_start, InstallTiming::at_stop, InstallTiming::window})
    if (to_string(t) == text) return t;
  throw Error(ErrorKind::invalid_argument, "unknown install timing \"" + std::string(text) +
                                               "\" (expected immediate, at-start, at-stop or window)");
}

bool DailyWindow::contains(int minute) const noexcept {
  if (start_minute <= end_minute) return minute >= start_minute && minute < end_minute;
  return minute >= start_minute || minute < end_minute;  // wraps past midnight
}

DailyWindow parse_daily_window(std::string_view text) {
  auto bad = [&] {
    return Error(ErrorKind::invalid_argument,
                 "window \"" + std::string(text) + "\" is not HH:MM-HH:MM (for example 22:00-05:30)");
  };
  int h1 = 0, m1 = 0, h2 = 0, m2 = 0;
  char tail = 0;
  const std::string t(text);
  if (std::sscanf(t.c_str(), "%2d:%2d-%2d:%2d%c", &h1, &m1, &h2, &m2, &tail) != 4) throw bad();
  if (h1 < 0 || h1 > 24 || h2 < 0 || h2 > 24 || m1 < 0 || m1 > 59 || m2 < 0 || m2 > 59) throw bad();
  DailyWindow w{h1 * 60 + m1, h2 * 60 + m2};
  if (w.start_minute > 1440 || w.end_minute > 1440) throw bad();
  if (w.start_minute == w.end_minute)
    throw Error(ErrorKind::invalid_argument, "window \"" + t + "\" is empty (start equals end)");
  return w;
}

std::string to_string(const DailyWindow& w) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%02d:%02d-%02d:%02d", w.start_minute / 60, w.start_minute % 60,
                w.end_minute / 60, w.end_minute % 60);
  return buf;
}

void validate_schedule(const JobSchedule& s, std::int64_t now) {
  if (s.start_at < 0 || s.expires_at < 0)
    throw Error(ErrorKind::invalid_argument, "start and expiry times must be unix seconds");
  if (s.expires_at && s.start_at && s.start_at >= s.expires_at)
    throw Error(ErrorKind::invalid_argument, "the start time (" + std::to_string(s.start_at) +
                                                 ") is not before the expiry (" +
                                                 std::to_string(s.expires_at) + "): no entry could ever run");
  if (s.expires_at && s.expires_at <= now)
    throw Error(ErrorKind::invalid_argument,
                "the expiry (" + std::to_string(s.expires_at) + ") is already past");
  if (s.max_retries < 0 || s.max_retries > 100)
    throw Error(ErrorKind::invalid_argument, "retries must be between 0 and 100");
  if (s.retry_backoff_seconds < 1 || s.retry_backoff_seconds > 86400)
    throw Error(ErrorKind::invalid_argument, "retry backoff must be between 1 s and one day");
  if (s.timing == InstallTiming::window && s.window.start_minute == s.window.end_minute)
    throw Error(ErrorKind::invalid_argument, "install timing \"window\" needs a window (HH:MM-HH:MM)");
}

std::int64_t retry_delay(const JobSchedule& s, int next_attempt) noexcept {
  std::int64_t d = std::max(1, s.retry_backoff_seconds);
  for (int i = 2; i < next_attempt && d < 3600; ++i) d *= 2;
  return std::min<std::int64_t>(d, 3600);
}

std::vector<int> parse_waves(std::string_view text) {
  std::vector<int> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    std::string part(text.substr(start, end - start));
    if (!part.empty() && part.back() == '%') part.pop_back();
    try {
      std::size_t used = 0;
      const int v = std::stoi(part, &used);
      if (used != part.size()) throw std::invalid_argument(part);
      out.push_back(v);
    } catch (const std::exception&) {
      throw Error(
          ErrorKind::invalid_argument,
          "waves \"" + std::string(text) + "\" must be percentages separated by commas, e.g. 5,25,100");
    }
    start = end + 1;
  }
  Rollout r;
  r.waves = out;
  validate_rollout(r);
  return out;
}

void validate_rollout(const Rollout& r) {
  if (r.waves.empty()) return;
  int prev = 0;
  for (int w : r.waves) {
    if (w <= prev || w > 100)
      throw Error(ErrorKind::invalid_argument,
                  "waves must be increasing percentages between 1 and 100 (got " + std::to_string(w) + ")");
    prev = w;
  }
  if (r.waves.back() != 100)
    throw Error(ErrorKind::invalid_argument, "the last wave must be 100 (every host)");
  if (r.waves.size() > 20) throw Error(ErrorKind::invalid_argument, "at most 20 waves");
  if (r.success_threshold < 0 || r.success_threshold > 100 || r.error_threshold < 0 ||
      r.error_threshold > 100)
    throw Error(ErrorKind::invalid_argument, "thresholds are percentages between 0 and 100");
}

std::vector<int> assign_waves(std::size_t n, const std::vector<int>& waves) {
  std::vector<int> out(n, 1);
  if (waves.empty()) return out;
  std::size_t from = 0;
  for (std::size_t w = 0; w < waves.size(); ++w) {
    // Hosts up to the cumulative share, rounded up; at least one more per wave while any remain.
    std::size_t upto = (n * static_cast<std::size_t>(waves[w]) + 99) / 100;
    if (upto <= from && from < n) upto = from + 1;
    upto = std::min(upto, n);
    for (std::size_t i = from; i < upto; ++i) out[i] = static_cast<int>(w + 1);
    from = upto;
  }
  return out;
}

std::string_view to_string(RolloutState s) noexcept {
  switch (s) {
    case RolloutState::none:
      return "none";
    case RolloutState::running:
      return "running";
    case RolloutState::stopped:
      return "stopped";
    case RolloutState::completed:
      return "completed";
  }
  return "?";
}

RolloutState parse_rollout_state(std::string_view text) {
  for (auto s : {RolloutState::none, RolloutState::running, RolloutState::stopped, RolloutState::completed})
    if (to_string(s) == text) return s;
  if (text.empty()) return RolloutState::none;
  throw Error(ErrorKind::invalid_argument, "unknown rollout state \"" + std::string(text) + "\"");
}

RolloutVerdict evaluate_rollout(const Rollout& r, int current, const std::vector<WaveCounts>& waves) {
  RolloutVerdict v;
  std::int64_t released = 0, failed = 0;
  for (const auto& w : waves)
    if (w.wave >= 1 && w.wave <= current) {
      released += w.total;
      failed += w.failed;
    }
  if (released > 0 && failed * 100 > static_cast<std::int64_t>(r.error_threshold) * released) {
    v.action = RolloutVerdict::Action::stop;
    v.reason = "error threshold exceeded: " + std::to_string(failed) + " of " + std::to_string(released) +
               " released entries failed (limit " + std::to_string(r.error_threshold) + " %)";
    return v;
  }
  if (current >= static_cast<int>(r.waves.size())) return v;  // every wave is out
  const WaveCounts* cur = nullptr;
  for (const auto& w : waves)
    if (w.wave == current) cur = &w;
  if (!cur || cur->total == 0) {
    v.action = RolloutVerdict::Action::advance;  // an empty wave (few hosts): move on
    return v;
  }
  if (cur->succeeded * 100 >= static_cast<std::int64_t>(r.success_threshold) * cur->total) {
    v.action = RolloutVerdict::Action::advance;
    return v;
  }
  if (cur->final_count == cur->total) {
    v.action = RolloutVerdict::Action::stop;
    v.reason = "wave " + std::to_string(current) + " ended with " + std::to_string(cur->succeeded) + " of " +
               std::to_string(cur->total) + " succeeded, below the " + std::to_string(r.success_threshold) +
               " % needed to go on";
  }
  return v;
}

std::string_view wave_state(const Job& job, const WaveCounts& wave) noexcept {
  if (wave.wave <= job.current_wave) return wave.final_count == wave.total ? "done" : "running";
  return job.rollout_state == RolloutState::stopped ? "stopped" : "held";
}

SplitSpec parse_split(std::string_view text) {
  SplitSpec out;
  if (text.empty() || text == "none") return out;
  const auto slash = text.find('/');
  if (slash == std::string_view::npos)
    throw Error(ErrorKind::invalid_argument,
                "split \"" + std::string(text) + "\" must be SIZE/INTERVAL, for example 1MiB/60s");
  const auto size_text = text.substr(0, slash), interval_text = text.substr(slash + 1);
  try {
    out.size = parse_byte_size(size_text);
  } catch (const Error& e) {
    throw Error(ErrorKind::invalid_argument,
                "split \"" + std::string(text) + "\": segment size: " + e.what());
  }
  std::int64_t interval = 0;
  try {
    interval = parse_duration_seconds(interval_text);
  } catch (const Error& e) {
    throw Error(ErrorKind::invalid_argument, "split \"" + std::string(text) + "\": interval: " + e.what());
  }
  if (out.size == 0)
    throw Error(ErrorKind::invalid_argument,
                "split \"" + std::string(text) + "\": the segment size must be above 0");
  if (interval <= 0 || interval > kMaxSegmentInterval)
    throw Error(ErrorKind::invalid_argument,
                "split \"" + std::string(text) + "\": the interval must be between 1 s and 24 h");
  out.interval_seconds = static_cast<int>(interval);
  validate_split(out);
  return out;
}

void validate_split(const SplitSpec& split) {
  if (!split.enabled()) return;
  if (split.size > kMaxSegmentSize)
    throw Error(ErrorKind::invalid_argument,
                "split segment size " + format_byte_size(split.size) + " is above the 2 GiB limit");
  if (split.interval_seconds <= 0 || split.interval_seconds > kMaxSegmentInterval)
    throw Error(ErrorKind::invalid_argument, "split interval " + std::to_string(split.interval_seconds) +
                                                 " s must be between 1 s and 24 h");
}

std::string to_string(const SplitSpec& split) {
  if (!split.enabled()) return "none";
  return format_byte_size(split.size) + "/" + std::to_string(split.interval_seconds) + "s";
}

SplitSpec hop_split(const SplitSpec& offered, const SplitSpec& receiver) noexcept {
  if (!receiver.enabled()) return offered;
  if (!offered.enabled()) return receiver;
  if (receiver.size <= offered.size) return receiver;  // equal sizes: the receiver's interval
  return offered;
}

std::vector<std::size_t> plan_segments(const std::vector<std::uint64_t>& chunk_sizes, std::uint64_t size,
                                       std::size_t from) {
  std::vector<std::size_t> ends;
  std::size_t i = from;
  while (i < chunk_sizes.size()) {
    std::uint64_t bytes = chunk_sizes[i++];
    while (i < chunk_sizes.size() && (size == 0 || bytes + chunk_sizes[i] <= size)) bytes += chunk_sizes[i++];
    ends.push_back(i);
  }
  return ends;
}

}  // namespace distrib
