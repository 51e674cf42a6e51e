#pragma once
// Inventory: what a host is and what runs on it, as flat items ("system.os.version" → "12").
//
// Keys are dotted paths under three roots: `system.` (hardware and operating system),
// `software.` (installed packages: software.dpkg.NAME, software.rpm.NAME, software.distrib.NAME,
// each with the version as value) and `user.` (fields the administrator defines). A flat map is
// what the store keeps, what the history diffs and what queries address.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace distrib {

using InventoryItems = std::map<std::string, std::string>;

/// What a report covers: its items replace the host's items under these roots only.
enum class InventoryScope { system, software, full };
std::string_view to_string(InventoryScope scope) noexcept;
InventoryScope parse_inventory_scope(std::string_view text);
/// Does `key` belong to what a report of `scope` replaces? (system covers system.* and user.*,
/// software covers software.*, full covers everything.)
bool in_scope(InventoryScope scope, std::string_view key) noexcept;

/// Values that move all the time (free space, available memory, uptime): stored as reported,
/// never a change in the history and never a reason to send a report.
bool is_volatile_key(std::string_view key) noexcept;

/// Keys: 1-255 characters, no control characters, starting with system., software. or user.
/// Throws Error(invalid_argument) naming the key otherwise.
void validate_inventory_key(std::string_view key);

/// A full or partial report from an agent.
struct InventoryReport {
  std::string host_id;
  InventoryScope scope = InventoryScope::full;
  std::int64_t collected_at = 0;
  InventoryItems items;
  /// The digest handshake: the agent left its stable items out because their digests
  /// (inventory_digest of each scope) equal what the manager acknowledged last; `items` holds
  /// volatile values only. Stored only when the digests match what is stored.
  bool stable_elided = false;
  std::string system_digest, software_digest;  ///< with stable_elided, for the scopes reported
};

/// SHA-256 over the stable items of `scope` (volatile ones left out), to tell "nothing changed".
std::string inventory_digest(const InventoryItems& items, InventoryScope scope = InventoryScope::full);

/// One line of a host's inventory history.
struct InventoryChange {
  enum class Kind { added, removed, changed };
  Kind kind = Kind::added;
  std::string key;
  std::string old_value;  ///< removed, changed
  std::string new_value;  ///< added, changed
  std::int64_t at = 0;
};
std::string_view to_string(InventoryChange::Kind kind) noexcept;
InventoryChange::Kind parse_inventory_change_kind(std::string_view text);

/// Changes from `before` to `after` among the keys of `scope`, volatile keys left out, by key.
std::vector<InventoryChange> diff_inventory(const InventoryItems& before, const InventoryItems& after,
                                            InventoryScope scope);

/// A host's inventory as the manager keeps it.
struct HostInventory {
  std::string host_id;
  std::int64_t collected_at = 0;  ///< when the agent collected the latest report
  std::int64_t reported_at = 0;   ///< when the manager received it
  InventoryItems items;
};

// --- comparison and queries -----------------------------------------------------------------

/// Debian's version ordering (epoch:upstream-revision, '~' before everything); also orders
/// plain numbers and dotted versions the way people expect. <0, 0, >0.
int compare_versions(std::string_view a, std::string_view b) noexcept;

/// One condition of a query: FIELD OP VALUE, or FIELD exists / FIELD missing.
///  = and != compare text exactly (a value with '*' or '?' is a glob); <, <=, >, >= compare as
///  numbers when both sides are numbers or byte sizes ("10GiB"), otherwise as versions.
///  FIELD may hold '*' to stand for any part of a key ("system.disk.*.free_bytes"): the
///  condition holds when any matching item satisfies it.
struct InventoryCondition {
  enum class Op { eq, ne, lt, le, gt, ge, exists, missing };
  std::string field;
  Op op = Op::eq;
  std::string value;
};
/// Conditions joined by "and".
struct InventoryQuery {
  std::vector<InventoryCondition> conditions;
  bool empty() const noexcept { return conditions.empty(); }
};
/// Parses `software.dpkg.bash >= 5.2 and system.os.version = 12`. Values may be quoted ("..." or
/// '...'). Throws Error(invalid_argument) naming the position and what was expected.
InventoryQuery parse_inventory_query(std::string_view text);
std::string to_string(const InventoryQuery& query);
/// Does one value satisfy the condition's operator (exists/missing are decided by the caller)?
bool condition_holds(const InventoryCondition& c, std::string_view value) noexcept;
/// Does a host with these items satisfy every condition?
bool query_matches(const InventoryQuery& query, const InventoryItems& items);

// --- administrator-defined fields ("user inventory") --------------------------------------------

enum class InventoryFieldType { text, number, choice };
std::string_view to_string(InventoryFieldType type) noexcept;
InventoryFieldType parse_inventory_field_type(std::string_view text);

/// A field the administrator defines; agents report its value as item "user.NAME".
struct InventoryField {
  std::string name;  ///< letters, digits, '-', '_' (validate_group_name rules)
  InventoryFieldType type = InventoryFieldType::text;
  std::vector<std::string> allowed;  ///< choice: the values allowed
  std::string description;
  friend bool operator==(const InventoryField&, const InventoryField&) = default;
};
/// Throws Error(invalid_argument) when the definition cannot work (bad name, a choice without
/// values, values on a field that is not a choice).
void validate_inventory_field(const InventoryField& field);
/// Throws Error(invalid_argument) naming the field and what it accepts when `value` does not fit.
void check_field_value(const InventoryField& field, std::string_view value);

/// Checks the value of user field `name` against the definitions: throws Error(invalid_argument)
/// when no field of that name is defined or the value does not fit it.
void check_user_value(const std::vector<InventoryField>& fields, std::string_view name,
                      std::string_view value);

/// Parses "NAME=VALUE" lines (blank lines and '#' comments skipped); throws Error naming the line.
std::map<std::string, std::string> parse_assignments(std::string_view text, std::string_view source);

/// What storing an inventory report did.
struct InventoryIngest {
  bool first = false;      ///< the host's first report (its items are not listed in the history)
  bool unchanged = false;  ///< nothing but volatile values differed from what was stored
  std::size_t items = 0;   ///< items the report carried
  std::vector<InventoryChange> changes;  ///< recorded in the history
  std::string error;                     ///< batches only: why this report was not stored (the others were)
  /// A report with its stable items left out whose digests are not what is stored (a restored or
  /// new database): nothing was stored, the agent must send its full report.
  bool digest_unknown = false;
  /// The host's stored digests after the report (what an agent may name in its next report).
  std::string system_digest, software_digest;
};

/// One stored inventory value (query results).
struct InventoryValue {
  std::string host_id;
  std::string key;
  std::string value;
};

/// A file a collect-files job brought back.
struct CollectedFile {
  std::int64_t job_id = 0;
  std::string host_id;
  std::string host_name;  ///< filled in by queries for display
  std::string path;       ///< as on the agent's machine
  std::int64_t size = 0;
  std::string sha256;
  std::int64_t stored_at = 0;
};

}  // namespace distrib
