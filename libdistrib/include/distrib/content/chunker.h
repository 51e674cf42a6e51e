#pragma once
// Content-defined chunking (FastCDC, Xia et al., USENIX ATC 2016, with normalized chunking):
// cut points depend on the bytes around them, not on their offset, so inserting or changing
// bytes in one place moves only the cuts nearby and a new version of a package shares every
// other chunk with the old one.
#include <cstddef>
#include <cstdint>

namespace distrib {

/// Bounds of chunk sizes. `average` must be a power of two; min < average < max.
struct ChunkingParams {
  std::uint32_t min = 4 * 1024;
  std::uint32_t average = 16 * 1024;
  std::uint32_t max = 64 * 1024;
};
/// The bounds used for an average size: min = average / 4, max = average * 4.
/// Throws Error(invalid_argument) unless average is a power of two between 1 KiB and 4 MiB.
ChunkingParams chunking_for_average(std::uint64_t average);

/// Length of the first chunk of `data` (size bytes): `size` itself when size <= params.min, never
/// more than params.max. The gear table is fixed: changing it would change every cut point.
std::size_t cdc_cut(const std::uint8_t* data, std::size_t size, const ChunkingParams& params) noexcept;

}  // namespace distrib
