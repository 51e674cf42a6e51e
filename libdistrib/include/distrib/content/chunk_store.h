#pragma once
// Content-addressed chunk store: each chunk is kept zstd-compressed in a file named by the
// SHA-256 of its uncompressed bytes. Writes are atomic (temporary file + rename), so a chunk is
// either wholly present and verified or absent.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace distrib {

/// Compresses bytes for transfer and storage (zstd).
std::string compress_chunk(std::string_view raw, int level = 3);
/// Decompresses a stored/transferred chunk; throws Error(integrity) on corrupt input or when the
/// result would exceed `max_size`.
std::string decompress_chunk(std::string_view compressed, std::uint64_t max_size);
/// The first 12 hex digits of a digest, for messages people read ("3f2a9c1e0b7d").
std::string short_digest(std::string_view digest);
/// Checks that `compressed` decompresses to bytes whose SHA-256 is `digest`; throws
/// Error(integrity) naming the chunk (short) and what was wrong. Returns the uncompressed size.
std::uint64_t verify_chunk(std::string_view digest, std::string_view compressed, std::uint64_t max_size);

/// Where the packager puts the chunks it cuts (create_package): a ChunkStore, or a ChunkSpool.
class ChunkOutput {
 public:
  virtual ~ChunkOutput() = default;
  /// Stores raw bytes under their digest and returns the digest; thread-safe.
  virtual std::string put_raw(std::string_view raw) = 0;
  /// The compressed bytes of a chunk put here.
  virtual std::string read_compressed(std::string_view digest) const = 0;
};

/// Chunks cut for one upload: compressed and appended to one scratch file (deleted with the
/// spool), not a file each: the upload reads them back once. Thread-safe.
class ChunkSpool : public ChunkOutput {
 public:
  /// Creates the spool file in `dir`.
  explicit ChunkSpool(const std::filesystem::path& dir);
  ~ChunkSpool() override;
  ChunkSpool(const ChunkSpool&) = delete;
  ChunkSpool& operator=(const ChunkSpool&) = delete;
  std::string put_raw(std::string_view raw) override;
  std::string read_compressed(std::string_view digest) const override;
  /// Compressed size of a chunk put here (0 when it is not).
  std::uint64_t compressed_size(std::string_view digest) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ChunkStore : public ChunkOutput {
 public:
  /// Creates `root` when missing; throws Error when it cannot.
  explicit ChunkStore(std::filesystem::path root);

  const std::filesystem::path& root() const noexcept { return root_; }
  bool contains(std::string_view digest) const;
  /// Path of the compressed chunk file (whether or not it exists).
  std::filesystem::path path_of(std::string_view digest) const;

  /// Stores raw bytes under their digest; returns the digest. No-op when already present.
  /// Thread-safe, as every write of the store is.
  std::string put_raw(std::string_view raw) override;
  /// Stores a compressed chunk after checking that it decompresses to bytes with `digest`.
  /// Throws Error(integrity) naming the digest when it does not. A copy already held is kept
  /// when it verifies and replaced when it does not; returns true when the file was written.
  bool put_compressed(std::string_view digest, std::string_view compressed, std::uint64_t max_size,
                      bool durable = true);
  /// put_compressed for bytes verify_chunk has accepted already (a batch checked whole first).
  bool put_verified(std::string_view digest, std::string_view compressed, std::uint64_t max_size,
                    bool durable = true);
  /// Flushes every write of the store's file system to disk (syncfs): one flush for a batch of
  /// writes made without `durable`.
  void sync() const;
  /// Reads the compressed bytes as stored (no verification).
  std::string read_compressed(std::string_view digest) const override;
  /// Reads, decompresses and verifies; throws Error(integrity) when the stored bytes are bad.
  std::string read_verified(std::string_view digest, std::uint64_t max_size) const;
  /// Removes a chunk (used when verification found it corrupt).
  void remove(std::string_view digest);
  /// Moves a corrupt chunk aside into `quarantine_dir()` (as DIGEST.zst.bad; the newest
  /// kQuarantineKept are kept, older ones deleted); it then counts as missing. False when it was
  /// not here.
  bool quarantine(std::string_view digest);
  std::filesystem::path quarantine_dir() const { return root_ / "quarantine"; }
  static constexpr std::size_t kQuarantineKept = 100;
  /// The digests of every chunk file held (temporary files and the quarantine left out), with
  /// their compressed sizes.
  std::vector<std::pair<std::string, std::uint64_t>> list() const;

 private:
  std::filesystem::path root_;
};

}  // namespace distrib
