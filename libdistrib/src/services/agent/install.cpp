// Installing: what is installed, the install directory, the staged swap and the install command.
#include "services/agent/install.h"

#include "services/agent/orders.h"

#include "services/process.h"

namespace distrib::agent {

namespace {
stdfs::path installed_file(const stdfs::path& state_dir) {
  return state_dir / "installed.json";
}
}  // namespace

auto load_installed(const stdfs::path& state_dir) -> bj::object {
  try {
    return json::parse_object(fs::read_file(installed_file(state_dir)));
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::not_found) spdlog::warn("installed package record unreadable: {}", e.what());
    return {};
  }
}

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

void Installer::install(const bj::object& item, std::int64_t entry_id, std::int32_t attempt,
                        const security::Order* order) {
  const auto& pkg = item.at("package").as_object();
  const auto name = json::get_string(pkg, "name");
  const auto version = json::get_string(pkg, "version");
  auto digest = json::get_string(pkg, "payload_digest", false);
  if (order && !order->payload.empty()) digest = order->payload;  // signed: it decides
  {
    auto installed = load_installed(ctx_.settings.state_dir);
    if (!digest.empty() && installed.contains(digest)) {
      link_.report(entry_id, attempt, EntryState::succeeded, "already installed; nothing to do");
      return;
    }
    link_.report(entry_id, attempt, EntryState::transferring);
    Manifest m = manifest_from_json(bj::serialize(
        link_.call("GET", "/v1/content/manifests/" + url_encode(name) + "/" + url_encode(version), nullptr)));
    validate_manifest(m);
    if (order) OrderCheck::check_manifest(*order, m);
    publishers_.check(m);  // before a byte of the payload is fetched
    if (!digest.empty() && m.payload_digest != digest)
      throw Error(ErrorKind::integrity, "manifest payload digest does not match the job's");

    Transfer t;
    t.entry_id = entry_id;
    t.attempt = attempt;
    if (auto sp = item.find("split"); sp != item.end()) t.offered = json::split_from_json(sp->value());
    if (!fetcher_.transfer(m, t)) return;  // stopping: resumes from the chunks already held
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

    const auto target = install_target(m);
    std::error_code ec;
    place_payload(archive, target, entry_id);
    stdfs::remove(archive, ec);

    std::optional<int> exit_code;
    std::string tail;
    if (!m.install.command.empty()) {
      auto timeout = std::chrono::seconds(m.install.timeout_seconds);
      if (ctx_.in_stop_phase) {
        // An install during shutdown gets what is left of the stop budget at most.
        const auto left = std::chrono::duration_cast<std::chrono::seconds>(ctx_.stop_deadline -
                                                                           std::chrono::steady_clock::now());
        timeout = std::max(std::chrono::seconds(1), std::min(timeout, left));
      }
      auto result = run_command(m.install.command, target,
                                {{"DISTRIB_PACKAGE_NAME", m.name},
                                 {"DISTRIB_PACKAGE_VERSION", m.version},
                                 {"DISTRIB_INSTALL_DIR", target.string()},
                                 {"DISTRIB_ENTRY_ID", std::to_string(entry_id)}},
                                timeout, ctx_.settings.output_tail_bytes);
      exit_code = result.exit_code;
      tail = result.output_tail;
      if (result.timed_out) {
        link_.report(entry_id, attempt, EntryState::failed,
                     "install command timed out after " + std::to_string(timeout.count()) + " s", exit_code,
                     tail);
        return;
      }
      if (result.exit_code != 0) {
        link_.report(entry_id, attempt, EntryState::failed,
                     "install command exited with " + std::to_string(result.exit_code), exit_code, tail);
        return;
      }
    }
    installed[m.payload_digest] = bj::object{{"name", m.name},
                                             {"version", m.version},
                                             {"directory", target.string()},
                                             {"installed_at", fs::now_unix()}};
    fs::write_file_atomic(installed_file(ctx_.settings.state_dir), bj::serialize(installed));
    inventory_.poke_inventory();  // the software inventory changed
    link_.report(entry_id, attempt, EntryState::succeeded, "installed in " + target.string(), exit_code,
                 tail);
  }
}

}  // namespace distrib::agent
