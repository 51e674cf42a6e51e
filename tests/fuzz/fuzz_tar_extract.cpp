// Payload extraction (extract_payload): what an agent does with an archive whose chunks matched
// its manifest. Any archive must either extract inside the target directory or be refused,
// never write outside it.
#include <distrib/content/packager.h>
#include <distrib/error.h>

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace stdfs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const stdfs::path base = [] {
    auto p = stdfs::temp_directory_path() / ("distrib-fuzz-tar-" + std::to_string(::getpid()));
    stdfs::create_directories(p);
    return p;
  }();
  const auto archive = base / "payload.tar", target = base / "root" / "out";
  {
    std::ofstream out(archive, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  std::error_code ec;
  stdfs::remove_all(base / "root", ec);
  stdfs::create_directories(base / "root", ec);
  try {
    distrib::extract_payload(archive, target);
  } catch (const distrib::Error&) {
  }
  // Nothing may appear beside the target: the extraction stays inside it.
  for (const auto& e : stdfs::directory_iterator(base / "root", ec))
    if (e.path().filename() != "out") __builtin_trap();
  stdfs::remove_all(base / "root", ec);
  return 0;
}
