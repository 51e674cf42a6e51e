#include <distrib/content/chunk_store.h>
#include <distrib/content/digest.h>
#include <distrib/error.h>
#include <distrib/model/package.h>

#include "util/fs.h"

#include <zstd.h>

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

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
void store_file(const std::filesystem::path& path, std::string_view data, bool durable) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) throw fs::write_error(path.parent_path(), ec.value());
  fs::write_file_atomic(path, data, durable);
}
}  // namespace

std::string ChunkStore::put_raw(std::string_view raw) {
  auto digest = sha256_hex(raw);
  if (!contains(digest)) store_file(path_of(digest), compress_chunk(raw), true);
  return digest;
}

void ChunkStore::sync() const {
  const int fd = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw fs::write_error(root_, errno);
  const int rc = ::syncfs(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw fs::write_error(root_, err);
}

struct ChunkSpool::Impl {
  std::filesystem::path path;
  int fd = -1;
  mutable std::mutex mutex;
  std::uint64_t end = 0;
  std::unordered_map<std::string, std::pair<std::uint64_t, std::uint64_t>> at;  // offset, size
};

ChunkSpool::ChunkSpool(const std::filesystem::path& dir) : impl_(std::make_unique<Impl>()) {
  fs::ensure_writable_dir(dir, "chunk spool directory");
  impl_->path = dir / "chunks.spool";
  impl_->fd = ::open(impl_->path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (impl_->fd < 0) throw fs::write_error(impl_->path, errno);
}

ChunkSpool::~ChunkSpool() {
  ::close(impl_->fd);
  ::unlink(impl_->path.c_str());
}

std::string ChunkSpool::put_raw(std::string_view raw) {
  auto digest = sha256_hex(raw);
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->at.count(digest)) return digest;
  }
  const auto compressed = compress_chunk(raw);
  std::lock_guard lock(impl_->mutex);
  if (impl_->at.count(digest)) return digest;
  std::size_t done = 0;
  while (done < compressed.size()) {
    const auto n = ::pwrite(impl_->fd, compressed.data() + done, compressed.size() - done,
                            static_cast<off_t>(impl_->end + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw fs::write_error(impl_->path, errno);
    done += static_cast<std::size_t>(n);
  }
  impl_->at.emplace(digest, std::make_pair(impl_->end, compressed.size()));
  impl_->end += compressed.size();
  return digest;
}

std::uint64_t ChunkSpool::compressed_size(std::string_view digest) const {
  std::lock_guard lock(impl_->mutex);
  const auto it = impl_->at.find(std::string(digest));
  return it == impl_->at.end() ? 0 : it->second.second;
}

std::string ChunkSpool::read_compressed(std::string_view digest) const {
  std::pair<std::uint64_t, std::uint64_t> where;
  {
    std::lock_guard lock(impl_->mutex);
    const auto it = impl_->at.find(std::string(digest));
    if (it == impl_->at.end())
      throw Error(ErrorKind::not_found,
                  "chunk " + std::string(digest.substr(0, 12)) + " is not in the spool");
    where = it->second;
  }
  std::string out(static_cast<std::size_t>(where.second), '\0');
  std::size_t done = 0;
  while (done < out.size()) {
    const auto n =
        ::pread(impl_->fd, out.data() + done, out.size() - done, static_cast<off_t>(where.first + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw Error("cannot read " + impl_->path.string() + ": " + std::strerror(n < 0 ? errno : EIO));
    done += static_cast<std::size_t>(n);
  }
  return out;
}

std::string short_digest(std::string_view digest) {
  return std::string(digest.substr(0, 12));
}

namespace {
// Decompresses a chunk, naming it in the error.
std::string decompress_named(std::string_view digest, std::string_view compressed, std::uint64_t max_size) {
  try {
    return decompress_chunk(compressed, max_size);
  } catch (const Error& e) {
    throw Error(ErrorKind::integrity, "chunk " + short_digest(digest) + " failed verification: " + e.what());
  }
}

std::string verified_raw(std::string_view digest, std::string_view compressed, std::uint64_t max_size) {
  auto raw = decompress_named(digest, compressed, max_size);
  const auto actual = sha256_hex(raw);
  if (actual != digest)
    throw Error(ErrorKind::integrity, "chunk " + short_digest(digest) +
                                          " failed verification (its bytes hash to " + short_digest(actual) +
                                          ")");
  return raw;
}
}  // namespace

std::uint64_t verify_chunk(std::string_view digest, std::string_view compressed, std::uint64_t max_size) {
  return verified_raw(digest, compressed, max_size).size();
}

bool ChunkStore::put_compressed(std::string_view digest, std::string_view compressed, std::uint64_t max_size,
                                bool durable) {
  verify_chunk(digest, compressed, max_size);
  return put_verified(digest, compressed, max_size, durable);
}

bool ChunkStore::put_verified(std::string_view digest, std::string_view compressed, std::uint64_t max_size,
                              bool durable) {
  if (contains(digest)) {
    try {
      read_verified(digest, max_size);
      return false;  // the copy held is good
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::integrity) throw;
    }
  }
  store_file(path_of(digest), compressed, durable);
  return true;
}

std::string ChunkStore::read_compressed(std::string_view digest) const {
  return fs::read_file(path_of(digest));
}

std::string ChunkStore::read_verified(std::string_view digest, std::uint64_t max_size) const {
  return verified_raw(digest, read_compressed(digest), max_size);
}

void ChunkStore::remove(std::string_view digest) {
  std::error_code ec;
  std::filesystem::remove(path_of(digest), ec);
}

bool ChunkStore::quarantine(std::string_view digest) {
  namespace sfs = std::filesystem;
  const auto from = path_of(digest);
  const auto dir = quarantine_dir();
  std::error_code ec;
  sfs::create_directories(dir, ec);
  sfs::rename(from, dir / (std::string(digest) + ".zst.bad"), ec);
  if (ec) {
    // No room to keep it (or another file system): it goes, so it counts as missing all the same.
    const bool was = sfs::exists(from, ec);
    sfs::remove(from, ec);
    return was;
  }
  std::vector<std::pair<sfs::file_time_type, sfs::path>> kept;
  for (auto it = sfs::directory_iterator(dir, ec); !ec && it != sfs::directory_iterator(); it.increment(ec))
    kept.emplace_back(it->last_write_time(ec), it->path());
  if (kept.size() > kQuarantineKept) {
    std::sort(kept.begin(), kept.end());
    for (std::size_t i = 0; i + kQuarantineKept < kept.size(); ++i) sfs::remove(kept[i].second, ec);
  }
  return true;
}

std::vector<std::pair<std::string, std::uint64_t>> ChunkStore::list() const {
  namespace sfs = std::filesystem;
  std::vector<std::pair<std::string, std::uint64_t>> out;
  std::error_code ec;
  for (auto top = sfs::directory_iterator(root_, ec); !ec && top != sfs::directory_iterator();
       top.increment(ec)) {
    const auto sub = top->path().filename().string();
    if (sub.size() != 2 || !top->is_directory(ec)) continue;  // the quarantine, stray files
    std::error_code ec2;
    for (auto it = sfs::directory_iterator(top->path(), ec2); !ec2 && it != sfs::directory_iterator();
         it.increment(ec2)) {
      const auto name = it->path().filename().string();
      if (name.size() != 68 || !name.ends_with(".zst") || !is_sha256_hex(name.substr(0, 64))) continue;
      std::error_code ec3;
      const auto size = it->file_size(ec3);
      if (!ec3) out.emplace_back(name.substr(0, 64), size);
    }
  }
  return out;
}

}  // namespace distrib
