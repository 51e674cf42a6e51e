#pragma once
// The agent: registers with its parent, long-polls for work, fetches and verifies content,
// installs, and reports through a durable outbox.
#include <distrib/model/job.h>
#include <distrib/services/inventory.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace distrib {

/// An ID group the agent joins at every registration (agent configuration).
struct GroupJoin {
  std::string name;
  std::string password;
};

struct AgentSettings {
  std::filesystem::path state_dir;  ///< host-id, outbox, chunk cache, install records
  /// Parents in order of preference, "http(s)://host:port". The agent talks to the first that
  /// answers and goes back to the first as soon as it answers again.
  std::vector<std::string> parents;
  int parent_recheck_seconds = 30;     ///< how often the first parent is probed while away from it
  std::string ca_file;                 ///< verifies an https parent
  std::string bind_address;            ///< local address for outgoing connections (optional)
  std::string host_name;               ///< overrides the system host name (tests, containers)
  std::filesystem::path packages_dir;  ///< default install root; empty: state_dir/packages
  /// Bytes of chunks kept after installs (compressed, as stored). 0: twice the largest package
  /// held; UINT64_MAX: no limit. Chunks no installed or in-flight package needs go first, oldest
  /// first, then the oldest of installed packages (fetched again when a repair needs them).
  std::uint64_t chunk_cache_limit = 0;
  int poll_timeout_seconds = 30;
  int retry_min_ms = 200;  ///< backoff after a failed contact, doubled up to retry_max_ms (at most 1 s
                           ///< during the first 30 s of an outage), each wait jittered
  int retry_max_ms = 5000;
  int chunk_retries = 3;  ///< fetches of a chunk that fails verification before giving up
  /// This agent's own limit on split distribution: the smaller segment size wins (hop_split).
  SplitSpec split_max;
  /// Segment size of transfers that are not split (one request, no pause, per segment).
  std::uint64_t segment_bytes = 8ull << 20;
  std::size_t output_tail_bytes = 4096;
  std::vector<GroupJoin> id_groups;  ///< ID groups joined at registration
  /// Longest an orderly stop spends on installs timed "at agent stop" before exiting.
  int stop_install_seconds = 60;
  /// Inventory: the collectors run every `inventory_check_seconds` (0: only for jobs); a full
  /// report goes up when anything but volatile values changed (after an install too), and at
  /// least every `inventory_interval_seconds` (0: only on change).
  int inventory_check_seconds = 300;
  int inventory_interval_seconds = 86400;
  /// User inventory: "NAME=VALUE" lines read from this file (optional), besides the values
  /// `Agent::set_user_inventory` keeps in the state directory.
  std::filesystem::path user_inventory_file;
  /// Collectors run besides the platform's (an integrator's own facts about the machine).
  std::vector<std::shared_ptr<InventoryCollector>> collectors;
  /// Remote collection: files are only sent from under these directories or matching these
  /// glob patterns (after symbolic links are resolved). Empty: this agent sends no files.
  std::vector<std::string> collect_allow;
  /// Carry out the orders of jobs created at the parent relay itself (its own ID groups), signed
  /// with the relay's key. Off: only orders signed at the top run (a relay cannot issue work).
  bool accept_relay_orders = false;
  /// Publisher signatures (docs/SECURITY.md): public keys (PEM files, Ed25519) trusted besides
  /// the top manager's signed trusted set. Signed packages are required once any key is trusted,
  /// or always with `require_signed_packages`.
  std::vector<std::filesystem::path> publisher_keys;
  bool require_signed_packages = false;

  // --- identity (docs/SECURITY.md): with an https parent the agent makes a key at its first
  // start and enrols: it sends a certificate request and waits until an administrator accepts
  // it (distribctl hosts accept) or a token has it accepted at once. It trusts the CA of an
  // enrolment bundle, of ca_file, or the one its parent shows when its fingerprint is
  // ca_fingerprint; never one it was not told about.
  std::filesystem::path enrol_bundle;  ///< distribctl enrol-bundle: servers, CA, optional token
  std::string enrol_token;             ///< distrib-enrol-ID-SECRET
  std::string ca_fingerprint;          ///< "sha256:HEX" of the CA certificate
};

/// What a join or leave asked from the agent's machine did.
struct JoinOutcome {
  std::string group;
  std::string owner;         ///< host id of the manager or relay that owns the group
  bool changed = false;      ///< joined (was not a member) or left (was one)
  std::int64_t entries = 0;  ///< standing jobs this host receives (join) or entries cancelled (leave)
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
  /// Asks run() to return; safe from any thread and from a signal-handling thread. Before it
  /// returns, run() installs what is timed "at agent stop" (bounded by stop_install_seconds).
  void stop();

  /// Registers with the first parent that answers and joins (or leaves) an ID group owned by it
  /// or a server above it; the command run on the agent's machine. Throws Error with the
  /// server's reason (unknown group, wrong password) when refused.
  JoinOutcome join_group(const std::string& group, const std::string& password, bool leave = false);

  /// Sets user inventory values on this machine (an empty value removes one); they are reported
  /// at the agent's next inventory check. Values are checked against the field definitions the
  /// agent last received from its parent; throws Error(invalid_argument) naming a field that is
  /// not defined or a value that does not fit, and changes nothing then.
  static void set_user_inventory(const std::filesystem::path& state_dir,
                                 const std::map<std::string, std::string>& values);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace distrib
