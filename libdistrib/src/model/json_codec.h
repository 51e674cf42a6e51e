#pragma once
// JSON forms of the model types, shared by the manager's routes, the agent and AdminClient so that
// the wire format is defined once. Readers throw Error(invalid_argument) naming the bad field.
#include <distrib/model/group.h>
#include <distrib/model/host.h>
#include <distrib/model/job.h>
#include <distrib/model/package.h>
#include <distrib/model/relay.h>
#include <distrib/model/report.h>

#include <boost/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace distrib::json {

namespace bj = boost::json;

/// Parses text into an object; throws Error(invalid_argument) "malformed JSON: ..." otherwise.
bj::object parse_object(std::string_view text);

// Field readers; errors name the field.
std::string get_string(const bj::object& o, std::string_view key, bool required = true);
std::int64_t get_int(const bj::object& o, std::string_view key, std::optional<std::int64_t> fallback = {});
/// A boolean field, `fallback` when absent; any other type is an error naming the field.
bool get_bool(const bj::object& o, std::string_view key, bool fallback = false);
const bj::array& get_array(const bj::object& o, std::string_view key);
std::vector<std::string> get_string_array(const bj::object& o, std::string_view key, bool required = true);

bj::object to_json(const Host& host);
Host host_from_json(const bj::object& o);

bj::object to_json(const Manifest& m);
Manifest manifest_from_json_object(const bj::object& o);

bj::object to_json(const PackageSummary& p);
PackageSummary package_summary_from_json(const bj::object& o);

bj::object to_json(const JobSchedule& s);
JobSchedule schedule_from_json(const bj::object& o);

/// null when not split; read from "SIZE/INTERVAL" text or {"size", "interval_seconds"}.
bj::value to_json(const SplitSpec& s);
SplitSpec split_from_json(const bj::value& v);
bj::object to_json(const TransferProgress& p);
TransferProgress transfer_progress_from_json(const bj::object& o);

bj::object to_json(const CollectSpec& c);
CollectSpec collect_from_json(const bj::object& o);
bj::object to_json(const Job& job);
Job job_from_json(const bj::object& o);

bj::object to_json(const JobEntry& e);
JobEntry entry_from_json(const bj::object& o);

bj::object to_json(const JobProgress& p);
JobProgress progress_from_json(const bj::object& o);

bj::object to_json(const EntryReport& r);
EntryReport report_from_json(const bj::object& o);

bj::object to_json(const RoutedEntry& r);
RoutedEntry routed_entry_from_json(const bj::object& o);

bj::object to_json(const HostGroup& g);
/// The password hash is never part of the JSON form (only whether there is one).
bj::object to_json(const IdGroup& g);
IdGroup id_group_from_json(const bj::object& o);

/// The message of an {"error": {...}} answer, or "HTTP <status>" when the body is not one.
std::string error_message(std::string_view body, int status);

/// {"error": {"kind": ..., "message": ...}}
std::string error_body(std::string_view kind, std::string_view message);

}  // namespace distrib::json
