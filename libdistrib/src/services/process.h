#pragma once
// Running an install command: /bin/sh -c, its own process group, a hard timeout, and the tail of
// its combined output.
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace distrib {

struct CommandResult {
  int exit_code = -1;       ///< exit status, or 128+signal when killed by a signal
  bool timed_out = false;   ///< killed because it ran past the timeout
  std::string output_tail;  ///< last bytes of stdout and stderr, interleaved as written
};

/// Runs `command` through /bin/sh in `cwd`. Throws Error only when the process cannot be started.
CommandResult run_command(const std::string& command, const std::filesystem::path& cwd,
                          const std::map<std::string, std::string>& extra_env, std::chrono::seconds timeout,
                          std::size_t tail_bytes);

}  // namespace distrib
