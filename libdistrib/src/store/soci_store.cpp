// Store on SOCI. Shared SQL lives here; what differs per database comes from the Dialect.
#include <distrib/error.h>
#include <distrib/store/store.h>

#include "model/json_codec.h"
#include "store/dialect.h"
#include "util/fs.h"

#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <mutex>
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
    "host_id, name, addresses, os, role, parent, agent_version, registered_at, last_seen";
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
  return h;
}

const char* kEntryColumns =
    "e.id, e.job_id, e.host_id, h.name, e.state, e.attempt, e.last_seq, e.exit_code, e.message, "
    "e.output_tail, e.updated_at";
const char* kEntryFrom = " FROM job_entries e LEFT JOIN hosts h ON h.host_id = e.host_id ";
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
  return e;
}

const char* kJobColumns =
    "id, type, package_name, package_version, destinations, key_mode, created_by, created_at, "
    "cancel_requested";
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
  return j;
}

// States an operator's cancel moves to cancelled (an install under way runs to its end).
const char* kCancellable = "('waiting', 'transferring', 'transferred', 'suspended')";
const char* kOpen = "('waiting', 'transferring', 'transferred', 'installing', 'suspended')";

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

  void upsert_host(const Host& h) override {
    write([&](soci::session& sql) {
      const auto addresses = join_addresses(h.addresses);
      const std::string role(to_string(h.role));
      const ll registered = h.registered_at ? h.registered_at : fs::now_unix();
      const ll seen = h.last_seen ? h.last_seen : fs::now_unix();
      sql << dialect_.upsert_host, soci::use(h.host_id, "host_id"), soci::use(h.name, "name"),
          soci::use(addresses, "addresses"), soci::use(h.os, "os"), soci::use(role, "role"),
          soci::use(h.parent, "parent"), soci::use(h.agent_version, "agent_version"),
          soci::use(registered, "registered_at"), soci::use(seen, "last_seen");
    });
  }

  std::optional<Host> find_host(const std::string& host_id) override {
    return guarded([&](soci::session& sql) -> std::optional<Host> {
      soci::rowset<soci::row> rs = (sql.prepare << "SELECT " << kHostColumns
                                                 << " FROM hosts WHERE host_id = :id",
                                    soci::use(host_id));
      for (const auto& r : rs) return host_from_row(r);
      return std::nullopt;
    });
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
                          "created_at FROM packages ORDER BY name, created_at");
      for (const auto& r : rs) {
        PackageSummary p;
        p.name = get_str(r, 0);
        p.version = get_str(r, 1);
        p.payload_digest = get_str(r, 2);
        p.payload_size = static_cast<std::uint64_t>(get_i64(r, 3));
        p.file_count = static_cast<std::uint64_t>(get_i64(r, 4));
        p.created_at = get_i64(r, 5);
        out.push_back(std::move(p));
      }
      return out;
    });
  }

  Job create_job(const Job& job, const std::vector<std::string>& host_ids) override {
    return write([&](soci::session& sql) {
      Job out = job;
      out.created_at = job.created_at ? job.created_at : fs::now_unix();
      const std::string type(to_string(job.type));
      const auto dests = join_addresses(job.destinations);
      const ll created = out.created_at;
      const int cancel = 0;
      sql << "INSERT INTO jobs (type, package_name, package_version, destinations, key_mode, "
             "created_by, created_at, cancel_requested) VALUES (:t, :n, :v, :d, :k, :b, :c, :x)",
          soci::use(type), soci::use(job.package_name), soci::use(job.package_version),
          soci::use(dests), soci::use(job.key_mode), soci::use(job.created_by),
          soci::use(created), soci::use(cancel);
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
    });
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

  std::vector<std::string> hosts_with_open_entries() override {
    return guarded([&](soci::session& sql) {
      std::vector<std::string> out;
      soci::rowset<soci::row> rs = (sql.prepare << "SELECT DISTINCT host_id FROM job_entries "
                                                   "WHERE state IN "
                                                << kOpen);
      for (const auto& r : rs) out.push_back(get_str(r, 0));
      return out;
    });
  }

  ReportOutcome apply_report(const std::string& host_id, const EntryReport& rep) override {
    return write([&](soci::session& sql) {
      ReportOutcome out;
      const ll id = rep.entry_id;
      std::string owner, state_text;
      int attempt = 0;
      ll last_seq = 0;
      soci::indicator ind = soci::i_null;
      sql << "SELECT host_id, state, attempt, last_seq FROM job_entries WHERE id = :id",
          soci::into(owner, ind), soci::into(state_text), soci::into(attempt),
          soci::into(last_seq), soci::use(id);
      if (!sql.got_data() || owner != host_id) {
        out.kind = ReportOutcome::Kind::unknown_entry;
        return out;
      }
      const auto current = parse_entry_state(state_text);
      out.current = current;
      if (rep.attempt != attempt || rep.seq <= last_seq) {
        out.kind = ReportOutcome::Kind::duplicate;
        return out;
      }
      if (rep.state != current && !can_transition(current, rep.state)) {
        out.kind = ReportOutcome::Kind::refused;
        return out;
      }
      const std::string state(to_string(rep.state));
      const ll seq = rep.seq;
      const ll now = fs::now_unix();
      int exit_code = rep.exit_code.value_or(0);
      soci::indicator exit_ind = rep.exit_code ? soci::i_ok : soci::i_null;
      sql << "UPDATE job_entries SET state = :s, last_seq = :q, exit_code = :x, message = :m, "
             "output_tail = :o, updated_at = :u WHERE id = :id",
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
          (sql.prepare << "SELECT host_id FROM job_entries WHERE job_id = :id AND state IN "
                       << kCancellable,
           soci::use(id));
      for (const auto& r : rs) hosts.push_back(get_str(r, 0));
      const ll now = fs::now_unix();
      sql << "UPDATE jobs SET cancel_requested = 1 WHERE id = :id", soci::use(id);
      sql << "UPDATE job_entries SET state = 'cancelled', message = 'cancelled by operator', "
             "updated_at = :u WHERE job_id = :id AND state IN "
          << kCancellable,
          soci::use(now), soci::use(id);
      return hosts;
    });
  }

private:
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
