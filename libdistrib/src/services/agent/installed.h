#pragma once
// What this agent installed (`installed.json` in its state directory): one record per package
// (name and version), with its install directory, its uninstall command and the payload's files
// as they stood after the install, so that "already installed" is decided per package and by
// the files on disk, not by a payload digest alone.
#include "services/agent/common.h"

namespace distrib::agent {

/// A regular file of an installed payload: its path under the install directory, its size and
/// SHA-256 in the manifest, and its size and modification time once installed (the fast path of
/// the check: a file whose size and time are unchanged is not hashed again).
struct InstalledFile {
  std::string path;
  std::uint64_t size = 0;
  std::string sha256;
  std::uint64_t stat_size = 0;
  std::int64_t mtime_ns = 0;
};

struct InstalledPackage {
  std::string name, version, directory, payload_digest;
  std::int64_t installed_at = 0;
  std::string uninstall_command;
  std::uint32_t timeout_seconds = 600;
  std::vector<InstalledFile> files;
  std::uint64_t payload_size = 0;
  std::vector<std::string> chunks;  ///< digests of the payload's chunks (the chunk cache keeps them first)
  /// Records written before files were kept: only the directory's presence is checked.
  bool files_known = false;
};

class InstalledSet {
 public:
  /// The record in `state_dir`; empty when there is none; an unreadable one is logged and read as
  /// empty. Records of the older form (keyed by payload digest) are read as packages without files.
  static InstalledSet load(const stdfs::path& state_dir);
  /// Writes the record atomically.
  void save() const;

  const InstalledPackage* find(const std::string& name, const std::string& version) const;
  /// Records an install: it replaces the record of the same package and of any other package
  /// installed in the same directory (the directory now holds this one).
  void put(InstalledPackage p);
  /// Forgets a package; false when it was not recorded.
  bool remove(const std::string& name, const std::string& version);
  const std::vector<InstalledPackage>& all() const noexcept { return packages_; }

 private:
  stdfs::path file_;
  std::vector<InstalledPackage> packages_;
};

/// The record of `m` just installed in `directory` (its files stat'ed now).
InstalledPackage record_install(const Manifest& m, const stdfs::path& directory);
/// Empty when the install is intact; otherwise what is wrong, for the log and the entry's message
/// ("2 of 14 file(s) missing or changed, first bin/tool").
std::string check_installed(const InstalledPackage& p);

}  // namespace distrib::agent
