#pragma once
// Scrubbing a chunk store: every stored chunk read back, decompressed and checked against its
// digest; the corrupt ones moved aside (ChunkStore::quarantine), so they count as missing and the
// tier above (or the packager) supplies them again. And the manifests' side: which chunks the
// packages held here name that the store lacks. Used offline (distribd --verify-store) and online
// (distribctl content verify), paced so it does not starve serving.
#include <distrib/content/chunk_store.h>
#include <distrib/model/package.h>
#include <distrib/store/package_store.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace distrib {

/// How far a scrub got.
struct ScrubStatus {
  std::uint64_t chunks_total = 0, chunks_checked = 0;
  std::uint64_t bytes_total = 0, bytes_checked = 0;  ///< stored (compressed) bytes
  std::uint64_t raw_bytes_checked = 0;               ///< after decompression
  std::vector<std::string> bad;                      ///< digests that failed (quarantined)
  double seconds = 0;
  bool stopped = false;  ///< stopped before the end
};

struct ScrubOptions {
  /// Stored bytes read per second at most (0: as fast as the machine goes).
  std::uint64_t bytes_per_second = 0;
  /// Move corrupt chunks aside (otherwise only report them).
  bool quarantine = true;
  /// Called after each chunk at most every 200 ms, and at the end.
  std::function<void(const ScrubStatus&)> progress;
  /// Asked between chunks; true stops the scrub.
  std::function<bool()> stopping;
  /// Called for each corrupt chunk (after it was quarantined) with the reason.
  std::function<void(const std::string& digest, const std::string& why)> on_bad;
};

/// Checks every chunk file in `store`.
ScrubStatus scrub_chunk_store(ChunkStore& store, const ScrubOptions& options);

/// A package whose manifest names chunks this store lacks, or whose manifest is not valid.
struct ManifestProblem {
  std::string name, version;
  std::vector<std::string> missing;  ///< digests
  std::string invalid;               ///< why the manifest itself is not valid (empty: it is)
};
struct ManifestCheck {
  std::size_t packages = 0;               ///< packages checked
  std::vector<ManifestProblem> problems;  ///< those with a problem; the others are whole
};
/// Every package `packages` holds, against the chunks in `store`. `partial_cache`: a relay's
/// cache, which holds what was asked for: a chunk it lacks is not a fault there, only a manifest
/// that is not valid is.
ManifestCheck check_manifests(const ChunkStore& store, PackageStore& packages, bool partial_cache);

}  // namespace distrib
