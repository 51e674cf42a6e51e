#pragma once
// Sizes as operators write them in configuration and on the command line.
#include <cstdint>
#include <string>
#include <string_view>

namespace distrib {

/// Parses "1048576", "512KiB", "100MiB", "10GiB", "1TiB" (also K/M/G/T, KB/MB/GB/TB as powers
/// of 1024, case-insensitive, optional space). Throws Error(invalid_argument) naming the text.
std::uint64_t parse_byte_size(std::string_view text);
/// "1.5 GiB", "512 KiB", "17 B".
std::string format_byte_size(std::uint64_t bytes);

/// Parses a point in time as operators write it, relative to `now` (unix seconds):
/// "+90s", "+10m", "+2h", "+1d" (from now), "@1767225600" (unix seconds),
/// "2026-12-01T22:00:00Z" (UTC) or "2026-12-01 22:00" / "2026-12-01T22:00:00" (local time).
/// Throws Error(invalid_argument) naming the text.
std::int64_t parse_time_spec(std::string_view text, std::int64_t now);
/// Parses a duration: "90", "90s", "10m", "2h", "1d". Throws Error(invalid_argument).
std::int64_t parse_duration_seconds(std::string_view text);

}  // namespace distrib
