#pragma once
// Reading rows into model types, and the SQL fragments (column lists, state lists) the facilities
// of SociStore share.
#include <distrib/error.h>
#include <distrib/model/cluster.h>
#include <distrib/model/host.h>
#include <distrib/model/job.h>

#include "model/json_codec.h"

#include <soci/soci.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace distrib::store {

using ll = long long;

inline std::int64_t get_i64(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return 0;
  switch (r.get_properties(i).get_data_type()) {
    case soci::dt_integer:
      return r.get<int>(i);
    case soci::dt_long_long:
      return r.get<long long>(i);
    case soci::dt_unsigned_long_long:
      return static_cast<std::int64_t>(r.get<unsigned long long>(i));
    case soci::dt_double:
      return static_cast<std::int64_t>(r.get<double>(i));
    case soci::dt_string:
      return std::stoll(r.get<std::string>(i));
    default:
      throw Error("unexpected column type in " + r.get_properties(i).get_name());
  }
}
inline std::optional<std::int64_t> get_opt_i64(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return std::nullopt;
  return get_i64(r, i);
}
inline std::string get_str(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return {};
  return r.get<std::string>(i);
}

// PostgreSQL array literals ({"a","b"}, {1,2}) for statements that insert many rows from arrays
// bound as one parameter each and unnested by the server: one round trip where SOCI's
// PostgreSQL backend would run a bulk-bound statement once per row.
template <class It>
std::string pg_text_array(It first, It last) {
  std::string a = "{";
  for (auto it = first; it != last; ++it) {
    a += it == first ? "\"" : ",\"";
    for (char c : *it) {
      if (c == '"' || c == '\\') a += '\\';
      a += c;
    }
    a += '"';
  }
  return a + "}";
}
template <class It>
std::string pg_int_array(It first, It last) {
  std::string a = "{";
  for (auto it = first; it != last; ++it) a += (it == first ? "" : ",") + std::to_string(*it);
  return a + "}";
}

inline std::string join_addresses(const std::vector<std::string>& a) {
  std::string out;
  for (const auto& s : a) out += (out.empty() ? "" : ",") + s;
  return out;
}
inline std::vector<std::string> split_addresses(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < s.size()) {
    auto end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

inline const char* kHostColumns =
    "host_id, name, addresses, os, role, parent, agent_version, registered_at, last_seen, via, "
    "approved";
inline Host host_from_row(const soci::row& r) {
  Host h;
  h.host_id = get_str(r, 0);
  h.name = get_str(r, 1);
  h.addresses = split_addresses(get_str(r, 2));
  h.os = get_str(r, 3);
  h.role = parse_host_role(get_str(r, 4));
  h.parent = get_str(r, 5);
  h.agent_version = get_str(r, 6);
  h.registered_at = get_i64(r, 7);
  h.last_seen = get_i64(r, 8);
  h.via = get_str(r, 9);
  h.approved = get_i64(r, 10) != 0;
  return h;
}

inline const char* kEntryColumns =
    "e.id, e.job_id, e.host_id, h.name, e.state, e.attempt, e.last_seq, e.exit_code, e.message, "
    "e.output_tail, e.updated_at, h.parent, p.name, e.wave, e.late_join, e.ready_at, e.seg_done, "
    "e.seg_total, e.bytes_received, e.bad_chunks";
/// Appended to kEntryColumns where the entry's signed order is needed (work for a host).
inline const char* kEntrySignedOrder = ", e.signed_order";
inline const char* kEntryFrom =
    " FROM job_entries e LEFT JOIN hosts h ON h.host_id = e.host_id LEFT JOIN hosts p ON "
    "p.host_id = h.parent ";
inline JobEntry entry_from_row(const soci::row& r) {
  JobEntry e;
  e.id = get_i64(r, 0);
  e.job_id = get_i64(r, 1);
  e.host_id = get_str(r, 2);
  e.host_name = get_str(r, 3);
  e.state = parse_entry_state(get_str(r, 4));
  e.attempt = static_cast<std::int32_t>(get_i64(r, 5));
  e.last_seq = get_i64(r, 6);
  if (auto x = get_opt_i64(r, 7)) e.exit_code = static_cast<int>(*x);
  e.message = get_str(r, 8);
  e.output_tail = get_str(r, 9);
  e.updated_at = get_i64(r, 10);
  e.parent_id = get_str(r, 11);
  e.parent_name = get_str(r, 12);
  e.wave = static_cast<int>(get_i64(r, 13));
  e.late_join = get_i64(r, 14) != 0;
  e.ready_at = get_i64(r, 15);
  e.progress.segments_done = get_i64(r, 16);
  e.progress.segments_total = get_i64(r, 17);
  e.progress.bytes_received = get_i64(r, 18);
  e.progress.bad_chunks = get_i64(r, 19);
  if (r.size() > 20) e.signed_order = get_str(r, 20);  // selected with kEntrySignedOrder
  return e;
}

// The job's type-specific parameters (jobs.params): the collect specification, force.
inline void read_params(const std::string& params, Job& j) {
  if (params.empty()) return;
  const auto o = json::parse_object(params);
  if (auto c = o.find("collect"); c != o.end() && c->value().is_object())
    j.collect = json::collect_from_json(c->value().as_object());
  if (auto f = o.find("force"); f != o.end() && f->value().is_bool()) j.force = f->value().as_bool();
}

inline const char* kJobColumns =
    "id, type, package_name, package_version, destinations, key_mode, created_by, created_at, "
    "cancel_requested, upstream_id, start_at, expires_at, timing, window_spec, max_retries, "
    "retry_installs, retry_backoff, waves, success_threshold, error_threshold, rollout_state, "
    "current_wave, rollout_message, id_groups, split_size, split_interval, params";

inline std::string join_waves(const std::vector<int>& waves) {
  std::string out;
  for (int w : waves) out += (out.empty() ? "" : ",") + std::to_string(w);
  return out;
}
inline Job job_from_row(const soci::row& r) {
  Job j;
  j.id = get_i64(r, 0);
  j.type = parse_job_type(get_str(r, 1));
  j.package_name = get_str(r, 2);
  j.package_version = get_str(r, 3);
  j.destinations = split_addresses(get_str(r, 4));
  j.key_mode = get_str(r, 5);
  j.created_by = get_str(r, 6);
  j.created_at = get_i64(r, 7);
  j.cancel_requested = get_i64(r, 8) != 0;
  j.upstream_id = get_i64(r, 9);
  j.schedule.start_at = get_i64(r, 10);
  j.schedule.expires_at = get_i64(r, 11);
  j.schedule.timing = parse_install_timing(get_str(r, 12));
  if (const auto w = get_str(r, 13); !w.empty()) j.schedule.window = parse_daily_window(w);
  j.schedule.max_retries = static_cast<int>(get_i64(r, 14));
  j.schedule.retry_installs = get_i64(r, 15) != 0;
  j.schedule.retry_backoff_seconds = static_cast<int>(get_i64(r, 16));
  if (const auto w = get_str(r, 17); !w.empty()) j.rollout.waves = parse_waves(w);
  j.rollout.success_threshold = static_cast<int>(get_i64(r, 18));
  j.rollout.error_threshold = static_cast<int>(get_i64(r, 19));
  j.rollout_state = parse_rollout_state(get_str(r, 20));
  j.current_wave = static_cast<int>(get_i64(r, 21));
  j.rollout_message = get_str(r, 22);
  j.id_groups = split_addresses(get_str(r, 23));
  j.split.size = static_cast<std::uint64_t>(get_i64(r, 24));
  j.split.interval_seconds = static_cast<int>(get_i64(r, 25));
  read_params(get_str(r, 26), j);
  return j;
}

// The SQL list "('waiting', ...)" of the entry states `keep` selects, from the model's state machine.
template <class Keep>
inline std::string state_list(Keep keep) {
  std::string out;
  for (const auto state : kAllEntryStates)
    if (keep(state)) out += std::string(out.empty() ? "('" : ", '") + std::string(to_string(state)) + "'";
  return out + ")";
}
// States an operator's cancel moves to cancelled (an install under way runs to its end).
inline const std::string kCancellable =
    state_list([](EntryState s) { return can_transition(s, EntryState::cancelled); });
// States of entries not yet ended.
inline const std::string kOpen = state_list([](EntryState s) { return !is_final(s); });

inline bool host_differs(const Host& a, const Host& b) {
  return a.name != b.name || a.addresses != b.addresses || a.os != b.os || a.role != b.role ||
         a.parent != b.parent || a.agent_version != b.agent_version || a.via != b.via;
}

inline LeaseRecord lease_from_row(const soci::row& r) {
  return {get_str(r, 0), get_str(r, 1), get_i64(r, 2), get_i64(r, 3), get_i64(r, 4)};
}

// --- The queries of the hot paths: every registration, poll and wake-up runs these, so an
// index must serve each (a full scan costs more with every host). The facilities run them as
// written here; DataStore::query_plans explains them, and a test fails on a full scan.
inline const std::string kHostByIdSql =
    std::string("SELECT ") + kHostColumns + " FROM hosts WHERE host_id = :id";
inline const std::string kHostsByNameSql =
    std::string("SELECT ") + kHostColumns + " FROM hosts WHERE name_key = :k";
inline const std::string kHostsByAddressSql =
    std::string("SELECT ") + kHostColumns +
    " FROM hosts WHERE host_id IN (SELECT host_id FROM host_addresses WHERE address = :k)";
inline const std::string kTouchHostSql =
    "UPDATE hosts SET last_seen = :t WHERE host_id = :h AND last_seen < :t2";
inline const std::string kOpenEntriesForHostSql = std::string("SELECT ") + kEntryColumns + kEntrySignedOrder +
                                                  kEntryFrom + "WHERE e.host_id = :h AND e.state IN " +
                                                  kOpen + " ORDER BY e.id";
// The same for several hosts: `in_list` is "(:a, :b, ...)" or "('id', 'id', ...)" (host_id_list).
inline std::string open_entries_for_hosts_sql(const std::string& in_list) {
  return std::string("SELECT ") + kEntryColumns + kEntrySignedOrder + kEntryFrom + "WHERE e.host_id IN " +
         in_list + " AND e.state IN " + kOpen + " ORDER BY e.id";
}
inline const std::string kOpenEntriesForHostsSql = open_entries_for_hosts_sql("(:a, :b)");
inline const std::string kJobByIdSql = std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = :id";
// Entries of the subtree below a child that it has not stored yet (routing.cpp adds the limit).
inline const std::string kEntriesToPushSql =
    "SELECT e.id, e.job_id, e.host_id, e.state, e.attempt, j.type, j.package_name, j.package_version, "
    "j.created_at, j.cancel_requested, j.expires_at, j.timing, j.window_spec, j.max_retries, "
    "j.retry_installs, "
    "j.retry_backoff, j.split_size, j.split_interval, j.params, e.signed_order FROM job_entries e JOIN hosts "
    "h "
    "ON h.host_id = e.host_id JOIN jobs j ON j.id = e.job_id WHERE h.via = :v AND e.host_id <> :v2 AND "
    "e.pushed_to <> :v3 AND e.ready_at <= :n ORDER BY e.id";
// Which of several children have entries to push (`in_list` as above).
inline std::string vias_with_entries_to_push_sql(const std::string& in_list) {
  return "SELECT DISTINCT h.via FROM job_entries e JOIN hosts h ON h.host_id = e.host_id WHERE h.via IN " +
         in_list + " AND e.host_id <> h.via AND e.pushed_to <> h.via AND e.ready_at <= :n";
}
inline const std::string kViasWithEntriesToPushSql = vias_with_entries_to_push_sql("(:a, :b)");
inline const std::string kPackageManifestSql =
    "SELECT manifest FROM packages WHERE name = :n AND version = :v";
inline const std::string kIdGroupsOfHostSql =
    "SELECT group_name FROM id_group_members WHERE host_id = :h ORDER BY group_name";

// "('id1', 'id2', ...)" of host ids checked to be UUIDs (nothing else can reach the SQL text).
inline std::string host_id_list(const std::vector<std::string>& ids) {
  std::string out = "(";
  for (const auto& id : ids) {
    if (!is_valid_host_id(id)) throw Error(ErrorKind::invalid_argument, "not a host id: " + id.substr(0, 64));
    out += (out.size() > 1 ? ", '" : "'") + id + "'";
  }
  return out + ")";
}

struct HotQuery {
  const char* name;
  const std::string& sql;
};
inline const std::vector<HotQuery>& hot_queries() {
  static const std::vector<HotQuery> q = {
      {"host by id (registration, callers)", kHostByIdSql},
      {"hosts by name (registration conflicts)", kHostsByNameSql},
      {"hosts by address (registration conflicts)", kHostsByAddressSql},
      {"last contact (polls)", kTouchHostSql},
      {"open entries of a host (work)", kOpenEntriesForHostSql},
      {"open entries of a batch of hosts (waking polls)", kOpenEntriesForHostsSql},
      {"job by id (work)", kJobByIdSql},
      {"children with entries to push (waking polls)", kViasWithEntriesToPushSql},
      {"entries to push below a child (work)", kEntriesToPushSql},
      {"package manifest (work, orders)", kPackageManifestSql},
      {"ID groups of a host (registration)", kIdGroupsOfHostSql},
  };
  return q;
}

}  // namespace distrib::store
