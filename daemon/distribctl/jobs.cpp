// distribctl: Jobs: job create (schedule, rollout, split), list, show (with --wait), cancel, retry,
// complete-now; transfer suspend|resume.
#include "cli.h"

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <thread>

namespace distribctl {

int job_create(Cli& cli) {
  if (cli.args.size() < 3)
    throw UsageError("usage: distribctl job create TYPE [NAME VERSION] DESTINATION... (see --help)");
  JobType type;
  try {
    type = parse_job_type(cli.args[2]);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  Job spec;
  spec.type = type;
  if (needs_package(type)) {
    if (cli.args.size() < 6)
      throw UsageError("usage: distribctl job create " + cli.args[2] + " NAME VERSION DESTINATION...");
    spec.package_name = cli.args[3];
    spec.package_version = cli.args[4];
    spec.destinations.assign(cli.args.begin() + 5, cli.args.end());
  } else {
    if (cli.args.size() < 4)
      throw UsageError("usage: distribctl job create " + cli.args[2] + " DESTINATION...");
    spec.destinations.assign(cli.args.begin() + 3, cli.args.end());
  }
  if (cli.vm.count("force") && type != JobType::install)
    throw UsageError("--force goes with install jobs (it installs again where the package is installed)");
  spec.force = cli.vm.count("force") > 0;
  if (type == JobType::collect_files) {
    if (cli.vm.count("path")) spec.collect.paths = cli.vm["path"].as<std::vector<std::string>>();
    try {
      if (cli.vm.count("max-file")) spec.collect.max_file_bytes = parse_byte_size(cli.opt("max-file"));
      if (cli.vm.count("max-total")) spec.collect.max_total_bytes = parse_byte_size(cli.opt("max-total"));
      validate_collect(spec.collect);
    } catch (const Error& e) {
      throw UsageError(e.what());
    }
  } else if (cli.vm.count("path") || cli.vm.count("max-file") || cli.vm.count("max-total")) {
    throw UsageError("--path, --max-file and --max-total go with collect-files jobs");
  }
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  auto& sc = spec.schedule;
  try {
    if (cli.vm.count("start")) sc.start_at = parse_time_spec(cli.opt("start"), now);
    if (cli.vm.count("expires")) sc.expires_at = parse_time_spec(cli.opt("expires"), now);
    if (cli.vm.count("timing")) sc.timing = parse_install_timing(cli.opt("timing"));
    if (cli.vm.count("window")) {
      sc.window = parse_daily_window(cli.opt("window"));
      if (!cli.vm.count("timing")) sc.timing = InstallTiming::window;
    }
    if (sc.timing == InstallTiming::window && !cli.vm.count("window"))
      throw UsageError("--timing window needs --window HH:MM-HH:MM");
    if (cli.vm.count("retries")) sc.max_retries = cli.vm["retries"].as<int>();
    if (cli.vm.count("retry-backoff"))
      sc.retry_backoff_seconds = static_cast<int>(parse_duration_seconds(cli.opt("retry-backoff")));
    sc.retry_installs = cli.vm.count("retry-installs") > 0;
    if (cli.vm.count("waves")) spec.rollout.waves = parse_waves(cli.opt("waves"));
    if (cli.vm.count("success-threshold"))
      spec.rollout.success_threshold = cli.vm["success-threshold"].as<int>();
    if (cli.vm.count("error-threshold")) spec.rollout.error_threshold = cli.vm["error-threshold"].as<int>();
    if (cli.vm.count("split")) spec.split = parse_split(cli.opt("split"));
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  auto job = cli.client().create_job(spec);
  if (cli.json) {
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

int job_complete_now(Cli& cli) {
  cli.expect_args(3, "job complete-now ID");
  const auto id = parse_id(cli.args[2]);
  const auto n = cli.client().complete_now(id);
  if (cli.json)
    print_json(bj::object{{"job_id", id}, {"entries", n}});
  else
    std::cout << fmt::format("job {}: split distribution ended; {} open entr{} receive the rest unsplit\n",
                             id, n, n == 1 ? "y" : "ies");
  return kOk;
}

int transfer_cmd(Cli& cli) {
  cli.expect_args(2, "transfer suspend|resume --job ID | --relay RELAY");
  const auto& verb = cli.args[1];
  if (verb != "suspend" && verb != "resume")
    throw UsageError("transfer takes suspend or resume, not \"" + verb + "\"");
  if (cli.vm.count("job") == cli.vm.count("relay"))
    throw UsageError("transfer " + verb + " needs --job ID or --relay RELAY");
  const std::int64_t job = cli.vm.count("job") ? parse_id(cli.opt("job")) : 0;
  const auto relay = cli.vm.count("relay") ? cli.opt("relay") : std::string();
  const bool suspend = verb == "suspend";
  const auto n = cli.client().suspend_transfers(job, relay, suspend);
  const auto scope = job ? "job " + std::to_string(job) : "relay " + relay;
  if (cli.json)
    print_json(bj::object{{suspend ? "suspended" : "resumed", n}, {"scope", scope}});
  else
    std::cout << fmt::format("{}: {} transfer{} {}\n", scope, n, n == 1 ? "" : "s",
                             suspend ? "suspended" : "resumed");
  return kOk;
}

int job_retry(Cli& cli) {
  cli.expect_args(3, "job retry ID");
  const auto n = cli.client().retry_job(parse_id(cli.args[2]));
  if (cli.json)
    print_json(bj::object{{"job_id", parse_id(cli.args[2])}, {"retried", n}});
  else
    std::cout << fmt::format("job {}: {} failed entr{} retried\n", cli.args[2], n, n == 1 ? "y" : "ies");
  return kOk;
}

int job_list(Cli& cli) {
  cli.expect_args(2, "job list [--limit N]");
  const int limit = cli.vm.count("limit") ? cli.vm["limit"].as<int>() : 50;
  auto c = cli.client();
  if (cli.json) {
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

int job_show(Cli& cli) {
  cli.expect_args(3, "job show ID [--wait [--timeout SECONDS]]");
  const auto id = parse_id(cli.args[2]);
  auto c = cli.client();
  auto details = c.show_job(id);
  int code = kOk;
  if (cli.vm.count("wait")) {
    const int timeout = cli.vm.count("timeout") ? cli.vm["timeout"].as<int>() : 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
    const bool tty = ::isatty(STDERR_FILENO);
    std::string last;
    while (true) {
      const auto line = progress_line(details.progress);
      if (!cli.json && line != last) {
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
    if (!cli.json && tty) std::fprintf(stderr, "\n");
    if (code == kOk &&
        details.progress.count(EntryState::succeeded) + details.progress.count(EntryState::not_applicable) !=
            details.progress.total)
      code = kJobFailed;
  }
  if (cli.json) {
    // The manager's answer as is: entries, schedule, rollout and waves.
    std::cout << c.call("GET", "/v1/jobs/" + std::to_string(id)) << "\n";
    return code;
  }
  const auto& j = details.job;
  std::cout << fmt::format("job {}: {} {} · created {} · {}/{} done{}\n", j.id, to_string(j.type), what_of(j),
                           format_time(j.created_at), details.progress.final_count, details.progress.total,
                           j.cancel_requested ? " · cancel requested" : "");
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
    for (auto& x : {std::to_string(e.attempt), e.exit_code ? std::to_string(*e.exit_code) : std::string("-"),
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

int job_cancel(Cli& cli) {
  cli.expect_args(3, "job cancel ID");
  const auto n = cli.client().cancel_job(parse_id(cli.args[2]));
  if (cli.json)
    print_json(bj::object{{"job_id", parse_id(cli.args[2])}, {"cancelled", n}});
  else
    std::cout << fmt::format("job {}: {} entr{} cancelled\n", cli.args[2], n, n == 1 ? "y" : "ies");
  return kOk;
}

}  // namespace distribctl
