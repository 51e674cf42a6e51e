#include "util/fs.h"

#include <distrib/error.h>
#include <distrib/model/host.h>

#include <fcntl.h>
#include <unistd.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

namespace distrib::fs {

namespace stdfs = std::filesystem;

std::string read_file(const stdfs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(errno == ENOENT ? ErrorKind::not_found : ErrorKind::internal,
                "cannot read " + path.string() + ": " + std::strerror(errno));
  std::string out;
  char buf[65536];
  for (;;) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      throw Error("cannot read " + path.string() + ": " + std::strerror(err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

Error write_error(const stdfs::path& path, int err) {
  if (err == ENOSPC || err == EDQUOT)
    return Error(ErrorKind::insufficient_storage, "cannot write " + path.string() + ": " +
                                                      std::strerror(err) +
                                                      "; free space on its file system, then send it again");
  return Error("cannot write " + path.string() + ": " + std::strerror(err));
}

void write_file_atomic(const stdfs::path& path, std::string_view data, bool durable) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  auto tmp = path;
  tmp += ".tmp" + std::to_string(rng() % 1000000000);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw write_error(tmp, errno);
  // On any failure the temporary file goes: a full disk leaves nothing half-written behind.
  auto fail = [&](int err, bool open) {
    if (open) ::close(fd);
    ::unlink(tmp.c_str());
    return write_error(path, err);
  };
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    const auto n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw fail(errno, true);
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (durable && ::fsync(fd) != 0) throw fail(errno, true);
  if (::close(fd) != 0) throw fail(errno, false);
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw fail(errno, false);
}

void move_file_durable(const stdfs::path& from, const stdfs::path& to) {
  const int fd = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw write_error(to, errno);
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    throw write_error(to, err);
  }
  ::close(fd);
  if (::rename(from.c_str(), to.c_str()) != 0) throw write_error(to, errno);
}

void ensure_writable_dir(const stdfs::path& dir, std::string_view what) {
  if (dir.empty()) throw Error(ErrorKind::invalid_argument, std::string(what) + " is not set");
  std::error_code ec;
  stdfs::create_directories(dir, ec);
  if (ec)
    throw Error(ErrorKind::invalid_argument,
                std::string(what) + " " + dir.string() + " cannot be created: " + ec.message());
  if (!stdfs::is_directory(dir))
    throw Error(ErrorKind::invalid_argument, std::string(what) + " " + dir.string() + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw Error(ErrorKind::invalid_argument,
                std::string(what) + " " + dir.string() + " is not writable: " + std::strerror(errno));
}

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string load_or_create_host_id(const std::filesystem::path& file) {
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) {
    auto text = read_file(file);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (!is_valid_host_id(text))
      throw Error(ErrorKind::invalid_argument, "host identifier in " + file.string() + " is not a UUID");
    return text;
  }
  auto id = make_host_id();
  write_file_atomic(file, id + "\n");
  return id;
}

}  // namespace distrib::fs
