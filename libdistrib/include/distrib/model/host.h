#pragma once
// Hosts and the manager's "ID key for operations".
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace distrib {

/// Which attribute of a host the operator uses to name it in destinations.
enum class HostKeyMode { name, ip, host_id };
std::string_view to_string(HostKeyMode mode) noexcept;
/// Parses "name", "ip" or "host-id"; throws Error(invalid_argument) listing the accepted values.
HostKeyMode parse_host_key_mode(std::string_view text);

/// The part a host plays in the hierarchy.
enum class HostRole { agent, relay, manager };
std::string_view to_string(HostRole role) noexcept;
HostRole parse_host_role(std::string_view text);

/// A managed machine as the manager knows it.
struct Host {
  std::string host_id;                 ///< UUID created once by the agent and kept in its state dir
  std::string name;                    ///< host name as reported at registration
  std::vector<std::string> addresses;  ///< IP addresses; the first is the one seen by the parent
  std::string os;                      ///< OS description, e.g. "Debian GNU/Linux 12 (x86_64)"
  HostRole role = HostRole::agent;
  std::string parent;  ///< host id of the parent; empty when directly under this manager
  /// Host id of this manager's direct child through which the host is reached: the host itself
  /// when it registered here directly, otherwise the relay that reported it.
  std::string via;
  bool approved = true;  ///< false while automatic registration is off and no one approved it
  std::string agent_version;
  std::int64_t registered_at = 0;  ///< unix seconds
  std::int64_t last_seen = 0;      ///< unix seconds
};

/// The host ids from `host_id` up to the top of the tree known in `hosts` (the host first), by
/// following parents. Stops at an unknown parent or at a cycle.
std::vector<std::string> parent_path(const std::vector<Host>& hosts, const std::string& host_id);

/// True when `text` is a canonical lower-case RFC 4122 UUID ("8-4-4-4-12" hex).
bool is_valid_host_id(std::string_view text) noexcept;
/// What a host says of itself when it registers (or a relay says of it), within limits checked
/// before anything is stored: a host id (a UUID, not the nil one), a name of 1 to 253 characters,
/// at most 32 addresses of at most 64 characters, an OS description of at most 256 and an agent
/// version of at most 64, none with control characters, and the role agent or relay. Throws
/// Error(invalid_argument) naming the first field out of bounds.
void validate_host_fields(const Host& host);
constexpr std::size_t kMaxHostName = 253, kMaxAddresses = 32, kMaxAddress = 64, kMaxOs = 256,
                      kMaxAgentVersion = 64;
/// Creates a random (version 4) UUID.
std::string make_host_id();

/// Does `host` answer to `key` in `mode`? For `ip` any of its addresses matches; names compare
/// case-insensitively.
bool host_matches(const Host& host, HostKeyMode mode, std::string_view key);
/// A key as hosts are looked up by it in `mode`: names lower-cased (ASCII), addresses as given.
std::string normalise_host_key(HostKeyMode mode, std::string_view key);

/// Result of turning operator-given destination keys into host ids.
struct DestinationResolution {
  std::vector<std::string> host_ids;   ///< one per distinct host, in the order first named
  std::vector<std::string> unknown;    ///< keys no host answers to
  std::vector<std::string> ambiguous;  ///< keys more than one host answers to
  bool ok() const noexcept { return unknown.empty() && ambiguous.empty(); }
};
DestinationResolution resolve_destinations(const std::vector<Host>& hosts, HostKeyMode mode,
                                           const std::vector<std::string>& keys);

/// Keys (in `mode`) claimed by more than one host: what the operator must sort out before
/// those keys can be used as destinations.
std::vector<std::string> duplicate_keys(const std::vector<Host>& hosts, HostKeyMode mode);

/// What registering a host changed.
struct HostChange {
  bool created = false;
  bool changed = false;      ///< created, or any attribute other than last_seen differs
  std::string previous_via;  ///< the host's `via` before the call (empty when created)
};

}  // namespace distrib
