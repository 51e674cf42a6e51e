// Installing: what is installed, the install directory, the staged swap and the install command.
#include "services/agent/impl.h"

namespace distrib {

auto Agent::Impl::load_installed() -> bj::object {
  try {
    return json::parse_object(fs::read_file(installed_file()));
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::not_found) spdlog::warn("installed package record unreadable: {}", e.what());
    return {};
  }
}

auto Agent::Impl::install_target(const Manifest& m) const -> stdfs::path {
  if (!m.install.directory.empty()) return m.install.directory;
  const auto root = settings.packages_dir.empty() ? settings.state_dir / "packages" : settings.packages_dir;
  return root / m.name / m.version;
}

// Puts the verified payload into place: extract beside the target, then swap directories.
void Agent::Impl::place_payload(const stdfs::path& archive, const stdfs::path& target,
                                std::int64_t entry_id) {
  std::error_code ec;
  stdfs::create_directories(target.parent_path(), ec);
  auto staging = target;
  staging += ".distrib-staging-" + std::to_string(entry_id);
  auto old = target;
  old += ".distrib-old-" + std::to_string(entry_id);
  stdfs::remove_all(staging, ec);
  extract_payload(archive, staging);
  const bool had = stdfs::exists(target, ec);
  if (had) stdfs::rename(target, old);
  try {
    stdfs::rename(staging, target);
  } catch (...) {
    if (had) stdfs::rename(old, target, ec);
    throw;
  }
  stdfs::remove_all(old, ec);
}

void Agent::Impl::install(const bj::object& item, std::int64_t entry_id, std::int32_t attempt) {
  const auto& pkg = item.at("package").as_object();
  const auto name = json::get_string(pkg, "name");
  const auto version = json::get_string(pkg, "version");
  const auto digest = json::get_string(pkg, "payload_digest", false);
  {
    auto installed = load_installed();
    if (!digest.empty() && installed.contains(digest)) {
      report(entry_id, attempt, EntryState::succeeded, "already installed; nothing to do");
      return;
    }
    report(entry_id, attempt, EntryState::transferring);
    Manifest m = manifest_from_json(bj::serialize(
        call("GET", "/v1/content/manifests/" + url_encode(name) + "/" + url_encode(version), nullptr)));
    validate_manifest(m);
    if (!digest.empty() && m.payload_digest != digest)
      throw Error(ErrorKind::integrity, "manifest payload digest does not match the job's");

    Transfer t;
    t.entry_id = entry_id;
    t.attempt = attempt;
    if (auto sp = item.find("split"); sp != item.end()) t.offered = json::split_from_json(sp->value());
    if (!transfer(m, t)) return;  // stopping: resumes from the chunks already held
    const auto fetched = t.fetched_chunks;
    const auto work = settings.state_dir / "work";
    stdfs::create_directories(work);
    const auto archive = work / (std::to_string(entry_id) + ".tar");
    try {
      assemble_payload(m, *chunks, archive);
    } catch (const Error& e) {
      // A chunk that went bad on our disk is dropped so the next attempt fetches it again.
      for (const auto& c : m.chunks) {
        try {
          chunks->read_verified(c.digest, kMaxChunkSize);
        } catch (const Error&) {
          chunks->remove(c.digest);
        }
      }
      throw;
    }
    report(entry_id, attempt, EntryState::transferred,
           std::to_string(fetched) + " of " + std::to_string(m.chunks.size()) + " chunk(s) fetched" +
               (t.progress.bad_chunks ? ", " + std::to_string(t.progress.bad_chunks) +
                                            " failed verification and were fetched again"
                                      : ""),
           {}, {}, t.progress);
    report(entry_id, attempt, EntryState::installing);

    const auto target = install_target(m);
    std::error_code ec;
    place_payload(archive, target, entry_id);
    stdfs::remove(archive, ec);

    std::optional<int> exit_code;
    std::string tail;
    if (!m.install.command.empty()) {
      auto timeout = std::chrono::seconds(m.install.timeout_seconds);
      if (in_stop_phase) {
        // An install during shutdown gets what is left of the stop budget at most.
        const auto left = std::chrono::duration_cast<std::chrono::seconds>(stop_deadline -
                                                                           std::chrono::steady_clock::now());
        timeout = std::max(std::chrono::seconds(1), std::min(timeout, left));
      }
      auto result = run_command(m.install.command, target,
                                {{"DISTRIB_PACKAGE_NAME", m.name},
                                 {"DISTRIB_PACKAGE_VERSION", m.version},
                                 {"DISTRIB_INSTALL_DIR", target.string()},
                                 {"DISTRIB_ENTRY_ID", std::to_string(entry_id)}},
                                timeout, settings.output_tail_bytes);
      exit_code = result.exit_code;
      tail = result.output_tail;
      if (result.timed_out) {
        report(entry_id, attempt, EntryState::failed,
               "install command timed out after " + std::to_string(timeout.count()) + " s", exit_code, tail);
        return;
      }
      if (result.exit_code != 0) {
        report(entry_id, attempt, EntryState::failed,
               "install command exited with " + std::to_string(result.exit_code), exit_code, tail);
        return;
      }
    }
    installed[m.payload_digest] = bj::object{{"name", m.name},
                                             {"version", m.version},
                                             {"directory", target.string()},
                                             {"installed_at", fs::now_unix()}};
    fs::write_file_atomic(installed_file(), bj::serialize(installed));
    poke_inventory();  // the software inventory changed
    report(entry_id, attempt, EntryState::succeeded, "installed in " + target.string(), exit_code, tail);
  }
}

}  // namespace distrib
