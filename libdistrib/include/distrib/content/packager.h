#pragma once
// Packaging a directory and unpacking a payload safely.
#include <distrib/content/chunk_store.h>
#include <distrib/model/package.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace distrib {

/// Average chunk size of content-defined chunking (chunks are between a quarter and four times
/// this): small enough that a new version shares nearly all of an old one's bytes.
inline constexpr std::uint64_t kDefaultChunkSize = 16 * 1024;
/// No chunk is ever larger than this, whatever a manifest says.
inline constexpr std::uint64_t kMaxChunkSize = 16 * 1024 * 1024;

/// What to package.
struct PackageSpec {
  std::filesystem::path source_dir;
  std::string name;
  std::string version;
  InstallInstructions install;
  /// Average chunk size: a power of two between 1 KiB and 4 MiB.
  std::uint64_t chunk_size = kDefaultChunkSize;
  /// A publisher's Ed25519 private key (PEM, from `distribctl keys create`): when set, the
  /// manifest is signed with it (docs/SECURITY.md, "Signed packages").
  std::string signing_key_pem;
};

/// Archives `spec.source_dir` (tar, deterministic order, owner and times normalised), cuts the
/// archive into content-defined chunks (see chunker.h) stored in `chunks`, and returns the manifest. Refuses
/// (Error invalid_argument) names or versions that are not valid, special files, and symlinks whose target is
/// absolute or escapes the directory.
Manifest create_package(const PackageSpec& spec, ChunkOutput& chunks);

/// Writes the payload of `manifest` from `chunks` to `out`, verifying every chunk and the whole
/// payload digest. Throws Error(integrity) naming the first chunk or digest that does not match.
void assemble_payload(const Manifest& manifest, const ChunkStore& chunks, const std::filesystem::path& out);

/// Extracts a payload archive into `target_dir` (which must not exist yet), refusing absolute
/// paths, "..", hard links, device files and symlinks that escape the directory. On any refusal
/// the partially extracted directory is removed and Error(integrity) names the entry.
void extract_payload(const std::filesystem::path& archive, const std::filesystem::path& target_dir);

}  // namespace distrib
