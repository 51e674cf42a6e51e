#include <distrib/content/chunker.h>
#include <distrib/content/digest.h>
#include <distrib/content/packager.h>
#include <distrib/error.h>

#include "security/publishers.h"
#include "util/fs.h"

#include <archive.h>
#include <archive_entry.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

namespace distrib {

namespace stdfs = std::filesystem;

namespace {

// Hashes, compresses and stores the chunks cut from the archive stream on every core. Each
// chunk keeps its place in the manifest by its index; at most four per worker wait in the
// queue, so memory stays a few chunks per core whatever the package's size.
class ChunkWorkers {
 public:
  explicit ChunkWorkers(ChunkOutput& store) : store_(store) {
    const unsigned n = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { work(); });
    max_queued_ = 4 * n;
  }
  ~ChunkWorkers() { close(); }
  ChunkWorkers(const ChunkWorkers&) = delete;
  ChunkWorkers& operator=(const ChunkWorkers&) = delete;

  void submit(std::string raw) {
    std::unique_lock lock(mutex_);
    space_.wait(lock, [&] { return queue_.size() < max_queued_ || error_; });
    if (error_) std::rethrow_exception(error_);
    const auto size = raw.size();
    queue_.emplace_back(refs_.size(), std::move(raw));
    refs_.push_back({"", size});
    work_.notify_one();
  }
  // Every chunk stored, in order; the first failure is thrown.
  std::vector<ChunkRef> finish() {
    close();
    if (error_) std::rethrow_exception(error_);
    return std::move(refs_);
  }

 private:
  void close() {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
    }
    work_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  void work() {
    for (;;) {
      std::pair<std::size_t, std::string> job;
      {
        std::unique_lock lock(mutex_);
        work_.wait(lock, [&] { return !queue_.empty() || closing_; });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      space_.notify_one();
      try {
        auto digest = store_.put_raw(job.second);
        std::lock_guard lock(mutex_);
        refs_[job.first].digest = std::move(digest);
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
        space_.notify_all();
      }
    }
  }

  ChunkOutput& store_;
  std::mutex mutex_;
  std::condition_variable work_, space_;
  std::deque<std::pair<std::size_t, std::string>> queue_;
  std::vector<ChunkRef> refs_;
  std::exception_ptr error_;
  std::size_t max_queued_ = 4;
  bool closing_ = false;
  std::vector<std::thread> threads_;
};

// Receives the archive stream, hashes it and cuts it into content-defined chunks.
struct ChunkSink {
  ChunkWorkers* workers = nullptr;
  ChunkingParams params;
  std::string pending;
  Sha256 payload;
  std::uint64_t total = 0;
  std::string error;

  void cut(std::string_view bytes) { workers->submit(std::string(bytes)); }
  // Cuts while at least one maximal chunk is buffered (a cut never looks further than max).
  void drain(bool final) {
    std::size_t off = 0;
    while (pending.size() - off >= (final ? 1 : params.max)) {
      const auto* p = reinterpret_cast<const std::uint8_t*>(pending.data()) + off;
      const auto n = cdc_cut(p, pending.size() - off, params);
      cut(std::string_view(pending).substr(off, n));
      off += n;
    }
    pending.erase(0, off);
  }
  void feed(const char* data, std::size_t size) {
    payload.update(data, size);
    total += size;
    pending.append(data, size);
    if (pending.size() >= 4 * static_cast<std::size_t>(params.max)) drain(false);
  }
  void flush() { drain(true); }
};

la_ssize_t sink_write(struct archive*, void* client, const void* buf, size_t len) {
  auto* sink = static_cast<ChunkSink*>(client);
  try {
    sink->feed(static_cast<const char*>(buf), len);
    return static_cast<la_ssize_t>(len);
  } catch (const std::exception& e) {
    sink->error = e.what();
    return -1;
  }
}

struct ArchiveWriter {
  struct archive* a = archive_write_new();
  ~ArchiveWriter() { archive_write_free(a); }
};
struct ArchiveReader {
  struct archive* a = archive_read_new();
  ~ArchiveReader() { archive_read_free(a); }
};
struct Entry {
  struct archive_entry* e = archive_entry_new();
  ~Entry() { archive_entry_free(e); }
};

struct SourceEntry {
  std::string rel;
  stdfs::path abs;
  struct stat st {};
};

// Deterministic, sorted walk; refuses what cannot be distributed safely.
std::vector<SourceEntry> walk(const stdfs::path& root, const std::string& label) {
  std::vector<SourceEntry> out;
  std::vector<std::pair<std::string, std::string>> links;
  std::error_code ec;
  stdfs::recursive_directory_iterator it(root, stdfs::directory_options::none, ec), end;
  if (ec) throw Error(ErrorKind::invalid_argument, "cannot read " + root.string() + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw Error(ErrorKind::invalid_argument, "cannot read " + root.string() + ": " + ec.message());
    SourceEntry e;
    e.abs = it->path();
    e.rel = e.abs.lexically_relative(root).generic_string();  // never resolves symlinks
    if (::lstat(e.abs.c_str(), &e.st) != 0)
      throw Error(ErrorKind::invalid_argument, "cannot stat " + e.abs.string() + ": " + std::strerror(errno));
    if (!is_safe_relative_path(e.rel))
      throw Error(ErrorKind::invalid_argument, label + ": unsafe path \"" + e.rel + "\"");
    if (S_ISLNK(e.st.st_mode)) {
      std::error_code lec;
      const auto target = stdfs::read_symlink(e.abs, lec).generic_string();
      if (!is_contained_symlink(e.rel, target))
        throw Error(ErrorKind::invalid_argument, label + ": symlink \"" + e.rel + "\" -> \"" + target +
                                                     "\" escapes the package directory");
      links.emplace_back(e.rel, target);
    } else if (!S_ISREG(e.st.st_mode) && !S_ISDIR(e.st.st_mode)) {
      throw Error(ErrorKind::invalid_argument,
                  label + ": \"" + e.rel + "\" is not a regular file, directory or symlink");
    }
    out.push_back(std::move(e));
  }
  if (const auto bad = first_escaping_symlink(links); !bad.empty())
    throw Error(ErrorKind::invalid_argument,
                label + ": symlink \"" + bad +
                    "\" resolves outside the package directory (or loops) through other links");
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.rel < b.rel; });
  return out;
}

[[noreturn]] void archive_fail(struct archive* a, const std::string& what) {
  const char* msg = archive_error_string(a);
  throw Error(what + ": " + (msg ? msg : "unknown libarchive error"));
}

}  // namespace

Manifest create_package(const PackageSpec& spec, ChunkOutput& chunks) {
  Manifest m;
  m.name = spec.name;
  m.version = spec.version;
  m.install = spec.install;
  const std::string label = "package \"" + spec.name + "\" " + spec.version;
  validate_package_identity(spec.name, spec.version);
  const auto params = chunking_for_average(spec.chunk_size);
  if (!stdfs::is_directory(spec.source_dir))
    throw Error(ErrorKind::invalid_argument,
                label + ": source " + spec.source_dir.string() + " is not a directory");

  const auto entries = walk(spec.source_dir, label);

  ChunkWorkers workers(chunks);
  ChunkSink sink;
  sink.workers = &workers;
  sink.params = params;
  ArchiveWriter w;
  archive_write_set_format_pax_restricted(w.a);
  archive_write_set_bytes_per_block(w.a, 0);  // no padding to 10 KiB blocks
  if (archive_write_open(w.a, &sink, nullptr, sink_write, nullptr) != ARCHIVE_OK) archive_fail(w.a, label);

  std::string buf(1 << 16, '\0');
  for (const auto& src : entries) {
    ManifestFile f;
    f.path = src.rel;
    f.mode = static_cast<std::uint32_t>(src.st.st_mode & 07777);
    Entry e;
    archive_entry_set_pathname(e.e, src.rel.c_str());
    archive_entry_set_perm(e.e, static_cast<mode_t>(f.mode));
    archive_entry_set_uid(e.e, 0);
    archive_entry_set_gid(e.e, 0);
    archive_entry_set_mtime(e.e, 0, 0);  // reproducible payloads: same tree, same digest
    if (S_ISDIR(src.st.st_mode)) {
      f.type = "dir";
      archive_entry_set_filetype(e.e, AE_IFDIR);
    } else if (S_ISLNK(src.st.st_mode)) {
      f.type = "symlink";
      f.link_target = stdfs::read_symlink(src.abs).generic_string();
      archive_entry_set_filetype(e.e, AE_IFLNK);
      archive_entry_set_symlink(e.e, f.link_target.c_str());
    } else {
      f.type = "file";
      f.size = static_cast<std::uint64_t>(src.st.st_size);
      archive_entry_set_filetype(e.e, AE_IFREG);
      archive_entry_set_size(e.e, src.st.st_size);
    }
    if (archive_write_header(w.a, e.e) != ARCHIVE_OK) {
      if (!sink.error.empty()) throw Error(label + ": " + sink.error);
      archive_fail(w.a, label + ": " + src.rel);
    }
    if (f.type == "file") {
      const int fd = ::open(src.abs.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        throw Error(ErrorKind::invalid_argument,
                    "cannot read " + src.abs.string() + ": " + std::strerror(errno));
      Sha256 file_hash;
      std::uint64_t done = 0;
      for (;;) {
        const auto n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        file_hash.update(buf.data(), static_cast<std::size_t>(n));
        if (archive_write_data(w.a, buf.data(), static_cast<std::size_t>(n)) < 0) {
          ::close(fd);
          if (!sink.error.empty()) throw Error(label + ": " + sink.error);
          archive_fail(w.a, label + ": " + src.rel);
        }
        done += static_cast<std::uint64_t>(n);
      }
      ::close(fd);
      if (done != f.size)
        throw Error(ErrorKind::invalid_argument, label + ": " + src.rel + " changed while packaging");
      f.sha256 = file_hash.finish();
    }
    m.files.push_back(std::move(f));
  }
  if (archive_write_close(w.a) != ARCHIVE_OK) {
    if (!sink.error.empty()) throw Error(label + ": " + sink.error);
    archive_fail(w.a, label);
  }
  sink.flush();
  m.chunks = workers.finish();
  m.payload_size = sink.total;
  m.payload_digest = sink.payload.finish();
  m.created_at = fs::now_unix();
  validate_manifest(m);
  if (!spec.signing_key_pem.empty()) security::sign_manifest(m, spec.signing_key_pem);
  return m;
}

void assemble_payload(const Manifest& manifest, const ChunkStore& chunks, const stdfs::path& out) {
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw Error("cannot write " + out.string() + ": " + std::strerror(errno));
  Sha256 payload;
  std::uint64_t total = 0;
  try {
    for (const auto& c : manifest.chunks) {
      const auto raw = chunks.read_verified(c.digest, kMaxChunkSize);
      if (raw.size() != c.size)
        throw Error(ErrorKind::integrity, "chunk " + c.digest + " has " + std::to_string(raw.size()) +
                                              " bytes, manifest says " + std::to_string(c.size));
      payload.update(raw);
      total += raw.size();
      std::size_t off = 0;
      while (off < raw.size()) {
        const auto n = ::write(fd, raw.data() + off, raw.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw Error("cannot write " + out.string() + ": " + std::strerror(errno));
        off += static_cast<std::size_t>(n);
      }
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  const auto digest = payload.finish();
  if (digest != manifest.payload_digest || total != manifest.payload_size)
    throw Error(ErrorKind::integrity, "package \"" + manifest.name + "\" " + manifest.version +
                                          ": payload failed verification (expected " +
                                          manifest.payload_digest + ", got " + digest + ")");
}

void extract_payload(const stdfs::path& archive_path, const stdfs::path& target_dir) {
  std::error_code ec;
  if (stdfs::exists(target_dir, ec))
    throw Error("extraction target " + target_dir.string() + " already exists");
  stdfs::create_directories(target_dir, ec);
  if (ec) throw Error("cannot create " + target_dir.string() + ": " + ec.message());
  auto refuse = [&](const std::string& why) {
    stdfs::remove_all(target_dir, ec);
    throw Error(ErrorKind::integrity, "payload refused: " + why);
  };

  ArchiveReader r;
  archive_read_support_format_tar(r.a);
  if (archive_read_open_filename(r.a, archive_path.c_str(), 1 << 16) != ARCHIVE_OK)
    refuse(std::string("cannot open archive: ") + archive_error_string(r.a));
  struct archive* disk = archive_write_disk_new();
  // Entry names were checked above; the destination is target_dir/name, an absolute path, so
  // libarchive's own absolute-path guard cannot be used, but its symlink guard can.
  archive_write_disk_set_options(
      disk, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT);
  struct Closer {
    struct archive* d;
    ~Closer() { archive_write_free(d); }
  } closer{disk};

  struct archive_entry* entry = nullptr;
  std::vector<std::pair<std::string, std::string>> links;
  for (;;) {
    const int rc = archive_read_next_header(r.a, &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK) refuse(std::string("corrupt archive: ") + archive_error_string(r.a));
    const char* name_c = archive_entry_pathname(entry);
    const std::string name = name_c ? name_c : "";
    if (!is_safe_relative_path(name)) refuse("entry \"" + name + "\" has an unsafe path");
    if (archive_entry_hardlink(entry)) refuse("entry \"" + name + "\" is a hard link");
    const auto type = archive_entry_filetype(entry);
    if (type == AE_IFLNK) {
      const char* t = archive_entry_symlink(entry);
      if (!t || !is_contained_symlink(name, t))
        refuse("symlink \"" + name + "\" points outside the install directory");
      links.emplace_back(name, t);
    } else if (type != AE_IFREG && type != AE_IFDIR) {
      refuse("entry \"" + name + "\" is not a regular file, directory or symlink");
    }
    const auto dest = (target_dir / name).string();
    archive_entry_set_pathname(entry, dest.c_str());
    archive_entry_set_uid(entry, ::getuid());
    archive_entry_set_gid(entry, ::getgid());
    if (archive_write_header(disk, entry) != ARCHIVE_OK)
      refuse("entry \"" + name + "\": " + archive_error_string(disk));
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    for (;;) {
      const int d = archive_read_data_block(r.a, &block, &size, &offset);
      if (d == ARCHIVE_EOF) break;
      if (d != ARCHIVE_OK) refuse("entry \"" + name + "\": " + archive_error_string(r.a));
      if (archive_write_data_block(disk, block, size, offset) != ARCHIVE_OK)
        refuse("entry \"" + name + "\": " + archive_error_string(disk));
    }
    if (archive_write_finish_entry(disk) != ARCHIVE_OK)
      refuse("entry \"" + name + "\": " + archive_error_string(disk));
  }
  if (archive_write_close(disk) != ARCHIVE_OK)
    refuse(std::string("cannot finish extraction: ") + archive_error_string(disk));
  // Links that leave the directory only through other links: nothing was written through them
  // (libarchive's symlink guard), and they do not stay.
  if (const auto bad = first_escaping_symlink(links); !bad.empty())
    refuse("symlink \"" + bad + "\" resolves outside the install directory (or loops) through other links");
}

}  // namespace distrib
