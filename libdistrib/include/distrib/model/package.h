#pragma once
// Packages: an immutable, content-addressed payload plus install instructions.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace distrib {

/// One file inside a package payload.
struct ManifestFile {
  std::string path;  ///< relative, '/'-separated, never absolute, never containing ".."
  std::uint64_t size = 0;
  std::string sha256;  ///< empty for directories and symlinks
  std::uint32_t mode = 0644;
  std::string type = "file";  ///< "file", "dir" or "symlink"
  std::string link_target;    ///< for symlinks
};

/// One content-addressed piece of the payload archive.
struct ChunkRef {
  std::string digest;  ///< SHA-256 of the uncompressed bytes, lower-case hex
  std::uint64_t size = 0;
};

/// What the agent does once the payload is verified.
struct InstallInstructions {
  std::string command;                  ///< run through /bin/sh in the install directory; may be empty
  std::string directory;                ///< where the payload goes; empty: the agent's own package dir
  std::uint32_t timeout_seconds = 600;  ///< for each of the commands
  /// Run before the install directory is removed by an uninstall job; may be empty.
  std::string uninstall_command;
  /// Detection: run before anything is fetched; exit 0 means the host already satisfies the
  /// package (the entry ends not_applicable). May be empty.
  std::string check_command;
};

/// The description of a package; its payload is the concatenation of `chunks`.
struct Manifest {
  std::string name;
  std::string version;
  std::string payload_digest;  ///< SHA-256 of the whole payload archive
  std::uint64_t payload_size = 0;
  std::string format = "tar";  ///< payload archive format
  std::vector<ManifestFile> files;
  std::vector<ChunkRef> chunks;
  InstallInstructions install;
  std::int64_t created_at = 0;
  /// The publisher's signature (security/publishers.h): Ed25519 over everything above, by the
  /// key `signed_by` ("ed25519:" and 16 hex digits); both empty for an unsigned package.
  std::string signed_by;
  std::string signature;  ///< hex
};

/// A registered package as listed by the manager.
struct PackageSummary {
  std::string name;
  std::string version;
  std::string payload_digest;
  std::uint64_t payload_size = 0;
  std::uint64_t file_count = 0;
  std::int64_t created_at = 0;
  std::int64_t last_used = 0;  ///< at a relay: last time an agent or job asked for it (LRU)
};

/// Package names: 1-128 of [A-Za-z0-9._+-], starting with a letter or digit.
bool is_valid_package_name(std::string_view name) noexcept;
/// Versions: 1-64 of [A-Za-z0-9._+~-], starting with a letter or digit.
bool is_valid_package_version(std::string_view version) noexcept;
/// Throws Error(invalid_argument) naming the rule when the name or the version is not valid.
void validate_package_identity(std::string_view name, std::string_view version);
/// A relative archive path that stays inside its root: no leading '/', no "..", no empty or "."
/// components, no NUL or backslash.
bool is_safe_relative_path(std::string_view path) noexcept;
/// Would a symlink at `link_path` (relative) pointing to `target` stay inside the root? Judged
/// by its text alone; links through other links need first_escaping_symlink.
bool is_contained_symlink(std::string_view link_path, std::string_view target) noexcept;
/// The symlinks of one tree (relative path → target), resolved as the kernel would against that
/// tree: every link followed through the others (chains, ".." hops through links, links to
/// links, at most 40 hops). Returns the path of the first link whose resolution leaves the root
/// (or loops), empty when all stay inside.
std::string first_escaping_symlink(const std::vector<std::pair<std::string, std::string>>& links);

/// Checks a manifest's internal consistency (names, paths, chunk sizes add up to the payload
/// size, digests are well-formed). Throws Error(invalid_argument) naming the first problem.
void validate_manifest(const Manifest& manifest);

/// Serialises a manifest to JSON text, and back (throws Error(invalid_argument) on bad JSON).
std::string manifest_to_json(const Manifest& manifest);
Manifest manifest_from_json(std::string_view json);

/// True for 64 lower-case hex characters.
bool is_sha256_hex(std::string_view text) noexcept;

}  // namespace distrib
