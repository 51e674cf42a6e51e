// The record of installed packages and the check of their files.
#include "services/agent/installed.h"

#include <sys/stat.h>

namespace distrib::agent {

namespace {

stdfs::path record_file(const stdfs::path& state_dir) {
  return state_dir / "installed.json";
}

bj::object to_json(const InstalledPackage& p) {
  bj::array files;
  for (const auto& f : p.files)
    files.push_back(bj::object{{"path", f.path},
                               {"size", f.size},
                               {"sha256", f.sha256},
                               {"stat_size", f.stat_size},
                               {"mtime_ns", f.mtime_ns}});
  bj::object o{{"name", p.name},
               {"version", p.version},
               {"directory", p.directory},
               {"payload_digest", p.payload_digest},
               {"installed_at", p.installed_at},
               {"timeout_seconds", p.timeout_seconds}};
  if (!p.uninstall_command.empty()) o["uninstall_command"] = p.uninstall_command;
  if (p.files_known) o["files"] = std::move(files);
  bj::array chunks;
  for (const auto& c : p.chunks) chunks.emplace_back(c);
  o["chunks"] = std::move(chunks);
  o["payload_size"] = p.payload_size;
  return o;
}

InstalledPackage from_json(const bj::object& o) {
  InstalledPackage p;
  p.name = json::get_string(o, "name");
  p.version = json::get_string(o, "version");
  p.directory = json::get_string(o, "directory", false);
  p.payload_digest = json::get_string(o, "payload_digest", false);
  p.installed_at = json::get_int(o, "installed_at", 0);
  p.uninstall_command = json::get_string(o, "uninstall_command", false);
  p.timeout_seconds = static_cast<std::uint32_t>(json::get_int(o, "timeout_seconds", 600));
  p.payload_size = static_cast<std::uint64_t>(json::get_int(o, "payload_size", 0));
  if (auto it = o.find("chunks"); it != o.end() && it->value().is_array())
    for (const auto& v : it->value().as_array())
      if (v.is_string()) p.chunks.emplace_back(v.as_string());
  if (auto it = o.find("files"); it != o.end() && it->value().is_array()) {
    p.files_known = true;
    for (const auto& v : it->value().as_array()) {
      if (!v.is_object()) continue;
      const auto& fo = v.as_object();
      InstalledFile f;
      f.path = json::get_string(fo, "path");
      f.size = static_cast<std::uint64_t>(json::get_int(fo, "size", 0));
      f.sha256 = json::get_string(fo, "sha256", false);
      f.stat_size = static_cast<std::uint64_t>(json::get_int(fo, "stat_size", 0));
      f.mtime_ns = json::get_int(fo, "mtime_ns", 0);
      p.files.push_back(std::move(f));
    }
  }
  return p;
}

// Size and modification time (ns) of a regular file; nullopt when it is missing or not a file.
std::optional<std::pair<std::uint64_t, std::int64_t>> stat_of(const stdfs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return std::make_pair(static_cast<std::uint64_t>(st.st_size),
                        static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
}

}  // namespace

InstalledSet InstalledSet::load(const stdfs::path& state_dir) {
  InstalledSet set;
  set.file_ = record_file(state_dir);
  try {
    const auto o = json::parse_object(fs::read_file(set.file_));
    if (auto it = o.find("packages"); it != o.end() && it->value().is_array()) {
      for (const auto& v : it->value().as_array())
        if (v.is_object()) set.packages_.push_back(from_json(v.as_object()));
    } else {
      // The older form: payload digest → {name, version, directory, installed_at}.
      for (const auto& [digest, v] : o) {
        if (!v.is_object()) continue;
        auto p = from_json(v.as_object());
        p.payload_digest = std::string(digest);
        set.put(std::move(p));
      }
    }
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::not_found) spdlog::warn("installed package record unreadable: {}", e.what());
  }
  return set;
}

void InstalledSet::save() const {
  bj::array arr;
  for (const auto& p : packages_) arr.push_back(to_json(p));
  fs::write_file_atomic(file_, bj::serialize(bj::object{{"format", 2}, {"packages", std::move(arr)}}));
}

const InstalledPackage* InstalledSet::find(const std::string& name, const std::string& version) const {
  for (const auto& p : packages_)
    if (p.name == name && p.version == version) return &p;
  return nullptr;
}

void InstalledSet::put(InstalledPackage p) {
  std::erase_if(packages_, [&](const InstalledPackage& q) {
    return (q.name == p.name && q.version == p.version) ||
           (!p.directory.empty() && q.directory == p.directory);
  });
  packages_.push_back(std::move(p));
}

bool InstalledSet::remove(const std::string& name, const std::string& version) {
  return std::erase_if(packages_,
                       [&](const InstalledPackage& q) { return q.name == name && q.version == version; }) > 0;
}

InstalledPackage record_install(const Manifest& m, const stdfs::path& directory) {
  InstalledPackage p;
  p.name = m.name;
  p.version = m.version;
  p.directory = directory.string();
  p.payload_digest = m.payload_digest;
  p.installed_at = fs::now_unix();
  p.uninstall_command = m.install.uninstall_command;
  p.timeout_seconds = m.install.timeout_seconds;
  p.files_known = true;
  p.payload_size = m.payload_size;
  std::set<std::string> seen;
  for (const auto& c : m.chunks)
    if (seen.insert(c.digest).second) p.chunks.push_back(c.digest);
  for (const auto& f : m.files) {
    if (f.type != "file") continue;
    InstalledFile x{f.path, f.size, f.sha256, 0, 0};
    if (auto st = stat_of(directory / f.path)) std::tie(x.stat_size, x.mtime_ns) = *st;
    p.files.push_back(std::move(x));
  }
  return p;
}

std::string check_installed(const InstalledPackage& p) {
  std::error_code ec;
  if (p.directory.empty() || !stdfs::is_directory(p.directory, ec)) return p.directory + " is missing";
  std::size_t bad = 0;
  std::string first;
  for (const auto& f : p.files) {
    const auto path = stdfs::path(p.directory) / f.path;
    const auto st = stat_of(path);
    bool ok = false;
    if (st && st->first == f.stat_size && st->second == f.mtime_ns && f.mtime_ns != 0) {
      ok = true;  // unchanged since the install
    } else if (st && st->first == f.size) {
      try {
        ok = sha256_file(path) == f.sha256;
      } catch (const std::exception&) {
        ok = false;
      }
    }
    if (!ok && bad++ == 0) first = f.path + (st ? " changed" : " missing");
  }
  if (bad == 0) return {};
  return std::to_string(bad) + " of " + std::to_string(p.files.size()) +
         " file(s) missing or changed, first " + first;
}

}  // namespace distrib::agent
