#include "model/json_codec.h"

#include <distrib/error.h>

namespace distrib::json {

bj::object parse_object(std::string_view text) {
  boost::system::error_code ec;
  bj::value v = bj::parse(text, ec);
  if (ec) throw Error(ErrorKind::invalid_argument, "malformed JSON: " + ec.message());
  if (!v.is_object()) throw Error(ErrorKind::invalid_argument, "malformed JSON: expected an object");
  return std::move(v.as_object());
}

namespace {
[[noreturn]] void bad_field(std::string_view key, std::string_view expected) {
  throw Error(ErrorKind::invalid_argument, "field \"" + std::string(key) + "\" " + std::string(expected));
}
}  // namespace

std::string get_string(const bj::object& o, std::string_view key, bool required) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    if (required) bad_field(key, "is missing");
    return {};
  }
  if (!it->value().is_string()) bad_field(key, "must be a string");
  return std::string(it->value().as_string());
}

std::int64_t get_int(const bj::object& o, std::string_view key, std::optional<std::int64_t> fallback) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    if (!fallback) bad_field(key, "is missing");
    return *fallback;
  }
  const auto& v = it->value();
  if (v.is_int64()) return v.as_int64();
  if (v.is_uint64() && v.as_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<std::int64_t>(v.as_uint64());
  bad_field(key, "must be an integer");
}

bool get_bool(const bj::object& o, std::string_view key, bool fallback) {
  auto it = o.find(key);
  if (it == o.end()) return fallback;
  if (!it->value().is_bool()) bad_field(key, "must be true or false");
  return it->value().as_bool();
}

const bj::array& get_array(const bj::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end()) bad_field(key, "is missing");
  if (!it->value().is_array()) bad_field(key, "must be an array");
  return it->value().as_array();
}

std::vector<std::string> get_string_array(const bj::object& o, std::string_view key, bool required) {
  std::vector<std::string> out;
  if (!required && !o.contains(key)) return out;
  for (const auto& v : get_array(o, key)) {
    if (!v.is_string()) bad_field(key, "must be an array of strings");
    out.emplace_back(v.as_string());
  }
  return out;
}

namespace {
const bj::object& as_obj(const bj::value& v, std::string_view what) {
  if (!v.is_object()) bad_field(what, "must contain objects");
  return v.as_object();
}
std::uint64_t get_u64(const bj::object& o, std::string_view key) {
  const auto v = get_int(o, key, 0);
  if (v < 0) bad_field(key, "must not be negative");
  return static_cast<std::uint64_t>(v);
}
bj::array strings(const std::vector<std::string>& v) {
  bj::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}
}  // namespace

bj::object to_json(const Host& h) {
  return {{"host_id", h.host_id},
          {"name", h.name},
          {"addresses", strings(h.addresses)},
          {"os", h.os},
          {"role", std::string(to_string(h.role))},
          {"parent", h.parent},
          {"agent_version", h.agent_version},
          {"registered_at", h.registered_at},
          {"last_seen", h.last_seen},
          {"via", h.via},
          {"approved", h.approved}};
}

Host host_from_json(const bj::object& o) {
  Host h;
  h.host_id = get_string(o, "host_id");
  h.name = get_string(o, "name");
  h.addresses = get_string_array(o, "addresses", false);
  h.os = get_string(o, "os", false);
  const auto role = get_string(o, "role", false);
  h.role = role.empty() ? HostRole::agent : parse_host_role(role);
  h.parent = get_string(o, "parent", false);
  h.agent_version = get_string(o, "agent_version", false);
  h.registered_at = get_int(o, "registered_at", 0);
  h.last_seen = get_int(o, "last_seen", 0);
  h.via = get_string(o, "via", false);
  if (auto it = o.find("approved"); it != o.end() && it->value().is_bool())
    h.approved = it->value().as_bool();
  return h;
}

bj::object to_json(const Manifest& m) {
  bj::array files;
  for (const auto& f : m.files) {
    bj::object fo{{"path", f.path}, {"type", f.type}, {"size", f.size}, {"mode", f.mode}};
    if (!f.sha256.empty()) fo["sha256"] = f.sha256;
    if (!f.link_target.empty()) fo["link_target"] = f.link_target;
    files.push_back(std::move(fo));
  }
  bj::array chunks;
  for (const auto& c : m.chunks) chunks.push_back(bj::object{{"digest", c.digest}, {"size", c.size}});
  bj::object out{{"name", m.name},
                 {"version", m.version},
                 {"format", m.format},
                 {"payload_digest", m.payload_digest},
                 {"payload_size", m.payload_size},
                 {"created_at", m.created_at},
                 {"install", bj::object{{"command", m.install.command},
                                        {"directory", m.install.directory},
                                        {"timeout_seconds", m.install.timeout_seconds}}},
                 {"files", std::move(files)},
                 {"chunks", std::move(chunks)}};
  // Only when set: the canonical text of a package without them (and its digest) is unchanged.
  auto& install = out["install"].as_object();
  if (!m.install.uninstall_command.empty()) install["uninstall_command"] = m.install.uninstall_command;
  if (!m.install.check_command.empty()) install["check_command"] = m.install.check_command;
  // Only when signed: the canonical text of an unsigned manifest (and its digest) is unchanged.
  if (!m.signature.empty()) out["signature"] = bj::object{{"key", m.signed_by}, {"value", m.signature}};
  return out;
}

Manifest manifest_from_json_object(const bj::object& o) {
  Manifest m;
  m.name = get_string(o, "name");
  m.version = get_string(o, "version");
  m.format = get_string(o, "format", false);
  if (m.format.empty()) m.format = "tar";
  m.payload_digest = get_string(o, "payload_digest");
  m.payload_size = get_u64(o, "payload_size");
  m.created_at = get_int(o, "created_at", 0);
  if (auto it = o.find("install"); it != o.end()) {
    const auto& io = as_obj(it->value(), "install");
    m.install.command = get_string(io, "command", false);
    m.install.directory = get_string(io, "directory", false);
    m.install.timeout_seconds = static_cast<std::uint32_t>(get_int(io, "timeout_seconds", 600));
    m.install.uninstall_command = get_string(io, "uninstall_command", false);
    m.install.check_command = get_string(io, "check_command", false);
  }
  for (const auto& fv : get_array(o, "files")) {
    const auto& fo = as_obj(fv, "files");
    ManifestFile f;
    f.path = get_string(fo, "path");
    f.type = get_string(fo, "type", false);
    if (f.type.empty()) f.type = "file";
    f.size = get_u64(fo, "size");
    f.mode = static_cast<std::uint32_t>(get_int(fo, "mode", 0644));
    f.sha256 = get_string(fo, "sha256", false);
    f.link_target = get_string(fo, "link_target", false);
    m.files.push_back(std::move(f));
  }
  for (const auto& cv : get_array(o, "chunks")) {
    const auto& co = as_obj(cv, "chunks");
    m.chunks.push_back({get_string(co, "digest"), get_u64(co, "size")});
  }
  if (auto it = o.find("signature"); it != o.end()) {
    const auto& so = as_obj(it->value(), "signature");
    m.signed_by = get_string(so, "key");
    m.signature = get_string(so, "value");
    if (m.signed_by.size() > 64 || m.signature.size() > 256)
      throw Error(ErrorKind::invalid_argument, "manifest signature is too long");
  }
  return m;
}

bj::object to_json(const PackageSummary& p) {
  return {{"name", p.name},
          {"version", p.version},
          {"payload_digest", p.payload_digest},
          {"payload_size", p.payload_size},
          {"file_count", p.file_count},
          {"created_at", p.created_at},
          {"last_used", p.last_used}};
}

PackageSummary package_summary_from_json(const bj::object& o) {
  PackageSummary p;
  p.name = get_string(o, "name");
  p.version = get_string(o, "version");
  p.payload_digest = get_string(o, "payload_digest", false);
  p.payload_size = get_u64(o, "payload_size");
  p.file_count = get_u64(o, "file_count");
  p.created_at = get_int(o, "created_at", 0);
  p.last_used = get_int(o, "last_used", 0);
  return p;
}

bj::object to_json(const JobSchedule& s) {
  bj::object o{{"start_at", s.start_at},
               {"expires_at", s.expires_at},
               {"timing", std::string(to_string(s.timing))},
               {"max_retries", s.max_retries},
               {"retry_installs", s.retry_installs},
               {"retry_backoff_seconds", s.retry_backoff_seconds}};
  if (s.timing == InstallTiming::window) o["window"] = to_string(s.window);
  return o;
}

JobSchedule schedule_from_json(const bj::object& o) {
  JobSchedule s;
  s.start_at = get_int(o, "start_at", 0);
  s.expires_at = get_int(o, "expires_at", 0);
  const auto timing = get_string(o, "timing", false);
  if (!timing.empty()) s.timing = parse_install_timing(timing);
  const auto window = get_string(o, "window", false);
  if (!window.empty()) s.window = parse_daily_window(window);
  s.max_retries = static_cast<int>(get_int(o, "max_retries", 0));
  s.retry_installs = get_bool(o, "retry_installs");
  s.retry_backoff_seconds = static_cast<int>(get_int(o, "retry_backoff_seconds", 30));
  return s;
}

bj::value to_json(const SplitSpec& s) {
  if (!s.enabled()) return nullptr;
  return bj::object{{"size", s.size}, {"interval_seconds", s.interval_seconds}};
}

SplitSpec split_from_json(const bj::value& v) {
  if (v.is_null()) return {};
  if (v.is_string()) return parse_split(std::string(v.as_string()));
  if (!v.is_object()) bad_field("split", "must be \"SIZE/INTERVAL\" (for example \"1MiB/60s\") or an object");
  const auto& o = v.as_object();
  const auto size = get_int(o, "size");
  if (size <= 0) bad_field("split.size", "must be above 0");
  SplitSpec s;
  s.size = static_cast<std::uint64_t>(size);
  const auto interval = get_int(o, "interval_seconds");
  if (interval <= 0 || interval > kMaxSegmentInterval)
    bad_field("split.interval_seconds", "must be between 1 s and 24 h");
  s.interval_seconds = static_cast<int>(interval);
  validate_split(s);
  return s;
}

bj::object to_json(const TransferProgress& p) {
  return {{"segments_done", p.segments_done},
          {"segments_total", p.segments_total},
          {"bytes_received", p.bytes_received},
          {"bad_chunks", p.bad_chunks}};
}

TransferProgress transfer_progress_from_json(const bj::object& o) {
  TransferProgress p;
  p.segments_done = get_int(o, "segments_done", 0);
  p.segments_total = get_int(o, "segments_total", 0);
  p.bytes_received = get_int(o, "bytes_received", 0);
  p.bad_chunks = get_int(o, "bad_chunks", 0);
  if (p.segments_done < 0 || p.segments_total < 0 || p.segments_done > p.segments_total ||
      p.bytes_received < 0 || p.bad_chunks < 0)
    bad_field("progress", "counts must be non-negative and segments_done at most segments_total");
  return p;
}

bj::object to_json(const CollectSpec& c) {
  return {{"paths", strings(c.paths)},
          {"max_file_bytes", c.max_file_bytes},
          {"max_total_bytes", c.max_total_bytes}};
}

CollectSpec collect_from_json(const bj::object& o) {
  CollectSpec c;
  c.paths = get_string_array(o, "paths");
  const auto file = get_int(o, "max_file_bytes", static_cast<std::int64_t>(c.max_file_bytes));
  const auto total = get_int(o, "max_total_bytes", static_cast<std::int64_t>(c.max_total_bytes));
  if (file <= 0) bad_field("collect.max_file_bytes", "must be above 0");
  if (total <= 0) bad_field("collect.max_total_bytes", "must be above 0");
  c.max_file_bytes = static_cast<std::uint64_t>(file);
  c.max_total_bytes = static_cast<std::uint64_t>(total);
  return c;
}

bj::object to_json(const Job& j) {
  bj::array waves;
  for (int w : j.rollout.waves) waves.emplace_back(w);
  bj::object o{{"id", j.id},
               {"type", std::string(to_string(j.type))},
               {"package", bj::object{{"name", j.package_name}, {"version", j.package_version}}},
               {"destinations", strings(j.destinations)},
               {"key_mode", j.key_mode},
               {"created_by", j.created_by},
               {"created_at", j.created_at},
               {"cancel_requested", j.cancel_requested},
               {"schedule", to_json(j.schedule)},
               {"id_groups", strings(j.id_groups)},
               {"split", to_json(j.split)}};
  if (j.type == JobType::collect_files) o["collect"] = to_json(j.collect);
  if (j.force) o["force"] = true;
  if (!j.rollout.waves.empty())
    o["rollout"] = bj::object{{"waves", std::move(waves)},
                              {"success_threshold", j.rollout.success_threshold},
                              {"error_threshold", j.rollout.error_threshold},
                              {"state", std::string(to_string(j.rollout_state))},
                              {"current_wave", j.current_wave},
                              {"message", j.rollout_message}};
  return o;
}

Job job_from_json(const bj::object& o) {
  Job j;
  j.id = get_int(o, "id", 0);
  j.type = parse_job_type(get_string(o, "type"));
  auto it = o.find("package");
  if (it != o.end() && !it->value().is_null()) {
    const auto& po = as_obj(it->value(), "package");
    j.package_name = get_string(po, "name", needs_package(j.type));
    j.package_version = get_string(po, "version", needs_package(j.type));
  } else if (needs_package(j.type)) {
    bad_field("package", "is missing");
  }
  if (auto c = o.find("collect"); c != o.end()) j.collect = collect_from_json(as_obj(c->value(), "collect"));
  if (auto f = o.find("force"); f != o.end()) {
    if (!f->value().is_bool()) bad_field("force", "must be true or false");
    j.force = f->value().as_bool();
  }
  j.destinations = get_string_array(o, "destinations");
  j.key_mode = get_string(o, "key_mode", false);
  j.created_by = get_string(o, "created_by", false);
  j.created_at = get_int(o, "created_at", 0);
  if (auto c = o.find("cancel_requested"); c != o.end() && c->value().is_bool())
    j.cancel_requested = c->value().as_bool();
  if (auto sit = o.find("schedule"); sit != o.end())
    j.schedule = schedule_from_json(as_obj(sit->value(), "schedule"));
  if (auto rit = o.find("rollout"); rit != o.end()) {
    const auto& r = as_obj(rit->value(), "rollout");
    if (auto w = r.find("waves"); w != r.end()) {
      if (!w->value().is_array()) bad_field("rollout.waves", "must be an array of percentages");
      for (const auto& v : w->value().as_array()) {
        if (!v.is_int64()) bad_field("rollout.waves", "must be an array of percentages");
        j.rollout.waves.push_back(static_cast<int>(v.as_int64()));
      }
    }
    j.rollout.success_threshold = static_cast<int>(get_int(r, "success_threshold", 90));
    j.rollout.error_threshold = static_cast<int>(get_int(r, "error_threshold", 10));
    j.rollout_state = parse_rollout_state(get_string(r, "state", false));
    j.current_wave = static_cast<int>(get_int(r, "current_wave", 0));
    j.rollout_message = get_string(r, "message", false);
  }
  if (o.contains("id_groups")) j.id_groups = get_string_array(o, "id_groups");
  if (auto sp = o.find("split"); sp != o.end()) j.split = split_from_json(sp->value());
  return j;
}

bj::object to_json(const JobEntry& e) {
  bj::object o{{"id", e.id},
               {"job_id", e.job_id},
               {"host_id", e.host_id},
               {"host_name", e.host_name},
               {"parent_id", e.parent_id},
               {"parent_name", e.parent_name},
               {"state", std::string(to_string(e.state))},
               {"attempt", e.attempt},
               {"message", e.message},
               {"output_tail", e.output_tail},
               {"updated_at", e.updated_at},
               {"wave", e.wave},
               {"late_join", e.late_join},
               {"ready_at", e.ready_at},
               {"progress", to_json(e.progress)}};
  if (e.exit_code)
    o["exit_code"] = *e.exit_code;
  else
    o["exit_code"] = nullptr;
  return o;
}

JobEntry entry_from_json(const bj::object& o) {
  JobEntry e;
  e.id = get_int(o, "id");
  e.job_id = get_int(o, "job_id", 0);
  e.host_id = get_string(o, "host_id");
  e.host_name = get_string(o, "host_name", false);
  e.parent_id = get_string(o, "parent_id", false);
  e.parent_name = get_string(o, "parent_name", false);
  e.state = parse_entry_state(get_string(o, "state"));
  e.attempt = static_cast<std::int32_t>(get_int(o, "attempt", 1));
  e.message = get_string(o, "message", false);
  e.output_tail = get_string(o, "output_tail", false);
  e.updated_at = get_int(o, "updated_at", 0);
  e.wave = static_cast<int>(get_int(o, "wave", 0));
  if (auto it = o.find("late_join"); it != o.end() && it->value().is_bool())
    e.late_join = it->value().as_bool();
  e.ready_at = get_int(o, "ready_at", 0);
  if (auto it = o.find("progress"); it != o.end() && it->value().is_object())
    e.progress = transfer_progress_from_json(it->value().as_object());
  if (auto it = o.find("exit_code"); it != o.end() && !it->value().is_null())
    e.exit_code = static_cast<int>(get_int(o, "exit_code"));
  return e;
}

bj::object to_json(const JobProgress& p) {
  bj::object o{{"total", p.total}, {"final", p.final_count}};
  for (auto s : kAllEntryStates) o[to_string(s)] = p.count(s);
  return o;
}

JobProgress progress_from_json(const bj::object& o) {
  JobProgress p;
  p.total = get_int(o, "total", 0);
  p.final_count = get_int(o, "final", 0);
  for (auto s : kAllEntryStates) p.by_state[static_cast<int>(s)] = get_int(o, to_string(s), 0);
  return p;
}

bj::object to_json(const EntryReport& r) {
  bj::object o{{"entry_id", r.entry_id}, {"attempt", r.attempt},
               {"seq", r.seq},           {"state", std::string(to_string(r.state))},
               {"message", r.message},   {"output_tail", r.output_tail}};
  if (r.exit_code) o["exit_code"] = *r.exit_code;
  if (!r.progress.empty()) o["progress"] = to_json(r.progress);
  return o;
}

EntryReport report_from_json(const bj::object& o) {
  EntryReport r;
  r.entry_id = get_int(o, "entry_id");
  r.attempt = static_cast<std::int32_t>(get_int(o, "attempt", 1));
  r.seq = get_int(o, "seq");
  r.state = parse_entry_state(get_string(o, "state"));
  // Kept within bounds whatever an agent sends: the head of a message, the tail of its output.
  r.message = get_string(o, "message", false).substr(0, 4096);
  r.output_tail = get_string(o, "output_tail", false);
  if (r.output_tail.size() > 65536) r.output_tail.erase(0, r.output_tail.size() - 65536);
  if (auto it = o.find("exit_code"); it != o.end() && !it->value().is_null())
    r.exit_code = static_cast<int>(get_int(o, "exit_code"));
  if (auto it = o.find("progress"); it != o.end()) {
    if (!it->value().is_object()) bad_field("progress", "must be an object");
    r.progress = transfer_progress_from_json(it->value().as_object());
  }
  return r;
}

bj::object to_json(const RoutedEntry& r) {
  return {{"entry_id", r.entry.id},
          {"job_id", r.job.id},
          {"host_id", r.entry.host_id},
          {"state", std::string(to_string(r.entry.state))},
          {"attempt", r.entry.attempt},
          {"type", std::string(to_string(r.job.type))},
          {"package", bj::object{{"name", r.job.package_name}, {"version", r.job.package_version}}},
          {"created_at", r.job.created_at},
          {"cancel_requested", r.job.cancel_requested},
          {"schedule", to_json(r.job.schedule)},
          {"split", to_json(r.job.split)},
          {"collect", to_json(r.job.collect)},
          {"force", r.job.force},
          {"signed_order", r.entry.signed_order}};
}

RoutedEntry routed_entry_from_json(const bj::object& o) {
  RoutedEntry r;
  r.entry.id = get_int(o, "entry_id");
  r.entry.job_id = r.job.id = get_int(o, "job_id");
  r.entry.host_id = get_string(o, "host_id");
  if (!is_valid_host_id(r.entry.host_id)) bad_field("host_id", "must be a host UUID");
  r.entry.state = parse_entry_state(get_string(o, "state"));
  r.entry.attempt = static_cast<std::int32_t>(get_int(o, "attempt", 1));
  r.job.type = parse_job_type(get_string(o, "type"));
  if (needs_package(r.job.type)) {
    auto it = o.find("package");
    if (it == o.end()) bad_field("package", "is missing");
    const auto& po = as_obj(it->value(), "package");
    r.job.package_name = get_string(po, "name");
    r.job.package_version = get_string(po, "version");
    validate_package_identity(r.job.package_name, r.job.package_version);
  }
  if (auto c = o.find("collect"); c != o.end())
    r.job.collect = collect_from_json(as_obj(c->value(), "collect"));
  if (auto f = o.find("force"); f != o.end() && f->value().is_bool()) r.job.force = f->value().as_bool();
  r.entry.signed_order = get_string(o, "signed_order", false);
  if (r.entry.signed_order.size() > 8192) bad_field("signed_order", "is longer than 8192 bytes");
  r.job.created_at = get_int(o, "created_at", 0);
  if (auto c = o.find("cancel_requested"); c != o.end() && c->value().is_bool())
    r.job.cancel_requested = c->value().as_bool();
  if (auto sit = o.find("schedule"); sit != o.end())
    r.job.schedule = schedule_from_json(as_obj(sit->value(), "schedule"));
  if (auto sp = o.find("split"); sp != o.end()) r.job.split = split_from_json(sp->value());
  return r;
}

bj::object to_json(const HostGroup& g) {
  return {{"name", g.name},
          {"description", g.description},
          {"created_at", g.created_at},
          {"members", strings(g.members)},
          {"query", g.query}};
}

bj::object to_json(const IdGroup& g) {
  bj::array members;
  for (const auto& m : g.members)
    members.push_back(bj::object{{"host_id", m.host_id},
                                 {"host_name", m.host_name},
                                 {"how", std::string(to_string(m.how))},
                                 {"joined_at", m.joined_at}});
  return {{"name", g.name},
          {"description", g.description},
          {"owner", g.owner},
          {"password", g.has_password()},
          {"policy", bj::object{{"name_pattern", g.policy.name_pattern}, {"ip_range", g.policy.ip_range}}},
          {"created_at", g.created_at},
          {"members", std::move(members)}};
}

IdGroup id_group_from_json(const bj::object& o) {
  IdGroup g;
  g.name = get_string(o, "name");
  g.description = get_string(o, "description", false);
  g.owner = get_string(o, "owner", false);
  g.created_at = get_int(o, "created_at", 0);
  if (auto it = o.find("policy"); it != o.end() && !it->value().is_null()) {
    const auto& p = as_obj(it->value(), "policy");
    g.policy.name_pattern = get_string(p, "name_pattern", false);
    g.policy.ip_range = get_string(p, "ip_range", false);
  }
  if (auto it = o.find("members"); it != o.end() && it->value().is_array())
    for (const auto& v : it->value().as_array()) {
      const auto& m = as_obj(v, "members");
      IdGroupMember x;
      x.host_id = get_string(m, "host_id");
      x.host_name = get_string(m, "host_name", false);
      const auto how = get_string(m, "how", false);
      x.how = how.empty() ? JoinMethod::admin : parse_join_method(how);
      x.joined_at = get_int(m, "joined_at", 0);
      g.members.push_back(std::move(x));
    }
  return g;
}

std::string error_message(std::string_view body, int status) {
  try {
    auto o = parse_object(body);
    return get_string(o.at("error").as_object(), "message");
  } catch (...) {
    return "HTTP " + std::to_string(status);
  }
}

std::string error_body(std::string_view kind, std::string_view message) {
  return bj::serialize(bj::object{{"error", bj::object{{"kind", kind}, {"message", message}}}});
}

}  // namespace distrib::json
