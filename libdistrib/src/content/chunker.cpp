#include <distrib/content/chunker.h>
#include <distrib/error.h>

#include <array>
#include <bit>
#include <string>

namespace distrib {

namespace {

// 256 pseudo-random 64-bit values (splitmix64 from a fixed seed). Part of the format: the same
// table must cut the same bytes in the same places on every machine and in every version.
constexpr std::array<std::uint64_t, 256> make_gear() {
  std::array<std::uint64_t, 256> t{};
  std::uint64_t x = 0x6469737472696221ULL;  // "distrib!"
  for (auto& v : t) {
    x += 0x9E3779B97F4A7C15ULL;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    v = z ^ (z >> 31);
  }
  return t;
}
constexpr auto kGear = make_gear();

// A mask of `bits` one-bits spread over the top 48 bits of the fingerprint: with the
// shift-and-add gear hash, high bits depend on a window of up to 64 bytes, low bits only on the
// last few.
constexpr std::uint64_t spread_mask(int bits) {
  std::uint64_t m = 0;
  const int step = bits > 0 ? 48 / bits : 1;
  for (int i = 0; i < bits; ++i) m |= std::uint64_t{1} << (63 - i * step);
  return m;
}

}  // namespace

ChunkingParams chunking_for_average(std::uint64_t average) {
  if (average < 1024 || average > 4 * 1024 * 1024 || !std::has_single_bit(average))
    throw Error(ErrorKind::invalid_argument, "average chunk size " + std::to_string(average) +
                                                 " must be a power of two between 1 KiB and 4 MiB");
  const auto avg = static_cast<std::uint32_t>(average);
  return {avg / 4, avg, avg * 4};
}

std::size_t cdc_cut(const std::uint8_t* data, std::size_t size, const ChunkingParams& p) noexcept {
  if (size <= p.min) return size;
  const std::size_t n = std::min<std::size_t>(size, p.max);
  const std::size_t normal = std::min<std::size_t>(n, p.average);
  const int bits = static_cast<int>(std::bit_width(p.average)) - 1;
  // Normalized chunking (level 2): harder to cut before the average, easier after it, which
  // narrows the size distribution around the average.
  const std::uint64_t mask_small = spread_mask(bits + 2), mask_large = spread_mask(bits - 2);
  std::uint64_t fp = 0;
  std::size_t i = p.min;
  for (; i < normal; ++i) {
    fp = (fp << 1) + kGear[data[i]];
    if ((fp & mask_small) == 0) return i;
  }
  for (; i < n; ++i) {
    fp = (fp << 1) + kGear[data[i]];
    if ((fp & mask_large) == 0) return i;
  }
  return n;
}

}  // namespace distrib
