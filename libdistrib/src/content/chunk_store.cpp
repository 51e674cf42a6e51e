#include <distrib/content/chunk_store.h>
#include <distrib/content/digest.h>
#include <distrib/error.h>
#include <distrib/model/package.h>

#include "util/fs.h"

#include <zstd.h>

namespace distrib {

std::string compress_chunk(std::string_view raw, int level) {
  std::string out(ZSTD_compressBound(raw.size()), '\0');
  const auto n = ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), level);
  if (ZSTD_isError(n)) throw Error(std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

std::string decompress_chunk(std::string_view compressed, std::uint64_t max_size) {
  const auto declared = ZSTD_getFrameContentSize(compressed.data(), compressed.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR || declared == ZSTD_CONTENTSIZE_UNKNOWN)
    throw Error(ErrorKind::integrity, "chunk is not a valid zstd frame");
  if (declared > max_size)
    throw Error(ErrorKind::integrity, "chunk declares " + std::to_string(declared) +
                                          " bytes, more than the allowed " + std::to_string(max_size));
  std::string out(static_cast<std::size_t>(declared), '\0');
  const auto n = ZSTD_decompress(out.data(), out.size(), compressed.data(), compressed.size());
  if (ZSTD_isError(n) || n != declared)
    throw Error(ErrorKind::integrity, std::string("chunk does not decompress: ") +
                                          (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size mismatch"));
  return out;
}

ChunkStore::ChunkStore(std::filesystem::path root) : root_(std::move(root)) {
  fs::ensure_writable_dir(root_, "chunk store");
}

std::filesystem::path ChunkStore::path_of(std::string_view digest) const {
  if (!is_sha256_hex(digest))
    throw Error(ErrorKind::invalid_argument, "\"" + std::string(digest) + "\" is not a chunk digest");
  return root_ / std::string(digest.substr(0, 2)) / (std::string(digest) + ".zst");
}

bool ChunkStore::contains(std::string_view digest) const {
  std::error_code ec;
  return is_sha256_hex(digest) && std::filesystem::exists(path_of(digest), ec);
}

namespace {
void store_file(const std::filesystem::path& path, std::string_view data) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) throw fs::write_error(path.parent_path(), ec.value());
  fs::write_file_atomic(path, data);
}
}  // namespace

std::string ChunkStore::put_raw(std::string_view raw) {
  auto digest = sha256_hex(raw);
  if (!contains(digest)) store_file(path_of(digest), compress_chunk(raw));
  return digest;
}

namespace {
// Decompresses a chunk, naming it in the error.
std::string decompress_named(std::string_view digest, std::string_view compressed, std::uint64_t max_size) {
  try {
    return decompress_chunk(compressed, max_size);
  } catch (const Error& e) {
    throw Error(ErrorKind::integrity, "chunk " + std::string(digest) + " failed verification: " + e.what());
  }
}
}  // namespace

void ChunkStore::put_compressed(std::string_view digest, std::string_view compressed,
                                std::uint64_t max_size) {
  const auto raw = decompress_named(digest, compressed, max_size);
  const auto actual = sha256_hex(raw);
  if (actual != digest)
    throw Error(ErrorKind::integrity,
                "chunk " + std::string(digest) + " failed verification (got " + actual + ")");
  if (!contains(digest)) store_file(path_of(digest), compressed);
}

std::string ChunkStore::read_compressed(std::string_view digest) const {
  return fs::read_file(path_of(digest));
}

std::string ChunkStore::read_verified(std::string_view digest, std::uint64_t max_size) const {
  auto raw = decompress_named(digest, read_compressed(digest), max_size);
  const auto actual = sha256_hex(raw);
  if (actual != digest)
    throw Error(ErrorKind::integrity,
                "chunk " + std::string(digest) + " failed verification (got " + actual + ")");
  return raw;
}

void ChunkStore::remove(std::string_view digest) {
  std::error_code ec;
  std::filesystem::remove(path_of(digest), ec);
}

}  // namespace distrib
