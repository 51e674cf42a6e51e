// Store on SOCI. Shared SQL lives here; what differs per database comes from the Dialect.
#include <distrib/error.h>
#include <distrib/store/store.h>

#include "model/json_codec.h"
#include "store/dialect.h"
#include "util/fs.h"

#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <map>
#include <mutex>
#include <set>
#include <unistd.h>
#include <optional>

namespace distrib {

std::string_view to_string(ReportOutcome::Kind kind) noexcept {
  switch (kind) {
    case ReportOutcome::Kind::applied: return "applied";
    case ReportOutcome::Kind::duplicate: return "duplicate";
    case ReportOutcome::Kind::refused: return "refused";
    case ReportOutcome::Kind::unknown_entry: return "unknown_entry";
  }
  return "?";
}

int latest_schema_version() noexcept { return store::migrations().back().version; }

void StoreRegistry::add(const std::string& name, Factory factory) {
  if (!factories_.emplace(name, std::move(factory)).second)
    throw Error(ErrorKind::invalid_argument, "store backend \"" + name + "\" is registered twice");
}

std::vector<std::string> StoreRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [n, f] : factories_) out.push_back(n);
  return out;
}

std::unique_ptr<Store> StoreRegistry::open(const StoreSettings& settings) const {
  auto it = factories_.find(settings.backend);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(ErrorKind::invalid_argument, "unknown database backend \"" + settings.backend +
                                                 "\" (known: " + known + ")");
  }
  return it->second(settings);
}

namespace store {
namespace {

using ll = long long;

std::int64_t get_i64(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return 0;
  switch (r.get_properties(i).get_data_type()) {
    case soci::dt_integer: return r.get<int>(i);
    case soci::dt_long_long: return r.get<long long>(i);
    case soci::dt_unsigned_long_long: return static_cast<std::int64_t>(r.get<unsigned long long>(i));
    case soci::dt_double: return static_cast<std::int64_t>(r.get<double>(i));
    case soci::dt_string: return std::stoll(r.get<std::string>(i));
    default: throw Error("unexpected column type in " + r.get_properties(i).get_name());
  }
}
std::optional<std::int64_t> get_opt_i64(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return std::nullopt;
  return get_i64(r, i);
}
std::string get_str(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return {};
  return r.get<std::string>(i);
}

std::string join_addresses(const std::vector<std::string>& a) {
  std::string out;
  for (const auto& s : a) out += (out.empty() ? "" : ",") + s;
  return out;
}
std::vector<std::string> split_addresses(const std::string& s) {
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

const char* kHostColumns =
    "host_id, name, addresses, os, role, parent, agent_version, registered_at, last_seen, via, "
    "approved";
Host host_from_row(const soci::row& r) {
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

const char* kEntryColumns =
    "e.id, e.job_id, e.host_id, h.name, e.state, e.attempt, e.last_seq, e.exit_code, e.message, "
    "e.output_tail, e.updated_at, h.parent, p.name";
const char* kEntryFrom =
    " FROM job_entries e LEFT JOIN hosts h ON h.host_id = e.host_id LEFT JOIN hosts p ON "
    "p.host_id = h.parent ";
JobEntry entry_from_row(const soci::row& r) {
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
  return e;
}

const char* kJobColumns =
    "id, type, package_name, package_version, destinations, key_mode, created_by, created_at, "
    "cancel_requested, upstream_id";
Job job_from_row(const soci::row& r) {
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
  return j;
}

// States an operator's cancel moves to cancelled (an install under way runs to its end).
const char* kCancellable = "('waiting', 'transferring', 'transferred', 'suspended')";
const char* kOpen = "('waiting', 'transferring', 'transferred', 'installing', 'suspended')";

bool host_differs(const Host& a, const Host& b) {
  return a.name != b.name || a.addresses != b.addresses || a.os != b.os || a.role != b.role ||
         a.parent != b.parent || a.agent_version != b.agent_version || a.via != b.via;
}

class SociStore final : public Store {
public:
  SociStore(const Dialect& dialect, const soci::backend_factory& backend,
            const std::string& connection, const StoreSettings& settings)
      : dialect_(dialect), pool_(static_cast<std::size_t>(std::max(1, settings.pool_size))) {
    for (std::size_t i = 0; i < static_cast<std::size_t>(std::max(1, settings.pool_size)); ++i) {
      auto& s = pool_.at(i);
      try {
        s.open(backend, connection);
        for (const auto& stmt : dialect_.connection_setup) s << stmt;
      } catch (const soci::soci_error& e) {
        throw Error(ErrorKind::unavailable,
                    "cannot open the " + dialect_.name + " database: " + first_line(e.what()));
      }
    }
    migrate();
  }

  int schema_version() override {
    return guarded([&](soci::session& sql) { return read_version(sql); });
  }

  HostChange upsert_host(const Host& h, bool report_upward) override {
    return write([&](soci::session& sql) {
      HostChange out;
      std::optional<Host> old = select_host(sql, h.host_id);
      const auto addresses = join_addresses(h.addresses);
      const std::string role(to_string(h.role));
      const std::string via = h.via.empty() ? h.host_id : h.via;
      const ll now = fs::now_unix();
      const ll seen = std::max<ll>(h.last_seen ? h.last_seen : now, old ? old->last_seen : 0);
      if (!old) {
        const ll registered = h.registered_at ? h.registered_at : now;
        const int approved = h.approved ? 1 : 0;
        sql << "INSERT INTO hosts (host_id, name, addresses, os, role, parent, agent_version, "
               "registered_at, last_seen, via, approved, up_version) VALUES (:i, :n, :a, :o, :r, "
               ":p, :v, :g, :s, :w, :ap, 1)",
            soci::use(h.host_id), soci::use(h.name), soci::use(addresses), soci::use(h.os),
            soci::use(role), soci::use(h.parent), soci::use(h.agent_version),
            soci::use(registered), soci::use(seen), soci::use(via), soci::use(approved);
        out.created = out.changed = true;
        return out;
      }
      out.previous_via = old->via;
      Host updated = h;
      updated.via = via;
      out.changed = host_differs(*old, updated);
      const int bump = out.changed || report_upward ? 1 : 0;
      sql << "UPDATE hosts SET name = :n, addresses = :a, os = :o, role = :r, parent = :p, "
             "agent_version = :v, last_seen = :s, via = :w, up_version = up_version + :b "
             "WHERE host_id = :i",
          soci::use(h.name), soci::use(addresses), soci::use(h.os), soci::use(role),
          soci::use(h.parent), soci::use(h.agent_version), soci::use(seen), soci::use(via),
          soci::use(bump), soci::use(h.host_id);
      return out;
    });
  }

  int approve_hosts(const std::vector<std::string>& host_ids) override {
    return write([&](soci::session& sql) {
      int changed = 0;
      for (const auto& id : host_ids) {
        soci::statement st = (sql.prepare << "UPDATE hosts SET approved = 1, up_version = "
                                             "up_version + 1 WHERE host_id = :h AND approved = 0",
                              soci::use(id));
        st.execute(true);
        changed += static_cast<int>(st.get_affected_rows());
      }
      return changed;
    });
  }

  void remove_host(const std::string& host_id) override {
    write([&](soci::session& sql) { sql << "DELETE FROM hosts WHERE host_id = :h", soci::use(host_id); });
  }

  void touch_hosts(const std::vector<std::pair<std::string, std::int64_t>>& seen) override {
    if (seen.empty()) return;
    write([&](soci::session& sql) {
      std::string id;
      ll when = 0;
      soci::statement st = (sql.prepare << "UPDATE hosts SET last_seen = :t WHERE host_id = :h "
                                           "AND last_seen < :t2",
                            soci::use(when), soci::use(id), soci::use(when));
      for (const auto& [h, t] : seen) {
        id = h;
        when = t;
        st.execute(true);
      }
    });
  }

  std::optional<Host> find_host(const std::string& host_id) override {
    return guarded([&](soci::session& sql) { return select_host(sql, host_id); });
  }

  std::vector<Host> list_hosts() override {
    return guarded([&](soci::session& sql) -> std::vector<Host> {
      std::vector<Host> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT " << kHostColumns << " FROM hosts ORDER BY name, host_id");
      for (const auto& r : rs) out.push_back(host_from_row(r));
      return out;
    });
  }

  bool insert_package(const Manifest& m) override {
    return write([&](soci::session& sql) {
      std::string existing;
      soci::indicator ind = soci::i_null;
      sql << "SELECT payload_digest FROM packages WHERE name = :n AND version = :v",
          soci::into(existing, ind), soci::use(m.name), soci::use(m.version);
      if (sql.got_data() && ind == soci::i_ok) {
        if (existing == m.payload_digest) return false;
        throw Error(ErrorKind::conflict,
                    "package \"" + m.name + "\" " + m.version +
                        " already exists with other content (payload " + existing.substr(0, 12) +
                        "…); packages are immutable: choose a new version");
      }
      const std::string manifest = manifest_to_json(m);
      const ll size = static_cast<ll>(m.payload_size);
      const ll files = static_cast<ll>(m.files.size());
      const ll created = m.created_at ? m.created_at : fs::now_unix();
      sql << "INSERT INTO packages (name, version, payload_digest, payload_size, file_count, "
             "manifest, created_at) VALUES (:n, :v, :d, :s, :f, :m, :c)",
          soci::use(m.name), soci::use(m.version), soci::use(m.payload_digest), soci::use(size),
          soci::use(files), soci::use(manifest), soci::use(created);
      return true;
    });
  }

  std::optional<Manifest> find_package(const std::string& name, const std::string& version) override {
    return guarded([&](soci::session& sql) -> std::optional<Manifest> {
      std::string manifest;
      soci::indicator ind = soci::i_null;
      sql << "SELECT manifest FROM packages WHERE name = :n AND version = :v",
          soci::into(manifest, ind), soci::use(name), soci::use(version);
      if (!sql.got_data() || ind != soci::i_ok) return std::nullopt;
      return manifest_from_json(manifest);
    });
  }

  std::vector<PackageSummary> list_packages() override {
    return guarded([&](soci::session& sql) {
      std::vector<PackageSummary> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT name, version, payload_digest, payload_size, file_count, "
                          "created_at, last_used FROM packages ORDER BY name, created_at");
      for (const auto& r : rs) {
        PackageSummary p;
        p.name = get_str(r, 0);
        p.version = get_str(r, 1);
        p.payload_digest = get_str(r, 2);
        p.payload_size = static_cast<std::uint64_t>(get_i64(r, 3));
        p.file_count = static_cast<std::uint64_t>(get_i64(r, 4));
        p.created_at = get_i64(r, 5);
        p.last_used = get_i64(r, 6);
        out.push_back(std::move(p));
      }
      return out;
    });
  }

  void touch_package(const std::string& name, const std::string& version, std::int64_t when) override {
    write([&](soci::session& sql) {
      const ll t = when;
      sql << "UPDATE packages SET last_used = :t WHERE name = :n AND version = :v", soci::use(t),
          soci::use(name), soci::use(version);
    });
  }

  bool delete_package(const std::string& name, const std::string& version) override {
    return write([&](soci::session& sql) {
      int exists = 0;
      sql << "SELECT COUNT(*) FROM packages WHERE name = :n AND version = :v", soci::into(exists),
          soci::use(name), soci::use(version);
      if (!exists) return false;
      ll job = 0;
      soci::indicator ind = soci::i_null;
      sql << "SELECT MIN(j.id) FROM job_entries e JOIN jobs j ON j.id = e.job_id WHERE "
             "j.package_name = :n AND j.package_version = :v AND j.type <> 'delete-package' AND "
             "e.state IN "
          << kOpen,
          soci::into(job, ind), soci::use(name), soci::use(version);
      if (ind == soci::i_ok)
        throw Error(ErrorKind::conflict, "package \"" + name + "\" " + version +
                                             " is still needed by job " + std::to_string(job));
      sql << "DELETE FROM packages WHERE name = :n AND version = :v", soci::use(name), soci::use(version);
      return true;
    });
  }

  Job create_job(const Job& job, const std::vector<std::string>& host_ids) override {
    return write([&](soci::session& sql) { return insert_job(sql, job, host_ids); });
  }

  Job insert_job(soci::session& sql, const Job& job, const std::vector<std::string>& host_ids) {
    {
      Job out = job;
      out.created_at = job.created_at ? job.created_at : fs::now_unix();
      const std::string type(to_string(job.type));
      const auto dests = join_addresses(job.destinations);
      const ll created = out.created_at;
      const int cancel = 0;
      const ll upstream = job.upstream_id;
      sql << "INSERT INTO jobs (type, package_name, package_version, destinations, key_mode, "
             "created_by, created_at, cancel_requested, upstream_id) VALUES (:t, :n, :v, :d, :k, "
             ":b, :c, :x, :u)",
          soci::use(type), soci::use(job.package_name), soci::use(job.package_version),
          soci::use(dests), soci::use(job.key_mode), soci::use(job.created_by),
          soci::use(created), soci::use(cancel), soci::use(upstream);
      ll id = 0;
      sql << dialect_.last_insert_id, soci::into(id);
      out.id = id;
      std::string host;
      const std::string state = "waiting";
      soci::statement st =
          (sql.prepare << "INSERT INTO job_entries (job_id, host_id, state, attempt, last_seq, "
                          "message, output_tail, updated_at) VALUES (:j, :h, :s, 1, 0, '', '', :u)",
           soci::use(id), soci::use(host), soci::use(state), soci::use(created));
      for (const auto& h : host_ids) {
        host = h;
        st.execute(true);
      }
      return out;
    }
  }

  std::optional<Job> find_job(std::int64_t job_id) override {
    return guarded([&](soci::session& sql) -> std::optional<Job> {
      const ll id = job_id;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT " << kJobColumns << " FROM jobs WHERE id = :id", soci::use(id));
      for (const auto& r : rs) return job_from_row(r);
      return std::nullopt;
    });
  }

  std::vector<JobListing> list_jobs(int limit) override {
    return guarded([&](soci::session& sql) {
      std::vector<JobListing> out;
      soci::rowset<soci::row> rs = (sql.prepare << "SELECT " << kJobColumns
                                                 << " FROM jobs ORDER BY id DESC"
                                                 << dialect_.limit(std::max(1, limit)));
      for (const auto& r : rs) out.push_back({job_from_row(r), {}});
      if (out.empty()) return out;
      const ll min_id = out.back().job.id;
      soci::rowset<soci::row> counts =
          (sql.prepare << "SELECT job_id, state, COUNT(*) FROM job_entries WHERE job_id >= :m "
                          "GROUP BY job_id, state",
           soci::use(min_id));
      for (const auto& r : counts) {
        const auto job_id = get_i64(r, 0);
        const auto state = parse_entry_state(get_str(r, 1));
        const auto n = get_i64(r, 2);
        for (auto& l : out) {
          if (l.job.id != job_id) continue;
          l.progress.by_state[static_cast<int>(state)] += n;
          l.progress.total += n;
          if (is_final(state)) l.progress.final_count += n;
        }
      }
      return out;
    });
  }

  std::vector<JobEntry> job_entries(std::int64_t job_id) override {
    return guarded([&](soci::session& sql) {
      const ll id = job_id;
      std::vector<JobEntry> out;
      soci::rowset<soci::row> rs = (sql.prepare << "SELECT " << kEntryColumns << kEntryFrom
                                                 << "WHERE e.job_id = :j ORDER BY h.name, e.id",
                                    soci::use(id));
      for (const auto& r : rs) out.push_back(entry_from_row(r));
      return out;
    });
  }

  std::vector<JobEntry> open_entries_for_host(const std::string& host_id) override {
    return guarded([&](soci::session& sql) {
      std::vector<JobEntry> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT " << kEntryColumns << kEntryFrom
                       << "WHERE e.host_id = :h AND e.state IN " << kOpen << " ORDER BY e.id",
           soci::use(host_id));
      for (const auto& r : rs) out.push_back(entry_from_row(r));
      return out;
    });
  }

  std::vector<std::string> children_with_work() override {
    return guarded([&](soci::session& sql) {
      std::vector<std::string> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT DISTINCT h.via FROM job_entries e JOIN hosts h ON h.host_id = "
                          "e.host_id WHERE (e.host_id = h.via AND e.state IN "
                       << kOpen << ") OR (e.host_id <> h.via AND e.pushed_to <> h.via)");
      for (const auto& r : rs) out.push_back(get_str(r, 0));
      return out;
    });
  }

  ReportOutcome apply_report(const std::string& reporter, const EntryReport& rep,
                             bool forwarded) override {
    return write([&](soci::session& sql) {
      ReportOutcome out;
      const ll id = rep.entry_id;
      std::string owner, state_text, via;
      int attempt = 0;
      ll last_seq = 0;
      soci::indicator ind = soci::i_null, via_ind = soci::i_null;
      sql << "SELECT e.host_id, e.state, e.attempt, e.last_seq, h.via FROM job_entries e LEFT "
             "JOIN hosts h ON h.host_id = e.host_id WHERE e.id = :id",
          soci::into(owner, ind), soci::into(state_text), soci::into(attempt),
          soci::into(last_seq), soci::into(via, via_ind), soci::use(id);
      if (via_ind != soci::i_ok) via.clear();
      const bool ours = forwarded ? (sql.got_data() && via == reporter && owner != reporter)
                                  : (sql.got_data() && owner == reporter);
      if (!ours) {
        out.kind = ReportOutcome::Kind::unknown_entry;
        return out;
      }
      const auto current = parse_entry_state(state_text);
      out.current = current;
      if (rep.attempt != attempt || rep.seq <= last_seq) {
        out.kind = ReportOutcome::Kind::duplicate;
        return out;
      }
      const bool allowed = forwarded ? can_reach(current, rep.state) : can_transition(current, rep.state);
      if (rep.state != current && !allowed) {
        out.kind = ReportOutcome::Kind::refused;
        return out;
      }
      const std::string state(to_string(rep.state));
      const ll seq = rep.seq;
      const ll now = fs::now_unix();
      int exit_code = rep.exit_code.value_or(0);
      soci::indicator exit_ind = rep.exit_code ? soci::i_ok : soci::i_null;
      sql << "UPDATE job_entries SET state = :s, last_seq = :q, exit_code = :x, message = :m, "
             "output_tail = :o, updated_at = :u, up_version = CASE WHEN upstream_id <> 0 THEN "
             "up_version + 1 ELSE 0 END WHERE id = :id",
          soci::use(state), soci::use(seq), soci::use(exit_code, exit_ind),
          soci::use(rep.message), soci::use(rep.output_tail), soci::use(now), soci::use(id);
      out.kind = ReportOutcome::Kind::applied;
      out.current = rep.state;
      return out;
    });
  }

  std::vector<std::string> cancel_job(std::int64_t job_id) override {
    return write([&](soci::session& sql) {
      const ll id = job_id;
      int exists = 0;
      sql << "SELECT COUNT(*) FROM jobs WHERE id = :id", soci::into(exists), soci::use(id);
      if (exists == 0) throw Error(ErrorKind::not_found, "job " + std::to_string(job_id) + " does not exist");
      std::vector<std::string> hosts;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT DISTINCT COALESCE(h.via, e.host_id) FROM job_entries e LEFT "
                          "JOIN hosts h ON h.host_id = e.host_id WHERE e.job_id = :id AND "
                          "e.state IN "
                       << kCancellable,
           soci::use(id));
      for (const auto& r : rs) hosts.push_back(get_str(r, 0));
      const ll now = fs::now_unix();
      sql << "UPDATE jobs SET cancel_requested = 1 WHERE id = :id", soci::use(id);
      sql << "UPDATE job_entries SET state = 'cancelled', message = 'cancelled by operator', "
             "pushed_to = '', updated_at = :u WHERE job_id = :id AND state IN "
          << kCancellable,
          soci::use(now), soci::use(id);
      return hosts;
    });
  }

  std::vector<RoutedEntry> entries_to_push(const std::string& via, int limit) override {
    return guarded([&](soci::session& sql) {
      std::vector<RoutedEntry> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT e.id, e.job_id, e.host_id, e.state, e.attempt, j.type, "
                          "j.package_name, j.package_version, j.created_at, j.cancel_requested "
                          "FROM job_entries e JOIN hosts h ON h.host_id = e.host_id JOIN jobs j "
                          "ON j.id = e.job_id WHERE h.via = :v AND e.host_id <> :v2 AND "
                          "e.pushed_to <> :v3 ORDER BY e.id"
                       << dialect_.limit(std::max(1, limit)),
           soci::use(via), soci::use(via), soci::use(via));
      for (const auto& r : rs) {
        RoutedEntry x;
        x.entry.id = get_i64(r, 0);
        x.entry.job_id = x.job.id = get_i64(r, 1);
        x.entry.host_id = get_str(r, 2);
        x.entry.state = parse_entry_state(get_str(r, 3));
        x.entry.attempt = static_cast<std::int32_t>(get_i64(r, 4));
        x.job.type = parse_job_type(get_str(r, 5));
        x.job.package_name = get_str(r, 6);
        x.job.package_version = get_str(r, 7);
        x.job.created_at = get_i64(r, 8);
        x.job.cancel_requested = get_i64(r, 9) != 0;
        out.push_back(std::move(x));
      }
      return out;
    });
  }

  void mark_pushed(const std::string& via,
                   const std::vector<std::pair<std::int64_t, EntryState>>& acks) override {
    if (acks.empty()) return;
    write([&](soci::session& sql) {
      ll id = 0;
      std::string state;
      soci::statement st = (sql.prepare << "UPDATE job_entries SET pushed_to = :v WHERE id = :id "
                                           "AND state = :s",
                            soci::use(via), soci::use(id), soci::use(state));
      for (const auto& [entry, s] : acks) {
        id = entry;
        state = std::string(to_string(s));
        st.execute(true);
      }
    });
  }

  std::vector<std::string> import_entries(const std::vector<RoutedEntry>& entries) override {
    return write([&](soci::session& sql) {
      std::set<std::string> vias;
      std::map<ll, ll> local_jobs;  // upstream job id → local id
      for (const auto& x : entries) {
        const ll up_entry = x.entry.id;
        ll local_id = 0;
        std::string local_state;
        soci::indicator ind = soci::i_null;
        sql << "SELECT id, state FROM job_entries WHERE upstream_id = :u", soci::into(local_id, ind),
            soci::into(local_state), soci::use(up_entry);
        const bool known = sql.got_data() && ind == soci::i_ok;
        const ll now = fs::now_unix();
        if (known) {
          if (x.entry.state != EntryState::cancelled) continue;
          const auto current = parse_entry_state(local_state);
          if (!can_transition(current, EntryState::cancelled)) continue;
          sql << "UPDATE job_entries SET state = 'cancelled', message = 'cancelled by operator', "
                 "pushed_to = '', updated_at = :u WHERE id = :id",
              soci::use(now), soci::use(local_id);
        } else {
          if (is_final(x.entry.state)) continue;  // never seen here and already over
          auto [it, fresh] = local_jobs.try_emplace(x.job.id, 0);
          if (fresh) {
            const ll up_job = x.job.id;
            ll found = 0;
            soci::indicator jind = soci::i_null;
            sql << "SELECT id FROM jobs WHERE upstream_id = :u", soci::into(found, jind), soci::use(up_job);
            if (sql.got_data() && jind == soci::i_ok) {
              it->second = found;
            } else {
              Job job = x.job;
              job.id = 0;
              job.upstream_id = x.job.id;
              job.key_mode = "host-id";
              job.created_by = "parent";
              it->second = insert_job(sql, job, {}).id;
            }
          }
          const ll job_id = it->second;
          const int attempt = x.entry.attempt;
          sql << "INSERT INTO job_entries (job_id, host_id, state, attempt, last_seq, message, "
                 "output_tail, updated_at, upstream_id) VALUES (:j, :h, 'waiting', :a, 0, '', '', "
                 ":u, :up)",
              soci::use(job_id), soci::use(x.entry.host_id), soci::use(attempt), soci::use(now),
              soci::use(up_entry);
        }
        std::string via;
        soci::indicator vind = soci::i_null;
        sql << "SELECT via FROM hosts WHERE host_id = :h", soci::into(via, vind), soci::use(x.entry.host_id);
        vias.insert(sql.got_data() && vind == soci::i_ok ? via : x.entry.host_id);
      }
      return std::vector<std::string>(vias.begin(), vias.end());
    });
  }

  std::vector<PendingHost> hosts_to_report(int limit) override {
    return guarded([&](soci::session& sql) {
      std::vector<PendingHost> out;
      soci::rowset<soci::row> rs = (sql.prepare << "SELECT " << kHostColumns
                                                 << ", up_version FROM hosts WHERE up_version > 0 "
                                                    "ORDER BY host_id"
                                                 << dialect_.limit(std::max(1, limit)));
      for (const auto& r : rs) out.push_back({host_from_row(r), get_i64(r, 11)});
      return out;
    });
  }

  void hosts_reported(const std::vector<std::pair<std::string, std::int64_t>>& done) override {
    if (done.empty()) return;
    write([&](soci::session& sql) {
      std::string id;
      ll version = 0;
      soci::statement st = (sql.prepare << "UPDATE hosts SET up_version = 0 WHERE host_id = :h "
                                           "AND up_version = :v",
                            soci::use(id), soci::use(version));
      for (const auto& [h, v] : done) {
        id = h;
        version = v;
        st.execute(true);
      }
    });
  }

  std::vector<PendingReport> reports_to_forward(int limit) override {
    return guarded([&](soci::session& sql) {
      std::vector<PendingReport> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT id, upstream_id, attempt, last_seq, state, exit_code, message, "
                          "output_tail, up_version FROM job_entries WHERE up_version > 0 AND "
                          "upstream_id <> 0 ORDER BY id"
                       << dialect_.limit(std::max(1, limit)));
      for (const auto& r : rs) {
        PendingReport p;
        p.local_id = get_i64(r, 0);
        p.report.entry_id = get_i64(r, 1);
        p.report.attempt = static_cast<std::int32_t>(get_i64(r, 2));
        p.report.seq = get_i64(r, 3);
        p.report.state = parse_entry_state(get_str(r, 4));
        if (auto x = get_opt_i64(r, 5)) p.report.exit_code = static_cast<int>(*x);
        p.report.message = get_str(r, 6);
        p.report.output_tail = get_str(r, 7);
        p.version = get_i64(r, 8);
        out.push_back(std::move(p));
      }
      return out;
    });
  }

  void reports_forwarded(const std::vector<std::pair<std::int64_t, std::int64_t>>& done) override {
    if (done.empty()) return;
    write([&](soci::session& sql) {
      ll id = 0, version = 0;
      soci::statement st = (sql.prepare << "UPDATE job_entries SET up_version = 0 WHERE id = :id "
                                           "AND up_version = :v",
                            soci::use(id), soci::use(version));
      for (const auto& [e, v] : done) {
        id = e;
        version = v;
        st.execute(true);
      }
    });
  }

private:
  std::optional<Host> select_host(soci::session& sql, const std::string& host_id) {
    soci::rowset<soci::row> rs = (sql.prepare << "SELECT " << kHostColumns
                                               << " FROM hosts WHERE host_id = :id",
                                  soci::use(host_id));
    for (const auto& r : rs) return host_from_row(r);
    return std::nullopt;
  }

  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

  // Runs `fn` on a pooled session, translating database errors into distrib::Error.
  template <class Fn>
  std::invoke_result_t<Fn&, soci::session&> guarded(Fn&& fn) {
    try {
      soci::session sql(pool_);
      return fn(sql);
    } catch (const Error&) {
      throw;
    } catch (const soci::soci_error& e) {
      const std::string what = first_line(e.what());
      const bool busy = what.find("locked") != std::string::npos ||
                        what.find("busy") != std::string::npos;
      throw Error(busy ? ErrorKind::unavailable : ErrorKind::internal,
                  dialect_.name + " database error: " + what);
    }
  }

  // One transaction; serialised in-process where the database has a single writer.
  template <class Fn>
  std::invoke_result_t<Fn&, soci::session&> write(Fn&& fn) {
    std::unique_lock<std::mutex> lock(write_mutex_, std::defer_lock);
    if (dialect_.serialize_writes) lock.lock();
    return guarded([&](soci::session& sql) -> std::invoke_result_t<Fn&, soci::session&> {
      soci::transaction tr(sql);
      if constexpr (std::is_void_v<decltype(fn(sql))>) {
        fn(sql);
        tr.commit();
      } else {
        auto result = fn(sql);
        tr.commit();
        return result;
      }
    });
  }

  int read_version(soci::session& sql) {
    int v = 0;
    soci::indicator ind = soci::i_null;
    sql << "SELECT MAX(version) FROM schema_version", soci::into(v, ind);
    return ind == soci::i_ok ? v : 0;
  }

  void migrate() {
    guarded([&](soci::session& sql) {
      std::lock_guard lock(write_mutex_);
      try {
        sql << "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at "
               "BIGINT NOT NULL)";
      } catch (const soci::soci_error& e) {
        throw Error(ErrorKind::unavailable,
                    "cannot use the " + dialect_.name + " database: " + first_line(e.what()));
      }
      const int current = read_version(sql);
      if (current > latest_schema_version())
        throw Error(ErrorKind::invalid_argument,
                    "database schema version " + std::to_string(current) +
                        " is newer than this distribd understands (" +
                        std::to_string(latest_schema_version()) + "); upgrade distribd");
      for (const auto& m : migrations()) {
        if (m.version <= current) continue;
        soci::transaction tr(sql);
        for (const auto& s : m.statements) sql << render(s, dialect_);
        const ll now = fs::now_unix();
        sql << "INSERT INTO schema_version (version, applied_at) VALUES (:v, :t)",
            soci::use(m.version), soci::use(now);
        tr.commit();
      }
      return 0;
    });
  }

  const Dialect& dialect_;
  soci::connection_pool pool_;
  std::mutex write_mutex_;
};

}  // namespace
}  // namespace store

void register_builtin_stores(StoreRegistry& registry) {
  registry.add("sqlite", [](const StoreSettings& s) -> std::unique_ptr<Store> {
    if (s.path.empty())
      throw Error(ErrorKind::invalid_argument, "sqlite database path is not set");
    {
      // SOCI would create a missing file silently; check that an existing one is readable.
      std::error_code ec;
      if (std::filesystem::exists(s.path, ec) && ::access(s.path.c_str(), R_OK | W_OK) != 0)
        throw Error(ErrorKind::invalid_argument,
                    "database " + s.path + " is not readable and writable");
    }
    const std::string conn = "db=" + s.path + " timeout=" + std::to_string(s.busy_timeout_seconds);
    return std::make_unique<store::SociStore>(store::sqlite_dialect(), *soci::factory_sqlite3(),
                                              conn, s);
  });
}

}  // namespace distrib
