#pragma once
// Chunk frames: how several compressed chunks travel in one body (segments served to agents and
// relays, batches uploaded by the packager): for each chunk a line "DIGEST SIZE" and then its
// SIZE bytes.
#include <distrib/error.h>
#include <distrib/model/package.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace distrib {

struct ChunkFrame {
  std::string digest;
  std::string_view bytes;  ///< into the body parsed
};

/// The head of one frame.
inline std::string chunk_frame_head(std::string_view digest, std::size_t size) {
  return std::string(digest) + " " + std::to_string(size) + "\n";
}

/// Every frame of `body`, checked before anything is done with them: at most `max_frames`, each
/// a SHA-256 digest and at most `max_size` bytes that the body holds. Throws
/// Error(invalid_argument) naming the first frame that is not one.
inline std::vector<ChunkFrame> parse_chunk_frames(std::string_view body, std::size_t max_frames,
                                                  std::uint64_t max_size) {
  std::vector<ChunkFrame> out;
  while (!body.empty()) {
    if (out.size() == max_frames)
      throw Error(ErrorKind::invalid_argument,
                  "a chunk batch holds at most " + std::to_string(max_frames) + " chunks");
    const auto eol = body.find('\n');
    const auto line = body.substr(0, eol == std::string_view::npos ? 0 : eol);
    const auto space = line.find(' ');
    ChunkFrame f;
    if (space != std::string_view::npos) f.digest = std::string(line.substr(0, space));
    const auto size_text = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
    const bool digits =
        !size_text.empty() && size_text.size() <= 9 &&
        std::all_of(size_text.begin(), size_text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (eol == std::string_view::npos || !is_sha256_hex(f.digest) || !digits)
      throw Error(ErrorKind::invalid_argument,
                  "chunk " + std::to_string(out.size() + 1) +
                      " of the batch does not start with a line \"DIGEST SIZE\"");
    const auto size = std::stoull(std::string(size_text));
    body.remove_prefix(eol + 1);
    if (size > max_size || size > body.size())
      throw Error(ErrorKind::invalid_argument, "chunk " + f.digest.substr(0, 12) + " declares " +
                                                   std::to_string(size) +
                                                   " bytes, more than the batch holds");
    f.bytes = body.substr(0, size);
    body.remove_prefix(size);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace distrib
