#pragma once
// The agent: registers with its parent, long-polls for work, fetches and verifies content,
// installs, and reports through a durable outbox.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace distrib {

struct AgentSettings {
  std::filesystem::path state_dir;  ///< host-id, outbox, chunk cache, install records
  /// Parents in order of preference, "http(s)://host:port". The agent talks to the first that
  /// answers and goes back to the first as soon as it answers again.
  std::vector<std::string> parents;
  int parent_recheck_seconds = 30;  ///< how often the first parent is probed while away from it
  std::string ca_file;              ///< verifies an https parent
  std::string bind_address;         ///< local address for outgoing connections (optional)
  std::string host_name;            ///< overrides the system host name (tests, containers)
  std::filesystem::path packages_dir;  ///< default install root; empty: state_dir/packages
  int poll_timeout_seconds = 30;
  int retry_min_ms = 200;    ///< backoff after a failed contact, doubled up to retry_max_ms
  int retry_max_ms = 5000;
  int chunk_retries = 3;     ///< fetches of a chunk that fails verification before giving up
  std::size_t output_tail_bytes = 4096;
};

class Agent {
public:
  /// Prepares the state directory and creates the host identifier on first start. Throws Error
  /// with a one-line reason when the directory is missing and cannot be created or is unwritable.
  explicit Agent(AgentSettings settings);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  const std::string& host_id() const noexcept;
  /// Runs until stop() is called. Network failures are retried with backoff, never thrown.
  void run();
  /// Asks run() to return; safe from any thread and from a signal-handling thread.
  void stop();

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace distrib
