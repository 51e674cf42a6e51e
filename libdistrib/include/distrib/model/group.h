#pragma once
// Host groups (an administrator's named sets of hosts) and ID groups (sets hosts join, to which
// jobs are addressed standing: every member, including later ones, receives them).
#include <distrib/model/host.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace distrib {

/// Group names: 1-64 characters of letters, digits, '.', '-', '_'; must start with a letter or
/// digit. Throws Error(invalid_argument) naming the text otherwise.
void validate_group_name(std::string_view name, std::string_view what);
/// A description an operator writes (groups, ID groups, inventory fields): at most
/// kMaxDescriptionLength bytes, no control characters but tab. Throws Error(invalid_argument).
constexpr std::size_t kMaxDescriptionLength = 1024;
void validate_description(std::string_view text, std::string_view what);

struct HostGroup {
  std::string name;
  std::string description;
  std::int64_t created_at = 0;
  std::vector<std::string> members;  ///< host ids
  /// A dynamic group: an inventory query (parse_inventory_query), evaluated whenever the group is
  /// used; `members` then holds the hosts that matched at that moment.
  std::string query;
};

/// How a host came to be a member of an ID group.
enum class JoinMethod { config, command, admin, policy };
std::string_view to_string(JoinMethod how) noexcept;
JoinMethod parse_join_method(std::string_view text);

/// Evaluated when a host registers (or its name or addresses change): a host that matches any
/// set rule joins the group.
struct JoinPolicy {
  std::string name_pattern;  ///< shell glob on the host name, case-insensitive ("web-*")
  std::string ip_range;      ///< IPv4 or IPv6 CIDR ("10.1.0.0/16")
  bool empty() const noexcept { return name_pattern.empty() && ip_range.empty(); }
};
/// Throws Error(invalid_argument) when the range is not a CIDR.
void validate_join_policy(const JoinPolicy& policy);
bool policy_matches(const JoinPolicy& policy, const Host& host);

/// Shell-style glob ('*', '?', '[...]'), case-insensitive.
bool glob_matches(std::string_view pattern, std::string_view text) noexcept;
/// Is `address` inside `cidr` ("10.0.0.0/8", "fd00::/8", or a single address)? False when either
/// does not parse.
bool address_in_range(std::string_view address, std::string_view cidr) noexcept;

struct IdGroupMember {
  std::string host_id;
  std::string host_name;  ///< filled in by queries for display
  JoinMethod how = JoinMethod::admin;
  std::int64_t joined_at = 0;
};

struct IdGroup {
  std::string name;
  std::string description;
  std::string owner;          ///< host id of the manager or relay that owns it
  std::string password_hash;  ///< "" when joining needs no password (never sent to clients)
  JoinPolicy policy;
  std::int64_t created_at = 0;
  std::vector<IdGroupMember> members;
  bool has_password() const noexcept { return !password_hash.empty(); }
};

/// Salted SHA-256 of a join password ("sha256$<salt>$<hex>").
std::string hash_join_password(std::string_view password);
/// Constant-time check of `password` against a hash_join_password result.
bool check_join_password(std::string_view password, std::string_view hash);

/// What joining or leaving an ID group changed.
struct MembershipChange {
  int changed = 0;                ///< hosts that joined (were not members) or left (were)
  std::int64_t entries = 0;       ///< entries created for standing jobs, or cancelled on leaving
  std::vector<std::string> vias;  ///< direct children whose work changed
};

}  // namespace distrib
