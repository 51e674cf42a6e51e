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

}  // namespace distrib
