#pragma once
// Log lines that outside text cannot forge: names, messages and paths that came from hosts or
// clients may hold newlines or terminal escapes; every line is written with its control
// characters escaped, so one event stays one line.
#include <string>
#include <string_view>

namespace distrib {

/// Formats every log line with `pattern` (spdlog's pattern syntax) with the control characters
/// of each message escaped (escape_control_characters). Call once at start, before threads log.
void set_log_format(const std::string& pattern);

/// `text` with \n, \r and \t written as those two characters, other control characters (and
/// DEL) as \xNN, and backslashes as they are.
std::string escape_control_characters(std::string_view text);

}  // namespace distrib
