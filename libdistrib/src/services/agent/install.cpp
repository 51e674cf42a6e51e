// Installing: what is installed, the install directory, the staged swap and the install command.
#include "services/agent/install.h"

#include "services/agent/orders.h"

namespace distrib::agent {

auto Installer::install_target(const Manifest& m) const -> stdfs::path {
  if (!m.install.directory.empty()) return m.install.directory;
  const auto root =
      ctx_.settings.packages_dir.empty() ? ctx_.settings.state_dir / "packages" : ctx_.settings.packages_dir;
  return root / m.name / m.version;
}

namespace {

// Swaps the contents of `target` for the payload, inside it: a mount point cannot be renamed
// (EBUSY), and every move here stays on its file system. Not atomic like the swap of directories,
// but put back as it was when a move fails.
void replace_contents(const stdfs::path& archive, const stdfs::path& target, std::int64_t entry_id) {
  const auto staging = target / (".distrib-staging-" + std::to_string(entry_id));
  const auto old = target / (".distrib-old-" + std::to_string(entry_id));
  std::error_code ec;
  stdfs::remove_all(staging, ec);
  stdfs::remove_all(old, ec);
  extract_payload(archive, staging);
  stdfs::create_directory(old);
  std::vector<stdfs::path> moved_out, moved_in;
  try {
    for (const auto& e : stdfs::directory_iterator(target)) {
      if (e.path() == staging || e.path() == old) continue;
      stdfs::rename(e.path(), old / e.path().filename());
      moved_out.push_back(e.path().filename());
    }
    for (const auto& e : stdfs::directory_iterator(staging)) {
      stdfs::rename(e.path(), target / e.path().filename());
      moved_in.push_back(e.path().filename());
    }
  } catch (...) {
    for (const auto& name : moved_in) stdfs::remove_all(target / name, ec);
    for (const auto& name : moved_out) stdfs::rename(old / name, target / name, ec);
    stdfs::remove_all(staging, ec);
    stdfs::remove_all(old, ec);
    throw;
  }
  stdfs::remove_all(staging, ec);
  stdfs::remove_all(old, ec);
}

}  // namespace

// Puts the verified payload into place: extract beside the target, then swap directories; a
// target that is a mount point has its contents swapped instead.
void Installer::place_payload(const stdfs::path& archive, const stdfs::path& target, std::int64_t entry_id) {
  std::error_code ec;
  stdfs::create_directories(target.parent_path(), ec);
  auto staging = target;
  staging += ".distrib-staging-" + std::to_string(entry_id);
  auto old = target;
  old += ".distrib-old-" + std::to_string(entry_id);
  stdfs::remove_all(staging, ec);
  extract_payload(archive, staging);
  const bool had = stdfs::exists(target, ec);
  if (had) {
    stdfs::rename(target, old, ec);
    if (ec == std::errc::device_or_resource_busy || ec == std::errc::cross_device_link) {
      spdlog::info("entry {}: {} is a mount point; replacing its contents in place", entry_id,
                   target.string());
      stdfs::remove_all(staging, ec);
      return replace_contents(archive, target, entry_id);
    }
    if (ec) {
      const auto why = ec;
      stdfs::remove_all(staging, ec);
      throw stdfs::filesystem_error("cannot move the installed version aside", target, old, why);
    }
  }
  try {
    stdfs::rename(staging, target);
  } catch (...) {
    stdfs::remove_all(staging, ec);
    if (had) stdfs::rename(old, target, ec);
    throw;
  }
  stdfs::remove_all(old, ec);
}

// Runs one of the package's commands (install, check, uninstall) in `cwd` with the package's
// environment; during the agent's stop phase it gets what is left of the stop budget at most.
CommandResult Installer::run_package_command(const std::string& command, const stdfs::path& cwd,
                                             const std::string& name, const std::string& version,
                                             const stdfs::path& directory, std::int64_t entry_id,
                                             std::uint32_t timeout_seconds) {
  auto timeout = std::chrono::seconds(timeout_seconds);
  if (ctx_.in_stop_phase) {
    const auto left = std::chrono::duration_cast<std::chrono::seconds>(ctx_.stop_deadline -
                                                                       std::chrono::steady_clock::now());
    timeout = std::max(std::chrono::seconds(1), std::min(timeout, left));
  }
  std::error_code ec;
  return run_command(command, stdfs::is_directory(cwd, ec) ? cwd : ctx_.settings.state_dir,
                     {{"DISTRIB_PACKAGE_NAME", name},
                      {"DISTRIB_PACKAGE_VERSION", version},
                      {"DISTRIB_INSTALL_DIR", directory.string()},
                      {"DISTRIB_ENTRY_ID", std::to_string(entry_id)}},
                     timeout, ctx_.settings.output_tail_bytes);
}

namespace {
std::string command_failure(const char* what, const CommandResult& r, std::uint32_t timeout_seconds) {
  return r.timed_out ? std::string(what) + " command timed out after " + std::to_string(timeout_seconds) +
                           " s (killed)"
                     : std::string(what) + " command exited with " + std::to_string(r.exit_code);
}
bool flag(const bj::object& item, const char* name) {
  const auto it = item.find(name);
  return it != item.end() && it->value().is_bool() && it->value().as_bool();
}
}  // namespace

void Installer::install(const bj::object& item, std::int64_t entry_id, std::int32_t attempt,
                        const security::Order* order) {
  const auto& pkg = item.at("package").as_object();
  const auto name = json::get_string(pkg, "name");
  const auto version = json::get_string(pkg, "version");
  auto digest = json::get_string(pkg, "payload_digest", false);
  if (order && !order->payload.empty()) digest = order->payload;  // signed: it decides
  const bool force = flag(item, "force");
  auto installed = InstalledSet::load(ctx_.settings.state_dir);
  // Installed already: per package, and only while its files are as they were installed.
  if (const auto* p = installed.find(name, version); p && !force) {
    if (digest.empty() || p->payload_digest.empty() || p->payload_digest == digest) {
      const auto problem = check_installed(*p);
      if (problem.empty()) {
        link_.report(entry_id, attempt, EntryState::succeeded,
                     "already installed in " + p->directory + "; files intact, nothing to do");
        return;
      }
      spdlog::warn("entry {}: {} {} is installed but {}; installing it again", entry_id, name, version,
                   problem);
    }
  }
  Manifest m = manifest_from_json(bj::serialize(
      link_.call("GET", "/v1/content/manifests/" + url_encode(name) + "/" + url_encode(version), nullptr)));
  validate_manifest(m);
  if (order) OrderCheck::check_manifest(*order, m);
  publishers_.check(m);  // before a byte of the payload is fetched (or a command run)
  if (!digest.empty() && m.payload_digest != digest)
    throw Error(ErrorKind::integrity, "manifest payload digest does not match the job's");
  const auto target = install_target(m);

  // Detection: the host may satisfy the package already, whoever installed it.
  if (!m.install.check_command.empty() && !force) {
    const auto r = run_package_command(m.install.check_command, target, m.name, m.version, target, entry_id,
                                       m.install.timeout_seconds);
    if (r.timed_out || r.exit_code == 0) {
      link_.report(entry_id, attempt, r.timed_out ? EntryState::failed : EntryState::not_applicable,
                   r.timed_out ? command_failure("check", r, m.install.timeout_seconds)
                               : "check command exited 0: already satisfied; nothing fetched or installed",
                   r.exit_code, r.output_tail);
      return;
    }
    spdlog::info("entry {}: check command exited {}: installing {} {}", entry_id, r.exit_code, m.name,
                 m.version);
  }

  link_.report(entry_id, attempt, EntryState::transferring);
  cache_.trim(installed, &m);  // room for this package first
  Transfer t;
  t.entry_id = entry_id;
  t.attempt = attempt;
  if (auto sp = item.find("split"); sp != item.end()) t.offered = json::split_from_json(sp->value());
  try {
    if (!fetcher_.transfer(m, t)) return;  // stopping: resumes from the chunks already held
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::integrity) throw;
    // Failed on bad chunks: the count goes with the failure.
    link_.report(entry_id, attempt, EntryState::failed, e.what(), {}, {}, t.progress);
    return;
  }
  const auto fetched = t.fetched_chunks;
  const auto work = ctx_.settings.state_dir / "work";
  stdfs::create_directories(work);
  const auto archive = work / (std::to_string(entry_id) + ".tar");
  try {
    assemble_payload(m, *ctx_.chunks, archive);
  } catch (const Error& e) {
    // A chunk that went bad on our disk is dropped so the next attempt fetches it again.
    for (const auto& c : m.chunks) {
      try {
        ctx_.chunks->read_verified(c.digest, kMaxChunkSize);
      } catch (const Error&) {
        ctx_.chunks->remove(c.digest);
      }
    }
    throw;
  }
  link_.report(entry_id, attempt, EntryState::transferred,
               std::to_string(fetched) + " of " + std::to_string(m.chunks.size()) + " chunk(s) fetched" +
                   (t.progress.bad_chunks ? ", " + std::to_string(t.progress.bad_chunks) +
                                                " failed verification and were fetched again"
                                          : ""),
               {}, {}, t.progress);
  link_.report(entry_id, attempt, EntryState::installing);

  std::error_code ec;
  place_payload(archive, target, entry_id);
  stdfs::remove(archive, ec);

  std::optional<int> exit_code;
  std::string tail;
  if (!m.install.command.empty()) {
    const auto r = run_package_command(m.install.command, target, m.name, m.version, target, entry_id,
                                       m.install.timeout_seconds);
    exit_code = r.exit_code;
    tail = r.output_tail;
    if (r.timed_out || r.exit_code != 0) {
      link_.report(entry_id, attempt, EntryState::failed,
                   command_failure("install", r, m.install.timeout_seconds), exit_code, tail);
      return;
    }
  }
  installed.put(record_install(m, target));
  installed.save();
  cache_.trim(installed);
  inventory_.poke_inventory();  // the software inventory changed
  spdlog::info("entry {}: {} {} installed in {}{}", entry_id, m.name, m.version, target.string(),
               force ? " (forced)" : "");
  link_.report(entry_id, attempt, EntryState::succeeded,
               std::string(force ? "installed again (forced) in " : "installed in ") + target.string(),
               exit_code, tail);
}

void Installer::uninstall(const bj::object& item, std::int64_t entry_id, std::int32_t attempt) {
  const auto& pkg = item.at("package").as_object();
  const auto name = json::get_string(pkg, "name");
  const auto version = json::get_string(pkg, "version");
  auto installed = InstalledSet::load(ctx_.settings.state_dir);
  const auto* found = installed.find(name, version);
  if (!found) {
    link_.report(entry_id, attempt, EntryState::succeeded, "not installed here; nothing to do");
    return;
  }
  const auto p = *found;
  const stdfs::path dir = p.directory;
  // Never a file system's root or a top-level directory, whatever a manifest said.
  if (dir.empty() || !dir.is_absolute() || std::distance(dir.begin(), dir.end()) < 3)
    throw Error(ErrorKind::invalid_argument, "refusing to remove \"" + p.directory +
                                                 "\": an install directory is at least two levels deep");
  std::optional<int> exit_code;
  std::string tail;
  if (!p.uninstall_command.empty()) {
    const auto r =
        run_package_command(p.uninstall_command, dir, name, version, dir, entry_id, p.timeout_seconds);
    exit_code = r.exit_code;
    tail = r.output_tail;
    if (r.timed_out || r.exit_code != 0) {
      link_.report(entry_id, attempt, EntryState::failed,
                   command_failure("uninstall", r, p.timeout_seconds) + "; nothing removed", exit_code, tail);
      return;
    }
  }
  std::error_code ec;
  if (stdfs::exists(dir, ec)) {
    // The contents first: a mount point itself cannot go, and stays empty.
    for (const auto& e : stdfs::directory_iterator(dir)) stdfs::remove_all(e.path());
    stdfs::remove(dir, ec);
  }
  installed.remove(name, version);
  installed.save();
  cache_.trim(installed);
  inventory_.poke_inventory();
  spdlog::info("entry {}: {} {} uninstalled from {}", entry_id, name, version, p.directory);
  link_.report(entry_id, attempt, EntryState::succeeded, "uninstalled: " + p.directory + " removed",
               exit_code, tail);
}

}  // namespace distrib::agent
