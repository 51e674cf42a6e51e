#pragma once
// SHA-256, the content address of every chunk and payload.
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace distrib {

/// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void update(const void* data, std::size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  /// Lower-case hex digest; the object is reset afterwards.
  std::string finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(std::string_view data);
/// Digest of a file's contents; throws Error when it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace distrib
