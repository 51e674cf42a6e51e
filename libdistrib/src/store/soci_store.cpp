// Store on SOCI. Shared SQL lives here; what differs per database comes from the Dialect.
#include <distrib/error.h>
#include <distrib/model/event.h>
#include <distrib/store/store.h>

#include "model/json_codec.h"
#include "store/connection.h"
#include "store/dialect.h"
#include "util/fs.h"

#include <distrib/content/digest.h>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <soci/soci.h>
#include <soci/odbc/soci-odbc.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <algorithm>
#include <istream>
#include <limits>
#include <sstream>
#include <ostream>
#include <atomic>
#include <condition_variable>
#include <chrono>
#include <thread>
#include <spdlog/spdlog.h>
#include <map>
#include <random>
#include <unordered_set>
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

namespace store {
namespace {

// Events written by the current thread's transaction in progress (the listener is told after
// its commit).
thread_local int tl_events_written = 0;
// A database unreachable at least this long is told as a database.outage event.
constexpr long long kOutageEventMs = 2000;


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
    "e.output_tail, e.updated_at, h.parent, p.name, e.wave, e.late_join, e.ready_at, e.seg_done, "
    "e.seg_total, e.bytes_received, e.bad_chunks";
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
  e.wave = static_cast<int>(get_i64(r, 13));
  e.late_join = get_i64(r, 14) != 0;
  e.ready_at = get_i64(r, 15);
  e.progress.segments_done = get_i64(r, 16);
  e.progress.segments_total = get_i64(r, 17);
  e.progress.bytes_received = get_i64(r, 18);
  e.progress.bad_chunks = get_i64(r, 19);
  return e;
}

// The job's type-specific parameters (jobs.params): the collect specification.
void read_params(const std::string& params, Job& j) {
  if (params.empty()) return;
  const auto o = json::parse_object(params);
  if (auto c = o.find("collect"); c != o.end() && c->value().is_object())
    j.collect = json::collect_from_json(c->value().as_object());
}

const char* kJobColumns =
    "id, type, package_name, package_version, destinations, key_mode, created_by, created_at, "
    "cancel_requested, upstream_id, start_at, expires_at, timing, window_spec, max_retries, "
    "retry_installs, retry_backoff, waves, success_threshold, error_threshold, rollout_state, "
    "current_wave, rollout_message, id_groups, split_size, split_interval, params";

std::string join_waves(const std::vector<int>& waves) {
  std::string out;
  for (int w : waves) out += (out.empty() ? "" : ",") + std::to_string(w);
  return out;
}
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
std::string state_list(Keep keep) {
  std::string out;
  for (const auto state : kAllEntryStates)
    if (keep(state)) out += std::string(out.empty() ? "('" : ", '") + std::string(to_string(state)) + "'";
  return out + ")";
}
// States an operator's cancel moves to cancelled (an install under way runs to its end).
const std::string kCancellable = state_list([](EntryState s) { return can_transition(s, EntryState::cancelled); });
// States of entries not yet ended.
const std::string kOpen = state_list([](EntryState s) { return !is_final(s); });

bool host_differs(const Host& a, const Host& b) {
  return a.name != b.name || a.addresses != b.addresses || a.os != b.os || a.role != b.role ||
         a.parent != b.parent || a.agent_version != b.agent_version || a.via != b.via;
}

// Sessions handed out one per call. Not soci::connection_pool: a session taken from it is a
// proxy sharing the pooled session's backend, and reconnecting the proxy frees that backend
// under the pool. Here a caller holds the real session and may reconnect it.
class SessionPool {
public:
  explicit SessionPool(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      sessions_.push_back(std::make_unique<soci::session>());
      free_.push_back(i);
    }
  }
  std::size_t size() const { return sessions_.size(); }
  soci::session& at(std::size_t i) { return *sessions_.at(i); }

  class Lease {
  public:
    Lease(SessionPool& pool, std::size_t i) : pool_(pool), i_(i) {}
    ~Lease() { pool_.give_back(i_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    soci::session& operator*() { return pool_.at(i_); }

  private:
    SessionPool& pool_;
    std::size_t i_;
  };
  Lease lease() {
    std::unique_lock lock(mutex_);
    available_.wait(lock, [&] { return !free_.empty(); });
    const auto i = free_.back();
    free_.pop_back();
    return Lease(*this, i);
  }

private:
  void give_back(std::size_t i) {
    {
      std::lock_guard lock(mutex_);
      free_.push_back(i);
    }
    available_.notify_one();
  }
  std::vector<std::unique_ptr<soci::session>> sessions_;
  std::vector<std::size_t> free_;
  std::mutex mutex_;
  std::condition_variable available_;
};

class SociStore final : public Store {
public:
  SociStore(const Dialect& dialect, const soci::backend_factory& backend,
            const std::string& connection, const StoreSettings& settings)
      : dialect_(dialect), pool_(static_cast<std::size_t>(std::max(1, settings.pool_size))),
        reconnect_seconds_(settings.reconnect_seconds) {
    for (std::size_t i = 0; i < static_cast<std::size_t>(std::max(1, settings.pool_size)); ++i) {
      auto& s = pool_.at(i);
      try {
        s.open(backend, connection);
        for (const auto& stmt : dialect_.connection_setup) s << stmt;
      } catch (const soci::soci_error& e) {
        // Drivers put the reason (refused, authentication failed, no such database) on the
        // lines after SOCI's own first line.
        std::string why;
        std::istringstream lines(e.what());
        for (std::string line; std::getline(lines, line);) {
          while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
          const auto b = line.find_first_not_of(" \t");
          if (b != std::string::npos) why += (why.empty() ? "" : "; ") + line.substr(b);
        }
        throw Error(ErrorKind::unavailable, "cannot open the " + dialect_.name + " database: " + why +
                                                (settings.backend == "sqlite" ? "" : " (check the database "
                                                 "connection: server address, port, database, user and password)"));
      }
    }
    migrate();
  }

  int version_at_open() override { return version_at_open_; }

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
        emit(sql, "host.registered", Severity::info, 0, h.host_id, h.name,
             std::string(to_string(h.role)) + " " + h.name + " registered" +
                 (h.addresses.empty() ? std::string() : " from " + h.addresses.front()));
        out.created = out.changed = true;
        return out;
      }
      out.previous_via = old->via;
      Host updated = h;
      updated.via = via;
      out.changed = host_differs(*old, updated);
      if (out.changed) {
        std::string what;
        if (old->name != h.name) what += "renamed from " + old->name;
        if (old->addresses != h.addresses)
          what += std::string(what.empty() ? "" : ", ") + "address " + join_addresses(old->addresses) + " -> " + addresses;
        if (old->via != via) what += std::string(what.empty() ? "" : ", ") + "moved below " + via;
        if (!what.empty())
          emit(sql, "host.changed", Severity::info, 0, h.host_id, h.name, "host " + h.name + " " + what);
      }
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

  std::vector<Host> hosts_with_key(HostKeyMode mode, const std::string& key) override {
    if (mode == HostKeyMode::host_id) return {};
    return guarded([&](soci::session& sql) {
      std::vector<Host> out;
      std::string value = key;
      if (mode == HostKeyMode::name)
        std::transform(value.begin(), value.end(), value.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      else
        value = "%" + key + "%";
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT " << kHostColumns << " FROM hosts WHERE "
                       << (mode == HostKeyMode::name ? "LOWER(name) = :k" : "addresses LIKE :k"),
           soci::use(value));
      for (const auto& r : rs) out.push_back(host_from_row(r));
      return out;
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
      emit(sql, "package.registered", Severity::info, 0, "", m.name + " " + m.version,
           "package " + m.name + " " + m.version + " registered (" + std::to_string(m.payload_size) + " bytes)");
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
      emit(sql, "package.deleted", Severity::info, 0, "", name + " " + version,
           "package " + name + " " + version + " deleted");
      return true;
    });
  }

  JobCreated create_job(const Job& job, const std::vector<std::string>& host_ids) override {
    return write([&](soci::session& sql) {
      std::vector<std::string> ids;
      std::unordered_set<std::string> seen;
      ids.reserve(host_ids.size());
      for (const auto& h : host_ids)
        if (seen.insert(h).second) ids.push_back(h);
      const std::string role = targets_agents(job.type) ? "agent" : "relay";
      for (const auto& g : job.id_groups) {
        soci::rowset<soci::row> rs =
            (sql.prepare << "SELECT m.host_id FROM id_group_members m JOIN hosts h ON h.host_id = "
                            "m.host_id WHERE m.group_name = :g AND h.approved = 1 AND h.role = :r "
                            "ORDER BY m.joined_at, m.host_id",
             soci::use(g), soci::use(role));
        for (const auto& r : rs) {
          auto id = get_str(r, 0);
          if (seen.insert(id).second) ids.push_back(std::move(id));
        }
      }
      std::vector<int> waves;
      if (!job.rollout.waves.empty()) {
        // Drawn at random, not in registration order.
        std::mt19937_64 rng(std::random_device{}());
        std::shuffle(ids.begin(), ids.end(), rng);
        waves = assign_waves(ids.size(), job.rollout.waves);
      }
      JobCreated out;
      out.job = insert_job(sql, job, ids, waves);
      out.entries = static_cast<std::int64_t>(ids.size());
      emit(sql, "job.created", Severity::info, out.job.id, "",
           job.package_name.empty() ? std::string() : job.package_name + " " + job.package_version,
           "job " + std::to_string(out.job.id) + " created: " + std::string(to_string(job.type)) + " to " +
               std::to_string(ids.size()) + " host(s)" + (job.created_by.empty() ? std::string() : " by " + job.created_by));
      for (const auto& g : job.id_groups)
        sql << "INSERT INTO job_id_groups (group_name, job_id) VALUES (:g, :j)", soci::use(g),
            soci::use(static_cast<ll>(out.job.id));
      const ll id = out.job.id, now = fs::now_unix();
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT DISTINCT COALESCE(h.via, e.host_id) FROM job_entries e LEFT JOIN "
                          "hosts h ON h.host_id = e.host_id WHERE e.job_id = :j AND e.ready_at <= :n",
           soci::use(id), soci::use(now));
      for (const auto& r : rs) out.vias.push_back(get_str(r, 0));
      return out;
    });
  }

  // Inserts the job and its entries; `waves` (when not empty) gives each host's wave.
  Job insert_job(soci::session& sql, const Job& job, const std::vector<std::string>& host_ids,
                 const std::vector<int>& waves = {}) {
    Job out = job;
    out.created_at = job.created_at ? job.created_at : fs::now_unix();
    const bool rollout = !job.rollout.waves.empty();
    out.rollout_state = rollout ? RolloutState::running : RolloutState::none;
    out.current_wave = rollout ? 1 : 0;
    const std::string type(to_string(job.type));
    const auto dests = join_addresses(job.destinations);
    const ll created = out.created_at;
    const int cancel = 0;
    const ll upstream = job.upstream_id;
    const auto& sc = job.schedule;
    const ll start = sc.start_at, expires = sc.expires_at;
    const std::string timing(to_string(sc.timing));
    const std::string window = sc.timing == InstallTiming::window ? to_string(sc.window) : std::string();
    const int retries = sc.max_retries, retry_installs = sc.retry_installs ? 1 : 0,
              backoff = sc.retry_backoff_seconds;
    const std::string wave_text = join_waves(job.rollout.waves);
    const int success = job.rollout.success_threshold, errors = job.rollout.error_threshold;
    const std::string rstate(to_string(out.rollout_state));
    const int current = out.current_wave;
    const std::string groups = join_addresses(job.id_groups);
    const ll split_size = static_cast<ll>(job.split.size);
    const int split_interval = job.split.interval_seconds;
    const std::string params =
        job.type == JobType::collect_files ? boost::json::serialize(boost::json::object{{"collect", json::to_json(job.collect)}}) : std::string();
    sql << "INSERT INTO jobs (type, package_name, package_version, destinations, key_mode, "
           "created_by, created_at, cancel_requested, upstream_id, start_at, expires_at, timing, "
           "window_spec, max_retries, retry_installs, retry_backoff, waves, success_threshold, "
           "error_threshold, rollout_state, current_wave, rollout_message, id_groups, split_size, "
           "split_interval, params) VALUES (:t, "
           ":n, :v, :d, :k, :b, :c, :x, :u, :sa, :ea, :ti, :wi, :mr, :ri, :rb, :wv, :st, :et, :rs, "
           ":cw, '', :ig, :ss, :si, :pa)",
        soci::use(type), soci::use(job.package_name), soci::use(job.package_version),
        soci::use(dests), soci::use(job.key_mode), soci::use(job.created_by), soci::use(created),
        soci::use(cancel), soci::use(upstream), soci::use(start), soci::use(expires),
        soci::use(timing), soci::use(window), soci::use(retries), soci::use(retry_installs),
        soci::use(backoff), soci::use(wave_text), soci::use(success), soci::use(errors),
        soci::use(rstate), soci::use(current), soci::use(groups), soci::use(split_size),
        soci::use(split_interval), soci::use(params);
    ll id = 0;
    sql << dialect_.last_id_query("jobs"), soci::into(id);
    out.id = id;
    if (host_ids.empty()) return out;
    // Bound in bulk, 1,000 rows per execution: drivers with array binding (ODBC) send them in
    // one round trip.
    std::vector<std::string> hosts;
    std::vector<ll> jobs, times, readies;
    std::vector<int> wave_nos;
    for (std::size_t i = 0; i < host_ids.size(); i += 1000) {
      const std::size_t end = std::min(host_ids.size(), i + 1000);
      hosts.assign(host_ids.begin() + static_cast<std::ptrdiff_t>(i), host_ids.begin() + static_cast<std::ptrdiff_t>(end));
      jobs.assign(hosts.size(), id);
      times.assign(hosts.size(), created);
      wave_nos.clear();
      readies.clear();
      for (std::size_t k = i; k < end; ++k) {
        const int wave = waves.empty() ? 0 : waves[k];
        wave_nos.push_back(wave);
        readies.push_back(wave > 1 ? kHeldUntilReleased : start);
      }
      sql << "INSERT INTO job_entries (job_id, host_id, state, attempt, last_seq, message, output_tail, updated_at, "
             "wave, ready_at) VALUES (:j, :h, 'waiting', 1, 0, '', '', :u, :w, :r)",
          soci::use(jobs), soci::use(hosts), soci::use(times), soci::use(wave_nos), soci::use(readies);
    }
    return out;
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
      int attempt = 0, max_retries = 0, retry_installs = 0, backoff = 30;
      ll last_seq = 0, seg_done = 0, seg_total = 0, bytes_received = 0, bad_chunks = 0;
      soci::indicator ind = soci::i_null, via_ind = soci::i_null;
      ll job_id = 0;
      std::string host_name;
      soci::indicator name_ind = soci::i_null;
      sql << "SELECT e.host_id, e.state, e.attempt, e.last_seq, h.via, j.max_retries, "
             "j.retry_installs, j.retry_backoff, e.seg_done, e.seg_total, e.bytes_received, "
             "e.bad_chunks, e.job_id, h.name FROM job_entries e JOIN jobs j ON j.id = e.job_id "
             "LEFT JOIN hosts h ON h.host_id = e.host_id WHERE e.id = :id",
          soci::into(owner, ind), soci::into(state_text), soci::into(attempt),
          soci::into(last_seq), soci::into(via, via_ind), soci::into(max_retries),
          soci::into(retry_installs), soci::into(backoff), soci::into(seg_done), soci::into(seg_total),
          soci::into(bytes_received), soci::into(bad_chunks), soci::into(job_id), soci::into(host_name, name_ind),
          soci::use(id);
      if (name_ind != soci::i_ok) host_name.clear();
      if (via_ind != soci::i_ok) via.clear();
      const bool ours = forwarded ? (sql.got_data() && via == reporter && owner != reporter)
                                  : (sql.got_data() && owner == reporter);
      if (!ours) {
        out.kind = ReportOutcome::Kind::unknown_entry;
        return out;
      }
      const auto current = parse_entry_state(state_text);
      out.current = current;
      // A relay that retried an entry reports its new attempt: it restarts the entry here too,
      // unless the entry was ended here (cancelled, expired).
      const bool new_attempt = forwarded && rep.attempt > attempt &&
                               (!is_final(current) || current == EntryState::failed);
      if ((rep.attempt != attempt && !new_attempt) || rep.seq <= last_seq) {
        out.kind = ReportOutcome::Kind::duplicate;
        return out;
      }
      const bool allowed = new_attempt || (forwarded ? can_reach(current, rep.state)
                                                     : can_transition(current, rep.state));
      if (rep.state != current && !allowed) {
        out.kind = ReportOutcome::Kind::refused;
        return out;
      }
      const ll seq = rep.seq;
      const ll now = fs::now_unix();
      int exit_code = rep.exit_code.value_or(0);
      soci::indicator exit_ind = rep.exit_code ? soci::i_ok : soci::i_null;
      // A transfer failure (or, when the job asks, a failed install) is retried with backoff by
      // the server the agent reports to; a relay's forwarded failure means it gave up.
      const bool transfer_failure = current != EntryState::installing;
      if (!forwarded && rep.state == EntryState::failed && attempt <= max_retries &&
          (transfer_failure || retry_installs)) {
        JobSchedule sc;
        sc.retry_backoff_seconds = backoff;
        const int next = attempt + 1;
        const ll retry_at = now + retry_delay(sc, next);
        const std::string message = "attempt " + std::to_string(attempt) + " failed (" + rep.message +
                                    "); attempt " + std::to_string(next) + " of " +
                                    std::to_string(max_retries + 1) + " in " +
                                    std::to_string(retry_at - now) + " s";
        sql << "UPDATE job_entries SET state = 'waiting', attempt = :a, last_seq = :q, exit_code = "
               ":x, message = :m, output_tail = :o, updated_at = :u, ready_at = :r, pushed_to = '', "
               "seg_done = 0, seg_total = 0, bytes_received = 0, bad_chunks = 0, "
               "up_version = CASE WHEN upstream_id <> 0 THEN up_version + 1 ELSE 0 END WHERE id = :id",
            soci::use(next), soci::use(seq), soci::use(exit_code, exit_ind), soci::use(message),
            soci::use(rep.output_tail), soci::use(now), soci::use(retry_at), soci::use(id);
        emit(sql, "entry.retrying", Severity::warning, job_id, owner, host_name, message);
        out.kind = ReportOutcome::Kind::applied;
        out.current = EntryState::waiting;
        out.retried = true;
        out.retry_at = retry_at;
        return out;
      }
      const std::string state(to_string(rep.state));
      const int new_attempt_no = new_attempt ? rep.attempt : attempt;
      // A report without progress keeps the progress the entry has.
      if (!rep.progress.empty()) {
        seg_done = rep.progress.segments_done;
        seg_total = rep.progress.segments_total;
        bytes_received = rep.progress.bytes_received;
        bad_chunks = rep.progress.bad_chunks;
      }
      sql << "UPDATE job_entries SET state = :s, attempt = :a, last_seq = :q, exit_code = :x, "
             "message = :m, output_tail = :o, updated_at = :u, seg_done = :sd, seg_total = :st, "
             "bytes_received = :br, bad_chunks = :bc, up_version = CASE WHEN upstream_id "
             "<> 0 THEN up_version + 1 ELSE 0 END WHERE id = :id",
          soci::use(state), soci::use(new_attempt_no), soci::use(seq), soci::use(exit_code, exit_ind),
          soci::use(rep.message), soci::use(rep.output_tail), soci::use(now), soci::use(seg_done),
          soci::use(seg_total), soci::use(bytes_received), soci::use(bad_chunks), soci::use(id);
      if (rep.state != current && (rep.state == EntryState::succeeded || rep.state == EntryState::failed)) {
        const bool ok = rep.state == EntryState::succeeded;
        emit(sql, ok ? "entry.succeeded" : "entry.failed", ok ? Severity::info : Severity::warning, job_id, owner,
             host_name, "job " + std::to_string(job_id) + " on " + (host_name.empty() ? owner : host_name) + ": " + state +
                            (rep.message.empty() ? std::string() : " (" + first_line(rep.message) + ")"));
        emit_job_end(sql, job_id);
      }
      out.kind = ReportOutcome::Kind::applied;
      out.current = rep.state;
      return out;
    });
  }

  JobCancel cancel_job_entries(std::int64_t job_id) override {
    return write([&](soci::session& sql) {
      const ll id = job_id;
      int exists = 0;
      sql << "SELECT COUNT(*) FROM jobs WHERE id = :id", soci::into(exists), soci::use(id);
      if (exists == 0) throw Error(ErrorKind::not_found, "job " + std::to_string(job_id) + " does not exist");
      JobCancel out;
      ll cancelled = 0;
      sql << "SELECT COUNT(*) FROM job_entries WHERE job_id = :id AND state IN " << kCancellable,
          soci::into(cancelled), soci::use(id);
      out.cancelled = cancelled;
      auto& hosts = out.vias;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT DISTINCT COALESCE(h.via, e.host_id) FROM job_entries e LEFT "
                          "JOIN hosts h ON h.host_id = e.host_id WHERE e.job_id = :id AND "
                          "e.state IN "
                       << kCancellable,
           soci::use(id));
      for (const auto& r : rs) hosts.push_back(get_str(r, 0));
      const ll now = fs::now_unix();
      sql << "UPDATE jobs SET cancel_requested = 1, rollout_state = CASE WHEN rollout_state = "
             "'running' THEN 'stopped' ELSE rollout_state END, rollout_message = CASE WHEN "
             "rollout_state = 'running' THEN 'cancelled by operator' ELSE rollout_message END "
             "WHERE id = :id",
          soci::use(id);
      sql << "UPDATE job_entries SET state = 'cancelled', message = 'cancelled by operator', "
             "pushed_to = '', updated_at = :u WHERE job_id = :id AND state IN "
          << kCancellable,
          soci::use(now), soci::use(id);
      emit(sql, "job.cancelled", Severity::warning, id, "", "", "job " + std::to_string(id) + " cancelled by operator");
      return out;
    });
  }

  std::vector<RoutedEntry> entries_to_push(const std::string& via, int limit) override {
    return guarded([&](soci::session& sql) {
      std::vector<RoutedEntry> out;
      const ll now = fs::now_unix();
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT e.id, e.job_id, e.host_id, e.state, e.attempt, j.type, "
                          "j.package_name, j.package_version, j.created_at, j.cancel_requested, "
                          "j.expires_at, j.timing, j.window_spec, j.max_retries, j.retry_installs, "
                          "j.retry_backoff, j.split_size, j.split_interval, j.params "
                          "FROM job_entries e JOIN hosts h ON h.host_id = e.host_id JOIN jobs j "
                          "ON j.id = e.job_id WHERE h.via = :v AND e.host_id <> :v2 AND "
                          "e.pushed_to <> :v3 AND e.ready_at <= :n ORDER BY e.id"
                       << dialect_.limit(std::max(1, limit)),
           soci::use(via), soci::use(via), soci::use(via), soci::use(now));
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
        auto& sc = x.job.schedule;
        sc.expires_at = get_i64(r, 10);
        sc.timing = parse_install_timing(get_str(r, 11));
        if (const auto w = get_str(r, 12); !w.empty()) sc.window = parse_daily_window(w);
        sc.max_retries = static_cast<int>(get_i64(r, 13));
        sc.retry_installs = get_i64(r, 14) != 0;
        sc.retry_backoff_seconds = static_cast<int>(get_i64(r, 15));
        x.job.split.size = static_cast<std::uint64_t>(get_i64(r, 16));
        x.job.split.interval_seconds = static_cast<int>(get_i64(r, 17));
        read_params(get_str(r, 18), x.job);
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
        int local_attempt = 1;
        std::string local_state;
        soci::indicator ind = soci::i_null;
        sql << "SELECT id, state, attempt FROM job_entries WHERE upstream_id = :u",
            soci::into(local_id, ind), soci::into(local_state), soci::into(local_attempt),
            soci::use(up_entry);
        const bool known = sql.got_data() && ind == soci::i_ok;
        const ll now = fs::now_unix();
        if (known) {
          const auto current = parse_entry_state(local_state);
          if (x.entry.attempt > local_attempt && x.entry.state == EntryState::waiting) {
            // The operator asked the parent to retry: a new attempt starts here.
            const int a = x.entry.attempt;
            sql << "UPDATE job_entries SET state = 'waiting', attempt = :a, ready_at = 0, message = "
                   "'retry requested', exit_code = NULL, output_tail = '', pushed_to = '', "
                   "up_version = 0, updated_at = :u WHERE id = :id",
                soci::use(a), soci::use(now), soci::use(local_id);
          } else if (x.entry.state == EntryState::suspended &&
                     (current == EntryState::waiting || current == EntryState::transferring)) {
            sql << "UPDATE job_entries SET state = 'suspended', message = 'suspended by operator', "
                   "pushed_to = '', updated_at = :u WHERE id = :id",
                soci::use(now), soci::use(local_id);
          } else if (x.entry.state != EntryState::suspended && current == EntryState::suspended &&
                     !is_final(x.entry.state)) {
            sql << "UPDATE job_entries SET state = 'waiting', message = 'resumed by operator', "
                   "pushed_to = '', updated_at = :u WHERE id = :id",
                soci::use(now), soci::use(local_id);
          } else if ((x.entry.state == EntryState::cancelled || x.entry.state == EntryState::expired) &&
                     can_transition(current, x.entry.state)) {
            const std::string st(to_string(x.entry.state));
            const std::string why = x.entry.state == EntryState::cancelled ? "cancelled by operator"
                                                                           : "expired before it could finish";
            sql << "UPDATE job_entries SET state = :s, message = :m, pushed_to = '', updated_at = :u "
                   "WHERE id = :id",
                soci::use(st), soci::use(why), soci::use(now), soci::use(local_id);
          } else if (!update_split(sql, local_id, x.job.split)) {
            continue;
          }
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
          const std::string initial = x.entry.state == EntryState::suspended ? "suspended" : "waiting";
          sql << "INSERT INTO job_entries (job_id, host_id, state, attempt, last_seq, message, "
                 "output_tail, updated_at, upstream_id) VALUES (:j, :h, :s, :a, 0, '', '', "
                 ":u, :up)",
              soci::use(job_id), soci::use(x.entry.host_id), soci::use(initial), soci::use(attempt),
              soci::use(now), soci::use(up_entry);
        }
        std::string via;
        soci::indicator vind = soci::i_null;
        sql << "SELECT via FROM hosts WHERE host_id = :h", soci::into(via, vind), soci::use(x.entry.host_id);
        vias.insert(sql.got_data() && vind == soci::i_ok ? via : x.entry.host_id);
      }
      return std::vector<std::string>(vias.begin(), vias.end());
    });
  }

  // A routed entry the relay already has may bring its job's new split (complete-now).
  bool update_split(soci::session& sql, ll local_entry, const SplitSpec& split) {
    const ll size = static_cast<ll>(split.size);
    const int interval = split.interval_seconds;
    soci::statement st = (sql.prepare << "UPDATE jobs SET split_size = :s, split_interval = :i WHERE "
                                         "id = (SELECT job_id FROM job_entries WHERE id = :e) AND "
                                         "(split_size <> :s2 OR split_interval <> :i2)",
                          soci::use(size), soci::use(interval), soci::use(local_entry), soci::use(size),
                          soci::use(interval));
    st.execute(true);
    return st.get_affected_rows() > 0;
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
                          "output_tail, up_version, seg_done, seg_total, bytes_received, "
                          "bad_chunks FROM job_entries WHERE up_version > 0 AND "
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
        p.report.progress.segments_done = get_i64(r, 9);
        p.report.progress.segments_total = get_i64(r, 10);
        p.report.progress.bytes_received = get_i64(r, 11);
        p.report.progress.bad_chunks = get_i64(r, 12);
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

  // --- host groups ---------------------------------------------------------------------

  void create_host_group(const HostGroup& g) override {
    write([&](soci::session& sql) {
      int exists = 0;
      sql << "SELECT COUNT(*) FROM host_groups WHERE name = :n", soci::into(exists), soci::use(g.name);
      if (exists) throw Error(ErrorKind::conflict, "host group \"" + g.name + "\" already exists");
      const ll now = g.created_at ? g.created_at : fs::now_unix();
      sql << "INSERT INTO host_groups (name, description, created_at, query) VALUES (:n, :d, :c, :q)",
          soci::use(g.name), soci::use(g.description), soci::use(now), soci::use(g.query);
      add_host_group_members(sql, g.name, g.members);
    });
  }

  int add_host_group_members(soci::session& sql, const std::string& name, const std::vector<std::string>& ids) {
    int changed = 0;
    for (const auto& h : ids) {
      int exists = 0;
      sql << "SELECT COUNT(*) FROM host_group_members WHERE group_name = :g AND host_id = :h",
          soci::into(exists), soci::use(name), soci::use(h);
      if (exists) continue;
      sql << "INSERT INTO host_group_members (group_name, host_id) VALUES (:g, :h)", soci::use(name), soci::use(h);
      ++changed;
    }
    return changed;
  }

  std::vector<HostGroup> select_host_groups(soci::session& sql, const std::string* only) {
    std::vector<HostGroup> out;
    std::map<std::string, std::size_t> index;
    const std::string name = only ? *only : std::string();
    const int all = only ? 0 : 1;
    soci::rowset<soci::row> rs = (sql.prepare << "SELECT name, description, created_at, query FROM host_groups "
                                                 "WHERE name = :n OR 1 = :a ORDER BY name",
                                  soci::use(name), soci::use(all));
    for (const auto& r : rs) {
      index[get_str(r, 0)] = out.size();
      out.push_back({get_str(r, 0), get_str(r, 1), get_i64(r, 2), {}, get_str(r, 3)});
    }
    if (out.empty()) return out;
    soci::rowset<soci::row> ms = (sql.prepare << "SELECT m.group_name, m.host_id FROM host_group_members m "
                                                 "LEFT JOIN hosts h ON h.host_id = m.host_id WHERE "
                                                 "m.group_name = :n OR 1 = :a ORDER BY h.name, m.host_id",
                                  soci::use(name), soci::use(all));
    for (const auto& r : ms)
      if (auto it = index.find(get_str(r, 0)); it != index.end()) out[it->second].members.push_back(get_str(r, 1));
    return out;
  }

  std::optional<HostGroup> find_host_group(const std::string& name) override {
    return guarded([&](soci::session& sql) -> std::optional<HostGroup> {
      auto v = select_host_groups(sql, &name);
      if (v.empty()) return std::nullopt;
      return std::move(v.front());
    });
  }

  std::vector<HostGroup> list_host_groups() override {
    return guarded([&](soci::session& sql) { return select_host_groups(sql, nullptr); });
  }

  int change_host_group(const std::string& name, const std::vector<std::string>& add,
                        const std::vector<std::string>& remove) override {
    return write([&](soci::session& sql) {
      int exists = 0;
      sql << "SELECT COUNT(*) FROM host_groups WHERE name = :n", soci::into(exists), soci::use(name);
      if (!exists) throw Error(ErrorKind::not_found, "host group \"" + name + "\" does not exist");
      int changed = add_host_group_members(sql, name, add);
      for (const auto& h : remove) {
        soci::statement st = (sql.prepare << "DELETE FROM host_group_members WHERE group_name = :g AND host_id = :h",
                              soci::use(name), soci::use(h));
        st.execute(true);
        changed += static_cast<int>(st.get_affected_rows());
      }
      return changed;
    });
  }

  bool delete_host_group(const std::string& name) override {
    return write([&](soci::session& sql) {
      sql << "DELETE FROM host_group_members WHERE group_name = :n", soci::use(name);
      soci::statement st = (sql.prepare << "DELETE FROM host_groups WHERE name = :n", soci::use(name));
      st.execute(true);
      return st.get_affected_rows() > 0;
    });
  }

  // --- ID groups -----------------------------------------------------------------------

  void create_id_group(const IdGroup& g) override {
    write([&](soci::session& sql) {
      int exists = 0;
      sql << "SELECT COUNT(*) FROM id_groups WHERE name = :n", soci::into(exists), soci::use(g.name);
      if (exists) throw Error(ErrorKind::conflict, "ID group \"" + g.name + "\" already exists");
      const ll now = g.created_at ? g.created_at : fs::now_unix();
      sql << "INSERT INTO id_groups (name, description, owner, password_hash, name_pattern, ip_range, "
             "created_at) VALUES (:n, :d, :o, :p, :np, :ip, :c)",
          soci::use(g.name), soci::use(g.description), soci::use(g.owner), soci::use(g.password_hash),
          soci::use(g.policy.name_pattern), soci::use(g.policy.ip_range), soci::use(now);
    });
  }

  static IdGroup id_group_from_row(const soci::row& r) {
    IdGroup g;
    g.name = get_str(r, 0);
    g.description = get_str(r, 1);
    g.owner = get_str(r, 2);
    g.password_hash = get_str(r, 3);
    g.policy.name_pattern = get_str(r, 4);
    g.policy.ip_range = get_str(r, 5);
    g.created_at = get_i64(r, 6);
    return g;
  }
  static constexpr const char* kIdGroupColumns =
      "name, description, owner, password_hash, name_pattern, ip_range, created_at";

  std::optional<IdGroup> find_id_group(const std::string& name) override {
    return guarded([&](soci::session& sql) -> std::optional<IdGroup> {
      std::optional<IdGroup> g;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT " << kIdGroupColumns << " FROM id_groups WHERE name = :n", soci::use(name));
      for (const auto& r : rs) g = id_group_from_row(r);
      if (!g) return g;
      soci::rowset<soci::row> ms =
          (sql.prepare << "SELECT m.host_id, h.name, m.how, m.joined_at FROM id_group_members m LEFT "
                          "JOIN hosts h ON h.host_id = m.host_id WHERE m.group_name = :n ORDER BY "
                          "m.joined_at, h.name",
           soci::use(name));
      for (const auto& r : ms)
        g->members.push_back({get_str(r, 0), get_str(r, 1), parse_join_method(get_str(r, 2)), get_i64(r, 3)});
      return g;
    });
  }

  std::vector<IdGroup> list_id_groups(std::map<std::string, std::int64_t>* counts) override {
    return guarded([&](soci::session& sql) {
      std::vector<IdGroup> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT " << kIdGroupColumns << " FROM id_groups ORDER BY name");
      for (const auto& r : rs) out.push_back(id_group_from_row(r));
      if (counts) {
        soci::rowset<soci::row> cs = (sql.prepare << "SELECT group_name, COUNT(*) FROM id_group_members GROUP BY group_name");
        for (const auto& r : cs) (*counts)[get_str(r, 0)] = get_i64(r, 1);
      }
      return out;
    });
  }

  bool delete_id_group(const std::string& name) override {
    return write([&](soci::session& sql) {
      sql << "DELETE FROM id_group_members WHERE group_name = :n", soci::use(name);
      sql << "DELETE FROM job_id_groups WHERE group_name = :n", soci::use(name);
      soci::statement st = (sql.prepare << "DELETE FROM id_groups WHERE name = :n", soci::use(name));
      st.execute(true);
      return st.get_affected_rows() > 0;
    });
  }

  std::vector<Job> select_standing(soci::session& sql, const std::string& name, bool only_open) {
    std::vector<Job> out;
    const ll now = fs::now_unix();
    const int open = only_open ? 1 : 0;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT " << kJobColumns
                     << " FROM jobs WHERE id IN (SELECT job_id FROM job_id_groups WHERE group_name = "
                        ":n) AND (0 = :o OR (cancel_requested = 0 AND (expires_at = 0 OR expires_at > "
                        ":t) AND rollout_state <> 'stopped')) ORDER BY id",
         soci::use(name), soci::use(open), soci::use(now));
    for (const auto& r : rs) out.push_back(job_from_row(r));
    return out;
  }

  std::vector<Job> standing_jobs(const std::string& name) override {
    return guarded([&](soci::session& sql) { return select_standing(sql, name, false); });
  }

  std::vector<std::string> id_groups_of(const std::string& host_id) override {
    return guarded([&](soci::session& sql) {
      std::vector<std::string> out;
      soci::rowset<soci::row> rs = (sql.prepare << "SELECT group_name FROM id_group_members WHERE host_id = :h "
                                                   "ORDER BY group_name",
                                    soci::use(host_id));
      for (const auto& r : rs) out.push_back(get_str(r, 0));
      return out;
    });
  }

  std::string via_of(soci::session& sql, const std::string& host_id) {
    std::string via;
    soci::indicator ind = soci::i_null;
    sql << "SELECT via FROM hosts WHERE host_id = :h", soci::into(via, ind), soci::use(host_id);
    return sql.got_data() && ind == soci::i_ok && !via.empty() ? via : host_id;
  }

  MembershipChange join_id_group(const std::string& name, const std::vector<std::string>& host_ids,
                                 JoinMethod how) override {
    return write([&](soci::session& sql) {
      MembershipChange out;
      int exists = 0;
      sql << "SELECT COUNT(*) FROM id_groups WHERE name = :n", soci::into(exists), soci::use(name);
      if (!exists) throw Error(ErrorKind::not_found, "ID group \"" + name + "\" does not exist");
      const auto standing = select_standing(sql, name, true);
      const ll now = fs::now_unix();
      const std::string how_text(to_string(how));
      std::set<std::string> vias;
      for (const auto& h : host_ids) {
        std::string role;
        soci::indicator rind = soci::i_null;
        sql << "SELECT role FROM hosts WHERE host_id = :h", soci::into(role, rind), soci::use(h);
        if (!sql.got_data() || rind != soci::i_ok)
          throw Error(ErrorKind::not_found, "host " + h + " is not registered here");
        int member = 0;
        sql << "SELECT COUNT(*) FROM id_group_members WHERE group_name = :g AND host_id = :h",
            soci::into(member), soci::use(name), soci::use(h);
        if (member) continue;
        sql << "INSERT INTO id_group_members (group_name, host_id, how, joined_at) VALUES (:g, :h, :w, :t)",
            soci::use(name), soci::use(h), soci::use(how_text), soci::use(now);
        ++out.changed;
        // Every standing job of the group the host has no entry in yet, oldest first.
        for (const auto& job : standing) {
          if (targets_agents(job.type) != (role == "agent")) continue;
          const ll jid = job.id;
          int has = 0;
          sql << "SELECT COUNT(*) FROM job_entries WHERE job_id = :j AND host_id = :h", soci::into(has),
              soci::use(jid), soci::use(h);
          if (has) continue;
          const int wave = job.rollout.waves.empty() ? 0 : std::max(1, job.current_wave);
          const ll ready = job.schedule.start_at;
          sql << "INSERT INTO job_entries (job_id, host_id, state, attempt, last_seq, message, "
                 "output_tail, updated_at, wave, late_join, ready_at) VALUES (:j, :h, 'waiting', 1, 0, "
                 "'', '', :u, :w, 1, :r)",
              soci::use(jid), soci::use(h), soci::use(now), soci::use(wave), soci::use(ready);
          ++out.entries;
          vias.insert(via_of(sql, h));
        }
      }
      out.vias.assign(vias.begin(), vias.end());
      return out;
    });
  }

  MembershipChange leave_id_group(const std::string& name, const std::vector<std::string>& host_ids) override {
    return write([&](soci::session& sql) {
      MembershipChange out;
      int exists = 0;
      sql << "SELECT COUNT(*) FROM id_groups WHERE name = :n", soci::into(exists), soci::use(name);
      if (!exists) throw Error(ErrorKind::not_found, "ID group \"" + name + "\" does not exist");
      const ll now = fs::now_unix();
      const std::string why = "host left ID group " + name;
      std::set<std::string> vias;
      for (const auto& h : host_ids) {
        soci::statement del = (sql.prepare << "DELETE FROM id_group_members WHERE group_name = :g AND host_id = :h",
                               soci::use(name), soci::use(h));
        del.execute(true);
        if (del.get_affected_rows() == 0) continue;
        ++out.changed;
        soci::statement st =
            (sql.prepare << "UPDATE job_entries SET state = 'cancelled', message = :m, pushed_to = '', "
                            "updated_at = :u WHERE host_id = :h AND state = 'waiting' AND job_id IN "
                            "(SELECT job_id FROM job_id_groups WHERE group_name = :g)",
             soci::use(why), soci::use(now), soci::use(h), soci::use(name));
        st.execute(true);
        if (st.get_affected_rows() > 0) {
          out.entries += static_cast<std::int64_t>(st.get_affected_rows());
          vias.insert(via_of(sql, h));
        }
      }
      out.vias.assign(vias.begin(), vias.end());
      return out;
    });
  }

  // --- retries and scheduling --------------------------------------------------------------

  std::vector<std::string> distinct_vias(soci::session& sql, const std::string& where, ll a, ll b) {
    std::vector<std::string> out;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT DISTINCT COALESCE(h.via, e.host_id) FROM job_entries e LEFT JOIN hosts h "
                        "ON h.host_id = e.host_id WHERE "
                     << where,
         soci::use(a), soci::use(b));
    for (const auto& r : rs) out.push_back(get_str(r, 0));
    return out;
  }

  std::pair<std::int64_t, std::vector<std::string>> retry_failed(std::int64_t job_id) override {
    return write([&](soci::session& sql) {
      const ll id = job_id, now = fs::now_unix();
      int exists = 0;
      sql << "SELECT COUNT(*) FROM jobs WHERE id = :id", soci::into(exists), soci::use(id);
      if (!exists) throw Error(ErrorKind::not_found, "job " + std::to_string(job_id) + " does not exist");
      auto vias = distinct_vias(sql, "e.job_id = :j AND e.state = 'failed' AND 0 = :z", id, 0);
      soci::statement st =
          (sql.prepare << "UPDATE job_entries SET state = 'waiting', attempt = attempt + 1, ready_at = :n, "
                          "message = 'retry requested by operator', exit_code = NULL, output_tail = '', "
                          "seg_done = 0, seg_total = 0, bytes_received = 0, bad_chunks = 0, "
                          "pushed_to = '', updated_at = :u WHERE job_id = :j AND state = 'failed'",
           soci::use(now), soci::use(now), soci::use(id));
      st.execute(true);
      return std::make_pair(static_cast<std::int64_t>(st.get_affected_rows()), vias);
    });
  }

  void require_job(soci::session& sql, ll id) {
    int exists = 0;
    sql << "SELECT COUNT(*) FROM jobs WHERE id = :id", soci::into(exists), soci::use(id);
    if (!exists) throw Error(ErrorKind::not_found, "job " + std::to_string(id) + " does not exist");
  }

  TransferChange suspend_transfers(std::int64_t job_id, const std::vector<std::string>& host_ids,
                                   bool suspend) override {
    return write([&](soci::session& sql) {
      const ll id = job_id, now = fs::now_unix();
      if (id != 0) require_job(sql, id);
      const std::string from = suspend ? "('waiting', 'transferring')" : "('suspended')";
      const std::string to = suspend ? "suspended" : "waiting";
      const std::string why = suspend ? "suspended by operator" : "resumed by operator";
      // Scope: one job, or every entry of the given hosts.
      const std::string scope = id != 0 ? "e.job_id = :p" : "e.host_id = :p";
      std::vector<ll> ids;
      std::set<std::string> vias;
      auto collect = [&](const auto& param) {
        soci::rowset<soci::row> rs =
            (sql.prepare << "SELECT e.id, COALESCE(h.via, e.host_id) FROM job_entries e LEFT JOIN hosts h "
                            "ON h.host_id = e.host_id WHERE " << scope << " AND e.state IN " << from,
             soci::use(param));
        for (const auto& r : rs) {
          ids.push_back(get_i64(r, 0));
          vias.insert(get_str(r, 1));
        }
      };
      if (id != 0) collect(id);
      else
        for (const auto& h : host_ids) collect(h);
      {
        TransferChange out;
        ll entry = 0;
        soci::statement st = (sql.prepare << "UPDATE job_entries SET state = :s, message = :m, pushed_to = '', "
                                             "updated_at = :u WHERE id = :id",
                              soci::use(to), soci::use(why), soci::use(now), soci::use(entry));
        for (auto e : ids) {
          entry = e;
          st.execute(true);
        }
        out.entries = static_cast<std::int64_t>(ids.size());
        out.vias.assign(vias.begin(), vias.end());
        return out;
      }
    });
  }

  TransferChange clear_split(std::int64_t job_id) override {
    return write([&](soci::session& sql) {
      const ll id = job_id;
      require_job(sql, id);
      sql << "UPDATE jobs SET split_size = 0, split_interval = 0 WHERE id = :id", soci::use(id);
      TransferChange out;
      out.vias = distinct_vias(sql, std::string("e.job_id = :j AND e.state IN ") + kOpen + " AND 0 = :z", id, 0);
      soci::statement st = (sql.prepare << "UPDATE job_entries SET pushed_to = '' WHERE job_id = :j "
                                           "AND state IN " << kOpen, soci::use(id));
      st.execute(true);
      out.entries = static_cast<std::int64_t>(st.get_affected_rows());
      return out;
    });
  }

  std::optional<TransferStatus> transfer_status(const std::string& host_id, std::int64_t entry_id) override {
    return guarded([&](soci::session& sql) -> std::optional<TransferStatus> {
      const ll id = entry_id;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT e.state, e.attempt, j.split_size, j.split_interval FROM job_entries "
                          "e JOIN jobs j ON j.id = e.job_id WHERE e.id = :id AND e.host_id = :h",
           soci::use(id), soci::use(host_id));
      for (const auto& r : rs) {
        TransferStatus t;
        t.state = parse_entry_state(get_str(r, 0));
        t.attempt = static_cast<std::int32_t>(get_i64(r, 1));
        t.split.size = static_cast<std::uint64_t>(get_i64(r, 2));
        t.split.interval_seconds = static_cast<int>(get_i64(r, 3));
        return t;
      }
      return std::nullopt;
    });
  }

  std::vector<std::string> expire_entries(std::int64_t after, std::int64_t upto) override {
    // Called every second: a read decides whether a write transaction is needed at all.
    const bool any = guarded([&](soci::session& sql) {
      int n = 0;
      const ll a = after, u = upto;
      sql << "SELECT COUNT(*) FROM jobs WHERE expires_at > :a AND expires_at <= :u", soci::into(n),
          soci::use(a), soci::use(u);
      return n > 0;
    });
    if (!any) return {};
    return write([&](soci::session& sql) {
      const ll a = after, u = upto;
      auto vias = distinct_vias(sql,
                                std::string("e.state IN ") + kCancellable +
                                    " AND e.job_id IN (SELECT id FROM jobs WHERE expires_at > :a AND "
                                    "expires_at <= :u)",
                                a, u);
      if (vias.empty()) return vias;
      struct Expiring {
        ll job;
        std::string host_id, name;
      };
      std::vector<Expiring> expiring;
      {
        soci::rowset<soci::row> rs =
            (sql.prepare << "SELECT e.job_id, e.host_id, h.name FROM job_entries e LEFT JOIN hosts h ON h.host_id = "
                            "e.host_id WHERE e.state IN "
                         << kCancellable
                         << " AND e.job_id IN (SELECT id FROM jobs WHERE expires_at > :a AND expires_at <= :u)",
             soci::use(a), soci::use(u));
        for (const auto& r : rs) expiring.push_back({get_i64(r, 0), get_str(r, 1), get_str(r, 2)});
      }
      sql << "UPDATE job_entries SET state = 'expired', message = 'expired before it could finish', "
             "pushed_to = '', updated_at = :n, up_version = CASE WHEN upstream_id <> 0 THEN up_version "
             "+ 1 ELSE 0 END WHERE state IN "
          << kCancellable << " AND job_id IN (SELECT id FROM jobs WHERE expires_at > :a AND expires_at <= :u)",
          soci::use(u), soci::use(a), soci::use(u);
      std::set<ll> jobs;
      for (const auto& x : expiring) {
        const auto who = x.name.empty() ? x.host_id : x.name;
        emit(sql, "entry.expired", Severity::warning, x.job, x.host_id, who,
             "job " + std::to_string(x.job) + " on " + who + ": expired before it could finish");
        jobs.insert(x.job);
      }
      for (const auto j : jobs) emit_job_end(sql, j);
      return vias;
    });
  }

  std::vector<std::string> vias_ready_between(std::int64_t after, std::int64_t upto) override {
    return guarded([&](soci::session& sql) {
      return distinct_vias(sql, std::string("e.ready_at > :a AND e.ready_at <= :u AND e.state IN ") + kOpen,
                           after, upto);
    });
  }

  std::vector<Job> open_window_jobs() override {
    return guarded([&](soci::session& sql) {
      std::vector<Job> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT " << kJobColumns
                       << " FROM jobs WHERE timing = 'window' AND EXISTS (SELECT 1 FROM job_entries e "
                          "WHERE e.job_id = jobs.id AND e.state IN "
                       << kOpen << ")");
      for (const auto& r : rs) out.push_back(job_from_row(r));
      return out;
    });
  }

  std::vector<std::string> vias_with_open_entries(std::int64_t job_id) override {
    return guarded([&](soci::session& sql) {
      return distinct_vias(sql, std::string("e.job_id = :j AND 0 = :z AND e.state IN ") + kOpen, job_id, 0);
    });
  }

  std::vector<Job> running_rollouts() override {
    return guarded([&](soci::session& sql) {
      std::vector<Job> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT " << kJobColumns << " FROM jobs WHERE rollout_state = 'running' ORDER BY id");
      for (const auto& r : rs) out.push_back(job_from_row(r));
      return out;
    });
  }

  std::vector<WaveCounts> wave_counts(std::int64_t job_id) override {
    return guarded([&](soci::session& sql) {
      std::map<int, WaveCounts> by;
      const ll id = job_id;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT wave, state, COUNT(*) FROM job_entries WHERE job_id = :j GROUP BY wave, state",
           soci::use(id));
      for (const auto& r : rs) {
        const int wave = static_cast<int>(get_i64(r, 0));
        const auto state = parse_entry_state(get_str(r, 1));
        const auto n = get_i64(r, 2);
        auto& w = by[wave];
        w.wave = wave;
        w.total += n;
        if (state == EntryState::succeeded) w.succeeded += n;
        if (state == EntryState::failed || state == EntryState::expired) w.failed += n;
        if (is_final(state)) w.final_count += n;
      }
      std::vector<WaveCounts> out;
      for (auto& [k, v] : by) out.push_back(v);
      return out;
    });
  }

  std::vector<std::string> release_wave(std::int64_t job_id, int wave) override {
    return write([&](soci::session& sql) {
      const ll id = job_id, now = fs::now_unix();
      std::string waves_text;
      ll start = 0;
      sql << "SELECT waves, start_at FROM jobs WHERE id = :j", soci::into(waves_text), soci::into(start), soci::use(id);
      const auto waves = waves_text.empty() ? std::vector<int>{} : parse_waves(waves_text);
      const ll ready = std::max(now, start);
      sql << "UPDATE job_entries SET ready_at = :r WHERE job_id = :j AND wave = :w AND ready_at >= :h",
          soci::use(ready), soci::use(id), soci::use(wave), soci::use(static_cast<ll>(kHeldUntilReleased));
      const std::string state = wave >= static_cast<int>(waves.size()) ? "completed" : "running";
      sql << "UPDATE jobs SET current_wave = :w, rollout_state = :s WHERE id = :j", soci::use(wave),
          soci::use(state), soci::use(id);
      return distinct_vias(sql, "e.job_id = :j AND e.wave = :w AND e.state = 'waiting'", id, wave);
    });
  }

  void stop_rollout(std::int64_t job_id, const std::string& reason) override {
    write([&](soci::session& sql) {
      const ll id = job_id, now = fs::now_unix();
      const std::string why = "rollout stopped: " + reason;
      sql << "UPDATE job_entries SET state = 'cancelled', message = :m, updated_at = :u WHERE job_id = "
             ":j AND state = 'waiting' AND ready_at >= :h",
          soci::use(why), soci::use(now), soci::use(id), soci::use(static_cast<ll>(kHeldUntilReleased));
      sql << "UPDATE jobs SET rollout_state = 'stopped', rollout_message = :m WHERE id = :j",
          soci::use(reason), soci::use(id);
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
  // --- inventory ----------------------------------------------------------------------------

  InventoryIngest ingest_inventory(const InventoryReport& rep, std::int64_t received_at) override {
    auto out = ingest_inventory_batch({rep}, received_at).front();
    if (!out.error.empty()) throw Error(ErrorKind::not_found, out.error);
    return out;
  }

  std::vector<InventoryIngest> ingest_inventory_batch(const std::vector<InventoryReport>& reports,
                                                      std::int64_t received_at) override {
    // Digests are computed before the write lock is taken.
    std::vector<std::pair<std::string, std::string>> digests;
    for (const auto& rep : reports)
      digests.emplace_back(rep.scope != InventoryScope::software ? inventory_digest(rep.items, InventoryScope::system) : "",
                           rep.scope != InventoryScope::system ? inventory_digest(rep.items, InventoryScope::software) : "");
    return write([&](soci::session& sql) {
      std::vector<InventoryIngest> out;
      for (std::size_t i = 0; i < reports.size(); ++i)
        out.push_back(ingest_one(sql, reports[i], digests[i].first, digests[i].second, received_at));
      return out;
    });
  }

  InventoryIngest ingest_one(soci::session& sql, const InventoryReport& rep, const std::string& dsys,
                             const std::string& dsoft, std::int64_t received_at) {
    const bool sys = rep.scope != InventoryScope::software, soft = rep.scope != InventoryScope::system;
    {
      InventoryIngest out;
      out.items = rep.items.size();
      std::string old_sys, old_soft;
      soci::indicator i1 = soci::i_null, i2 = soci::i_null;
      sql << "SELECT system_digest, software_digest FROM inventory_hosts WHERE host_id = :h", soci::into(old_sys, i1),
          soci::into(old_soft, i2), soci::use(rep.host_id);
      const bool exists = sql.got_data();
      if (!exists) {  // a host with an inventory is registered; others are checked
        int known = 0;
        sql << "SELECT COUNT(*) FROM hosts WHERE host_id = :h", soci::into(known), soci::use(rep.host_id);
        if (!known) {
          out.error = "host " + rep.host_id + " is not registered here; it must register first";
          return out;
        }
      }
      out.first = !exists;
      const ll collected = rep.collected_at ? rep.collected_at : received_at, received = received_at;
      std::vector<std::string> del_keys, ins_keys, ins_values;
      if (exists && (!sys || old_sys == dsys) && (!soft || old_soft == dsoft)) {
        // Nothing but volatile values can differ: those are replaced, nothing is recorded.
        out.unchanged = true;
        for (const auto& [k, v] : rep.items)
          if (is_volatile_key(k)) {
            ins_keys.push_back(k);
            ins_values.push_back(v);
          }
        del_keys = ins_keys;
      } else {
        InventoryItems current;
        if (exists) {
          soci::rowset<soci::row> rs = (sql.prepare << "SELECT item_key, item_value FROM inventory_items WHERE host_id = :h",
                                        soci::use(rep.host_id));
          for (const auto& r : rs)
            if (auto k = get_str(r, 0); in_scope(rep.scope, k)) current.emplace(std::move(k), get_str(r, 1));
          out.changes = diff_inventory(current, rep.items, rep.scope);
        }
        for (const auto& [k, v] : current)
          if (auto it = rep.items.find(k); it == rep.items.end() || it->second != v) del_keys.push_back(k);
        for (const auto& [k, v] : rep.items)
          if (auto it = current.find(k); it == current.end() || it->second != v) {
            ins_keys.push_back(k);
            ins_values.push_back(v);
          }
      }
      if (!del_keys.empty()) {
        std::vector<std::string> hosts(del_keys.size(), rep.host_id);
        sql << "DELETE FROM inventory_items WHERE host_id = :h AND item_key = :k", soci::use(hosts), soci::use(del_keys);
      }
      if (!ins_keys.empty()) {
        std::vector<std::string> hosts(ins_keys.size(), rep.host_id);
        sql << "INSERT INTO inventory_items (host_id, item_key, item_value) VALUES (:h, :k, :v)", soci::use(hosts),
            soci::use(ins_keys), soci::use(ins_values);
      }
      std::vector<std::string> h_kind, h_key, h_old, h_new;
      if (out.first) {
        h_kind.emplace_back("added");
        h_key.emplace_back("*");
        h_old.emplace_back();
        h_new.push_back("first inventory (" + std::string(to_string(rep.scope)) + "): " +
                        std::to_string(rep.items.size()) + " items");
      }
      for (auto& c : out.changes) {
        c.at = received;
        h_kind.emplace_back(to_string(c.kind));
        h_key.push_back(c.key);
        h_old.push_back(c.old_value);
        h_new.push_back(c.new_value);
      }
      if (!h_key.empty()) {
        std::vector<std::string> hosts(h_key.size(), rep.host_id);
        std::vector<ll> at(h_key.size(), received);
        sql << "INSERT INTO inventory_history (host_id, at, change_kind, item_key, old_value, new_value) VALUES "
               "(:h, :a, :c, :k, :o, :n)",
            soci::use(hosts), soci::use(at), soci::use(h_kind), soci::use(h_key), soci::use(h_old), soci::use(h_new);
      }
      if (!out.changes.empty()) {
        std::string sample;
        for (std::size_t k = 0; k < out.changes.size() && k < 3; ++k)
          sample += (k ? ", " : "") + std::string(to_string(out.changes[k].kind)) + " " + out.changes[k].key;
        emit(sql, "inventory.changed", Severity::info, 0, rep.host_id, "",
             std::to_string(out.changes.size()) + " inventory change(s): " + sample +
                 (out.changes.size() > 3 ? ", ..." : ""));
      }
      const std::string new_sys = sys ? dsys : old_sys, new_soft = soft ? dsoft : old_soft;
      if (!exists)
        sql << "INSERT INTO inventory_hosts (host_id, collected_at, reported_at, system_digest, software_digest) "
               "VALUES (:h, :c, :r, :s, :w)",
            soci::use(rep.host_id), soci::use(collected), soci::use(received), soci::use(new_sys), soci::use(new_soft);
      else
        sql << "UPDATE inventory_hosts SET collected_at = :c, reported_at = :r, system_digest = :s, software_digest = :w "
               "WHERE host_id = :h",
            soci::use(collected), soci::use(received), soci::use(new_sys), soci::use(new_soft), soci::use(rep.host_id);
      return out;
    }
  }

  std::optional<HostInventory> find_inventory(const std::string& host_id) override {
    return guarded([&](soci::session& sql) -> std::optional<HostInventory> {
      HostInventory out;
      out.host_id = host_id;
      ll collected = 0, reported = 0;
      sql << "SELECT collected_at, reported_at FROM inventory_hosts WHERE host_id = :h", soci::into(collected),
          soci::into(reported), soci::use(host_id);
      if (!sql.got_data()) return std::nullopt;
      out.collected_at = collected;
      out.reported_at = reported;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT item_key, item_value FROM inventory_items WHERE host_id = :h", soci::use(host_id));
      for (const auto& r : rs) out.items.emplace(get_str(r, 0), get_str(r, 1));
      return out;
    });
  }

  std::vector<InventoryChange> inventory_history(const std::string& host_id, int limit) override {
    return guarded([&](soci::session& sql) {
      std::vector<InventoryChange> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT at, change_kind, item_key, old_value, new_value FROM inventory_history WHERE "
                          "host_id = :h ORDER BY id DESC" + dialect_.limit(std::max(1, limit)),
           soci::use(host_id));
      for (const auto& r : rs)
        out.push_back({parse_inventory_change_kind(get_str(r, 1)), get_str(r, 2), get_str(r, 3), get_str(r, 4), get_i64(r, 0)});
      return out;
    });
  }

  std::vector<InventoryValue> inventory_values(const std::string& key, bool prefix) override {
    return guarded([&](soci::session& sql) {
      std::vector<InventoryValue> out;
      // Keys are UTF-8: U+10FFFF sorts after every key that starts with the prefix.
      const std::string upper = key + "\xf4\x8f\xbf\xbf";
      soci::rowset<soci::row> rs =
          prefix ? (sql.prepare << "SELECT host_id, item_key, item_value FROM inventory_items WHERE item_key >= :a "
                                   "AND item_key < :b",
                    soci::use(key), soci::use(upper))
                 : (sql.prepare << "SELECT host_id, item_key, item_value FROM inventory_items WHERE item_key = :a",
                    soci::use(key));
      for (const auto& r : rs) out.push_back({get_str(r, 0), get_str(r, 1), get_str(r, 2)});
      return out;
    });
  }

  std::vector<std::string> inventoried_hosts() override {
    return guarded([&](soci::session& sql) {
      std::vector<std::string> out;
      soci::rowset<soci::row> rs = sql.prepare << "SELECT host_id FROM inventory_hosts";
      for (const auto& r : rs) out.push_back(get_str(r, 0));
      return out;
    });
  }

  void put_inventory_field(const InventoryField& f) override {
    write([&](soci::session& sql) {
      const std::string type(to_string(f.type));
      const auto allowed = join_addresses(f.allowed);
      sql << dialect_.upsert("inventory_fields", {"name"}, {"field_type", "allowed", "description"}),
          soci::use(f.name), soci::use(type), soci::use(allowed), soci::use(f.description);
    });
  }

  std::vector<InventoryField> list_inventory_fields() override {
    return guarded([&](soci::session& sql) {
      std::vector<InventoryField> out;
      soci::rowset<soci::row> rs =
          sql.prepare << "SELECT name, field_type, allowed, description FROM inventory_fields ORDER BY name";
      for (const auto& r : rs)
        out.push_back({get_str(r, 0), parse_inventory_field_type(get_str(r, 1)), split_addresses(get_str(r, 2)), get_str(r, 3)});
      return out;
    });
  }

  bool delete_inventory_field(const std::string& name) override {
    return write([&](soci::session& sql) {
      soci::statement st = (sql.prepare << "DELETE FROM inventory_fields WHERE name = :n", soci::use(name));
      st.execute(true);
      return st.get_affected_rows() > 0;
    });
  }

  void record_collected_file(const CollectedFile& f) override {
    write([&](soci::session& sql) {
      const ll job = f.job_id, size = f.size, at = f.stored_at ? f.stored_at : fs::now_unix();
      sql << dialect_.upsert("collected_files", {"job_id", "host_id", "path"}, {"byte_size", "sha256", "stored_at"}),
          soci::use(job), soci::use(f.host_id), soci::use(f.path), soci::use(size), soci::use(f.sha256), soci::use(at);
    });
  }

  std::vector<CollectedFile> collected_files(std::int64_t job_id) override {
    return guarded([&](soci::session& sql) {
      std::vector<CollectedFile> out;
      const ll job = job_id;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT c.host_id, h.name, c.path, c.byte_size, c.sha256, c.stored_at FROM collected_files c "
                          "LEFT JOIN hosts h ON h.host_id = c.host_id WHERE c.job_id = :j ORDER BY h.name, c.path",
           soci::use(job));
      for (const auto& r : rs)
        out.push_back({job_id, get_str(r, 0), get_str(r, 1), get_str(r, 2), get_i64(r, 3), get_str(r, 4), get_i64(r, 5)});
      return out;
    });
  }

  // --- events
  // Inside the transaction of the change: the event commits with it or not at all.
  void emit(soci::session& sql, const std::string& type, Severity severity, ll job_id, const std::string& host_id,
            const std::string& subject, const std::string& message) {
    const std::string sev(to_string(severity));
    const ll at = fs::now_unix_ms();
    sql << "INSERT INTO events (type, severity, at_ms, job_id, host_id, subject, message) VALUES (:t, :s, :a, :j, :h, "
           ":u, :m)",
        soci::use(type), soci::use(sev), soci::use(at), soci::use(job_id), soci::use(host_id), soci::use(subject),
        soci::use(message);
    ++tl_events_written;
  }
  // After an entry became final: when the job has no open entry left, it completed or failed.
  void emit_job_end(soci::session& sql, ll job_id) {
    ll open = 0, failed = 0, total = 0;
    // One open entry is enough to know (index job_entries_job_state): no count per report.
    sql << std::string("SELECT job_id FROM job_entries WHERE job_id = :j AND state IN ") + kOpen + " ORDER BY job_id" +
               dialect_.limit(1),
        soci::into(open), soci::use(job_id);
    if (sql.got_data()) return;
    sql << "SELECT COUNT(*), SUM(CASE WHEN state = 'succeeded' THEN 0 ELSE 1 END) FROM job_entries WHERE job_id = :j",
        soci::into(total), soci::into(failed), soci::use(job_id);
    std::string name, version;
    sql << "SELECT package_name, package_version FROM jobs WHERE id = :j", soci::into(name), soci::into(version),
        soci::use(job_id);
    const auto subject = name.empty() ? std::string() : name + " " + version;
    if (failed == 0)
      emit(sql, "job.completed", Severity::info, job_id, "", subject,
           "job " + std::to_string(job_id) + " completed: " + std::to_string(total) + " of " + std::to_string(total) +
               " succeeded");
    else
      emit(sql, "job.failed", Severity::error, job_id, "", subject,
           "job " + std::to_string(job_id) + " ended with " + std::to_string(failed) + " of " + std::to_string(total) +
               " not succeeded");
  }

  std::vector<Event> select_events(const char* where_order, ll bound, int limit) {
    return guarded([&](soci::session& sql) {
      std::vector<Event> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << std::string("SELECT id, type, severity, at_ms, job_id, host_id, subject, message FROM events "
                                      "WHERE ") + where_order + dialect_.limit(std::max(1, limit)),
           soci::use(bound));
      for (const auto& r : rs)
        out.push_back({get_i64(r, 0), get_str(r, 1), parse_severity(get_str(r, 2)), get_i64(r, 3), get_i64(r, 4),
                       get_str(r, 5), get_str(r, 6), get_str(r, 7)});
      return out;
    });
  }

  std::vector<Event> events_after(std::int64_t after_id, int limit) override {
    return select_events("id > :a ORDER BY id", after_id, limit);
  }

  std::vector<Event> events_before(std::int64_t before_id, int limit) override {
    return select_events("id < :b ORDER BY id DESC", before_id > 0 ? before_id : std::numeric_limits<ll>::max(), limit);
  }

  std::int64_t event_cursor(const std::string& sink) override {
    return guarded([&](soci::session& sql) {
      ll id = 0;
      soci::indicator ind = soci::i_null;
      sql << "SELECT last_id FROM event_cursors WHERE sink = :s", soci::into(id, ind), soci::use(sink);
      return sql.got_data() && ind == soci::i_ok ? static_cast<std::int64_t>(id) : std::int64_t{-1};
    });
  }

  void set_event_cursor(const std::string& sink, std::int64_t last_id) override {
    write([&](soci::session& sql) {
      const ll id = last_id;
      sql << dialect_.upsert("event_cursors", {"sink"}, {"last_id"}), soci::use(sink), soci::use(id);
    });
  }

  void record_events(const std::vector<Event>& events) override {
    write([&](soci::session& sql) {
      for (const auto& e : events) emit(sql, e.type, e.severity, e.job_id, e.host_id, e.subject, e.message);
    });
  }

  std::int64_t prune_events(std::int64_t before_ms, std::int64_t upto_id) override {
    const ll before = before_ms, upto = upto_id;
    // Read first: most calls find nothing to delete and need no write transaction.
    const bool any = guarded([&](soci::session& sql) {
      ll n = 0;
      sql << "SELECT COUNT(*) FROM events WHERE at_ms < :b AND id <= :u", soci::into(n), soci::use(before),
          soci::use(upto);
      return n > 0;
    });
    if (!any) return 0;
    return write([&](soci::session& sql) {
      soci::statement st =
          (sql.prepare << "DELETE FROM events WHERE at_ms < :b AND id <= :u", soci::use(before), soci::use(upto));
      st.execute(true);
      return static_cast<std::int64_t>(st.get_affected_rows());
    });
  }

  std::int64_t last_event_id() override {
    return guarded([&](soci::session& sql) {
      ll id = 0;
      soci::indicator ind = soci::i_null;
      sql << "SELECT MAX(id) FROM events", soci::into(id, ind);
      return ind == soci::i_ok ? static_cast<std::int64_t>(id) : std::int64_t{0};
    });
  }

  void set_event_listener(std::function<void()> listener) override {
    std::lock_guard lock(listener_mutex_);
    listener_ = std::move(listener);
  }

  int mark_silent_hosts(std::int64_t cutoff) override {
    // A read decides whether a write is needed (called every few seconds).
    const ll c = cutoff;
    const bool any = guarded([&](soci::session& sql) {
      int n = 0;
      sql << "SELECT COUNT(*) FROM hosts WHERE (silent = 0 AND last_seen < :c) OR (silent = 1 AND last_seen >= :c2)",
          soci::into(n), soci::use(c), soci::use(c);
      return n > 0;
    });
    if (!any) return 0;
    return write([&](soci::session& sql) {
      struct Row {
        std::string id, name, role;
        ll seen;
        int silent;
      };
      std::vector<Row> rows;
      soci::rowset<soci::row> rs = (sql.prepare << "SELECT host_id, name, role, last_seen, silent FROM hosts WHERE "
                                                   "(silent = 0 AND last_seen < :c) OR (silent = 1 AND last_seen >= :c2)",
                                    soci::use(c), soci::use(c));
      for (const auto& r : rs)
        rows.push_back({get_str(r, 0), get_str(r, 1), get_str(r, 2), get_i64(r, 3), static_cast<int>(get_i64(r, 4))});
      for (const auto& r : rows) {
        const int now_silent = r.silent ? 0 : 1;
        sql << "UPDATE hosts SET silent = :s WHERE host_id = :h", soci::use(now_silent), soci::use(r.id);
        if (now_silent)
          emit(sql, "host.silent", Severity::warning, 0, r.id, r.name,
               r.role + " " + r.name + " has been silent since " + format_rfc3339_ms(r.seen * 1000));
        else
          emit(sql, "host.returned", Severity::info, 0, r.id, r.name, r.role + " " + r.name + " is in contact again");
      }
      return static_cast<int>(rows.size());
    });
  }

  void append_audit(const std::vector<AuditRecord>& records) override {
    if (records.empty()) return;
    write_unfenced([&](soci::session& sql) {
      for (const auto& a : records) {
        const ll at = a.at_ms;
        const int status = a.status;
        sql << "INSERT INTO audit_log (at_ms, actor, remote, action, target, status, result) VALUES (:a, :w, :r, :x, "
               ":t, :s, :m)",
            soci::use(at), soci::use(a.actor), soci::use(a.remote), soci::use(a.action), soci::use(a.target),
            soci::use(status), soci::use(a.result);
      }
    });
  }

  std::vector<AuditRecord> audit_records(int limit, std::int64_t before_id) override {
    return guarded([&](soci::session& sql) {
      std::vector<AuditRecord> out;
      const ll before = before_id > 0 ? before_id : std::numeric_limits<ll>::max();
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT id, at_ms, actor, remote, action, target, status, result FROM audit_log WHERE id < :b "
                          "ORDER BY id DESC" + dialect_.limit(std::max(1, limit)),
           soci::use(before));
      for (const auto& r : rs)
        out.push_back({get_i64(r, 0), get_i64(r, 1), get_str(r, 2), get_str(r, 3), get_str(r, 4), get_str(r, 5),
                       static_cast<int>(get_i64(r, 6)), get_str(r, 7)});
      return out;
    });
  }

  Counts counts() override {
    return guarded([&](soci::session& sql) {
      Counts c;
      ll n = 0;
      sql << "SELECT COUNT(*) FROM hosts", soci::into(n);
      c.hosts = n;
      sql << "SELECT COUNT(*) FROM jobs", soci::into(n);
      c.jobs = n;
      sql << std::string("SELECT COUNT(DISTINCT job_id) FROM job_entries WHERE state IN ") + kOpen, soci::into(n);
      c.open_jobs = n;
      soci::rowset<soci::row> rs = (sql.prepare << "SELECT state, COUNT(*) FROM job_entries GROUP BY state");
      for (const auto& r : rs) c.entries_by_state[get_str(r, 0)] = get_i64(r, 1);
      return c;
    });
  }

  Stats stats() const override {
    Stats st;
    st.calls = calls_.load();
    st.total_micros = total_micros_.load();
    for (int i = 0; i < 6; ++i) st.buckets[i] = buckets_[i].load();
    st.outages = outages_.load();
    return st;
  }

  // --- active/standby
  static LeaseRecord lease_from_row(const soci::row& r) {
    return {get_str(r, 0), get_str(r, 1), get_i64(r, 2), get_i64(r, 3), get_i64(r, 4)};
  }
  std::optional<LeaseRecord> select_lease(soci::session& sql, const std::string& name, bool lock = false) {
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT name, holder, token, expires_at, since FROM cluster_lease WHERE name = :n" +
                            (lock ? dialect_.lock_rows : std::string()),
         soci::use(name));
    for (const auto& r : rs) return lease_from_row(r);
    return std::nullopt;
  }

  LeaseRecord acquire_lease(const std::string& name, const std::string& node, std::int64_t now_ms,
                            std::int64_t ttl_ms) override {
    return write_unfenced([&](soci::session& sql) {
      const ll now = now_ms, expires = now_ms + ttl_ms;
      auto cur = select_lease(sql, name);
      if (!cur) {
        const ll token = 1;
        sql << "INSERT INTO cluster_lease (name, holder, token, expires_at, since) VALUES (:n, :h, :t, :e, :s)",
            soci::use(name), soci::use(node), soci::use(token), soci::use(expires), soci::use(now);
        record_takeover(sql, name, node, "", token, now, 0);
        return LeaseRecord{name, node, token, expires, now};
      }
      if (cur->holder == node && cur->expires_at_ms > now) {
        sql << "UPDATE cluster_lease SET expires_at = :e WHERE name = :n AND token = :t", soci::use(expires),
            soci::use(name), soci::use(static_cast<ll>(cur->token));
        cur->expires_at_ms = expires;
        return *cur;
      }
      if (!cur->holder.empty() && cur->expires_at_ms > now) return *cur;  // held by another
      const ll token = cur->token + 1;
      soci::statement st = (sql.prepare << "UPDATE cluster_lease SET holder = :h, token = :t, expires_at = :e, since = :s "
                                           "WHERE name = :n AND token = :old",
                            soci::use(node), soci::use(token), soci::use(expires), soci::use(now), soci::use(name),
                            soci::use(static_cast<ll>(cur->token)));
      st.execute(true);
      if (st.get_affected_rows() != 1) return *select_lease(sql, name);  // another node was faster
      record_takeover(sql, name, node, cur->holder, token, now, std::max<ll>(0, now - cur->expires_at_ms));
      return LeaseRecord{name, node, token, expires, now};
    });
  }

  void record_takeover(soci::session& sql, const std::string& name, const std::string& node, const std::string& prev,
                       ll token, ll now, ll gap) {
    sql << "INSERT INTO cluster_takeovers (name, holder, token, at_ms, previous, gap_ms) VALUES (:n, :h, :t, :a, :p, :g)",
        soci::use(name), soci::use(node), soci::use(token), soci::use(now), soci::use(prev), soci::use(gap);
    emit(sql, "cluster.takeover", prev.empty() ? Severity::info : Severity::warning, 0, "", node,
         "cluster " + name + ": " + node + " became active (token " + std::to_string(token) + ")" +
             (prev.empty() ? std::string() : ", taking over from " + prev + " after " + std::to_string(gap) + " ms"));
  }

  bool renew_lease(const std::string& name, const std::string& node, std::int64_t token, std::int64_t now_ms,
                   std::int64_t ttl_ms) override {
    return write_unfenced([&](soci::session& sql) {
      const ll t = token, now = now_ms, expires = now_ms + ttl_ms;
      soci::statement st = (sql.prepare << "UPDATE cluster_lease SET expires_at = :e WHERE name = :n AND holder = :h "
                                           "AND token = :t AND expires_at > :now",
                            soci::use(expires), soci::use(name), soci::use(node), soci::use(t), soci::use(now));
      st.execute(true);
      return st.get_affected_rows() == 1;
    });
  }

  void release_lease(const std::string& name, const std::string& node, std::int64_t token, std::int64_t now_ms) override {
    write_unfenced([&](soci::session& sql) {
      const ll t = token, now = now_ms;
      sql << "UPDATE cluster_lease SET expires_at = :now WHERE name = :n AND holder = :h AND token = :t",
          soci::use(now), soci::use(name), soci::use(node), soci::use(t);
    });
  }

  std::optional<LeaseRecord> read_lease(const std::string& name) override {
    return guarded([&](soci::session& sql) { return select_lease(sql, name); });
  }

  std::vector<Takeover> takeovers(const std::string& name, int limit) override {
    return guarded([&](soci::session& sql) {
      std::vector<Takeover> out;
      soci::rowset<soci::row> rs =
          (sql.prepare << "SELECT holder, previous, token, at_ms, gap_ms FROM cluster_takeovers WHERE name = :n "
                          "ORDER BY id DESC" + dialect_.limit(std::max(1, limit)),
           soci::use(name));
      for (const auto& r : rs) out.push_back({get_str(r, 0), get_str(r, 1), get_i64(r, 2), get_i64(r, 3), get_i64(r, 4)});
      return out;
    });
  }

  bool raise_fence(const std::string& name, const std::string& node, std::int64_t token, std::int64_t now_ms) override {
    return write_unfenced([&](soci::session& sql) {
      const ll t = token, now = now_ms, forever = std::numeric_limits<ll>::max();
      auto cur = select_lease(sql, name);
      if (cur && cur->token > token) return false;
      if (cur && cur->token == token && cur->holder == node) return true;
      if (!cur) {
        sql << "INSERT INTO cluster_lease (name, holder, token, expires_at, since) VALUES (:n, :h, :t, :e, :s)",
            soci::use(name), soci::use(node), soci::use(t), soci::use(forever), soci::use(now);
      } else {
        sql << "UPDATE cluster_lease SET holder = :h, token = :t, expires_at = :e, since = :s WHERE name = :n",
            soci::use(node), soci::use(t), soci::use(forever), soci::use(now), soci::use(name);
      }
      record_takeover(sql, name, node, cur ? cur->holder : std::string(), t, now, 0);
      return true;
    });
  }

  void set_fencing(const std::string& name, std::int64_t token) override {
    std::lock_guard lock(fence_mutex_);
    fence_name_ = name;
    fence_token_ = token;
  }

  // Inside a write transaction: the lease this store is fenced by is still ours.
  void check_fence(soci::session& sql) {
    std::string name;
    ll token = 0;
    {
      std::lock_guard lock(fence_mutex_);
      name = fence_name_;
      token = fence_token_;
    }
    if (token == 0) return;
    // Locked until this transaction ends: a takeover waits for it, so no write of the old
    // holder can commit after the new one took the lease.
    const auto cur = select_lease(sql, name, true);
    const ll now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
    if (!cur || cur->token != token || cur->expires_at_ms <= now)
      throw Error(ErrorKind::conflict, "fenced: this node no longer holds the active lease (token " +
                                           std::to_string(token) + (cur ? ", current " + std::to_string(cur->token) +
                                           " held by " + cur->holder : std::string()) + "); nothing was written");
  }

  // --- moving a whole database
  struct Checksum {
    std::uint64_t lane[4] = {};
    void add(const std::string& canonical) {
      const auto hex = sha256_hex(canonical);
      for (std::size_t i = 0; i < 4; ++i) lane[i] += std::stoull(hex.substr(i * 16, 16), nullptr, 16);
    }
    std::string hex() const {
      return fmt::format("{:016x}{:016x}{:016x}{:016x}", lane[0], lane[1], lane[2], lane[3]);
    }
  };

  struct Column {
    std::string name;
    bool integer = false;
  };

  static std::vector<Column> columns_of(const TableDef& t) {
    std::vector<Column> out;
    for (const auto& c : t.columns) out.push_back({c.name, c.integer});
    return out;
  }

  static std::string column_list(const std::vector<Column>& cols, const std::string& prefix = "") {
    std::string out;
    for (const auto& c : cols) out += (out.empty() ? "" : ", ") + prefix + c.name;
    return out;
  }

  // Reads every row of `table` (these columns), calling `each` with its canonical JSON array.
  template <class Each>
  TableSummary scan_table(soci::session& sql, const std::string& table, const std::vector<Column>& cols,
                          Each&& each) {
    TableSummary out{table, 0, {}};
    Checksum sum;
    soci::rowset<soci::row> rs = sql.prepare << "SELECT " + column_list(cols) + " FROM " + table;
    for (const auto& r : rs) {
      boost::json::array a;
      for (std::size_t i = 0; i < cols.size(); ++i) {
        if (r.get_indicator(i) == soci::i_null) a.emplace_back(nullptr);
        else if (cols[i].integer) a.emplace_back(get_i64(r, i));
        else a.emplace_back(get_str(r, i));
      }
      const auto line = boost::json::serialize(a);
      sum.add(line);
      each(line);
      ++out.rows;
    }
    out.checksum = sum.hex();
    return out;
  }

  DataSummary export_data(std::ostream& out, const DataProgress& progress) override {
    return guarded(
        [&](soci::session& sql) {
          soci::transaction tr(sql);
          if (!dialect_.snapshot.empty()) sql << dialect_.snapshot;
          DataSummary summary;
          summary.schema_version = read_version(sql);
          out << boost::json::serialize(boost::json::object{{"format", "distrib-database"},
                                                            {"format_version", 1},
                                                            {"schema_version", summary.schema_version},
                                                            {"source", dialect_.name},
                                                            {"exported_at", fs::now_unix()}})
              << "\n";
          for (const auto& t : schema_tables()) {
            const auto cols = columns_of(t);
            boost::json::array names;
            for (const auto& c : cols) names.emplace_back(c.name);
            out << boost::json::serialize(boost::json::object{{"table", t.name}, {"columns", names}}) << "\n";
            std::int64_t n = 0;
            auto ts = scan_table(sql, t.name, cols, [&](const std::string& line) {
              out << line << "\n";
              if (++n % 10000 == 0 && progress) progress(t.name, n);
            });
            if (progress) progress(t.name, ts.rows);
            out << boost::json::serialize(boost::json::object{{"end", t.name}, {"rows", ts.rows}, {"checksum", ts.checksum}})
                << "\n";
            summary.tables.push_back(std::move(ts));
          }
          out << boost::json::serialize(boost::json::object{{"end_of_export", true},
                                                            {"tables", summary.tables.size()}})
              << "\n";
          out.flush();
          if (!out) throw Error(ErrorKind::internal, "writing the export failed (disk full?)");
          tr.commit();
          return summary;
        },
        0);
  }

  DataSummary summarize() override {
    return guarded([&](soci::session& sql) {
      DataSummary summary;
      summary.schema_version = read_version(sql);
      for (const auto& t : schema_tables())
        summary.tables.push_back(scan_table(sql, t.name, columns_of(t), [](const std::string&) {}));
      return summary;
    });
  }

  // One batch of rows into `table`: column-wise vectors bound in bulk.
  struct Batch {
    std::vector<std::vector<long long>> ints;
    std::vector<std::vector<std::string>> texts;
    std::vector<std::vector<soci::indicator>> inds;
    std::size_t size = 0;
    explicit Batch(std::size_t ncols) : ints(ncols), texts(ncols), inds(ncols) {}
    void clear() {
      for (auto& v : ints) v.clear();
      for (auto& v : texts) v.clear();
      for (auto& v : inds) v.clear();
      size = 0;
    }
  };

  void insert_batch(soci::session& sql, const std::string& table, const std::vector<Column>& cols, Batch& b) {
    if (b.size == 0) return;
    std::string marks;
    for (const auto& c : cols) marks += (marks.empty() ? ":" : ", :") + c.name;
    soci::statement st(sql);
    for (std::size_t i = 0; i < cols.size(); ++i) {
      if (cols[i].integer) st.exchange(soci::use(b.ints[i], b.inds[i]));
      else st.exchange(soci::use(b.texts[i], b.inds[i]));
    }
    st.alloc();
    st.prepare("INSERT INTO " + table + " (" + column_list(cols) + ") VALUES (" + marks + ")");
    st.define_and_bind();
    st.execute(true);
    b.clear();
  }

  DataSummary import_data(std::istream& in, const DataProgress& progress) override {
    std::lock_guard lock(write_mutex_);
    return guarded(
        [&](soci::session& sql) {
          soci::transaction tr(sql);
          for (const auto& t : schema_tables()) {
            ll n = 0;
            sql << "SELECT COUNT(*) FROM " + t.name, soci::into(n);
            if (n > 0)
              throw Error(ErrorKind::conflict, "the target database is not empty (table " + t.name + " holds " +
                                                   std::to_string(n) +
                                                   " rows): import into a new database, created for it");
          }
          std::string line;
          std::size_t line_no = 0;
          auto next = [&]() -> boost::json::object {
            if (!std::getline(in, line)) return {};
            ++line_no;
            boost::system::error_code ec;
            auto v = boost::json::parse(line, ec);
            if (line_no == 1 && (ec || !v.is_object()))
              throw Error(ErrorKind::invalid_argument,
                          "not a distrib database export (its first line is not the export header that "
                          "distribd --export-db writes)");
            if (ec || !(v.is_object() || v.is_array()))
              throw Error(ErrorKind::invalid_argument, "line " + std::to_string(line_no) + " of the export is not a JSON "
                                                       "object or row (" + (ec ? ec.message() : "wrong type") + ")");
            if (v.is_array()) return boost::json::object{{"row", std::move(v)}};
            return std::move(v.as_object());
          };
          auto bad = [&](const std::string& what) {
            return Error(ErrorKind::invalid_argument, "line " + std::to_string(line_no) + " of the export: " + what);
          };
          auto header = next();
          if (header.empty() || !header.contains("format") || header.at("format") != "distrib-database")
            throw Error(ErrorKind::invalid_argument, "not a distrib database export (distribd --export-db writes one)");
          if (!header.contains("schema_version") || !header.at("schema_version").is_int64())
            throw bad("the header has no schema_version");
          DataSummary declared;
          declared.schema_version = static_cast<int>(header.at("schema_version").as_int64());
          if (declared.schema_version > latest_schema_version())
            throw Error(ErrorKind::invalid_argument,
                        "the export is of database schema " + std::to_string(declared.schema_version) +
                            ", newer than this distribd understands (" + std::to_string(latest_schema_version()) +
                            "); import it with a newer distribd");
          bool complete = false;
          std::vector<std::vector<Column>> imported_cols;
          for (auto obj = next(); !obj.empty(); obj = next()) {
            if (obj.contains("end_of_export")) {
              complete = true;
              break;
            }
            if (!obj.contains("table") || !obj.at("table").is_string() || !obj.contains("columns") ||
                !obj.at("columns").is_array())
              throw bad("expected a table header {\"table\":..., \"columns\":[...]}");
            const std::string name(obj.at("table").as_string());
            const auto& tables = schema_tables();
            auto def = std::find_if(tables.begin(), tables.end(), [&](const TableDef& t) { return t.name == name; });
            if (def == tables.end()) throw bad("unknown table \"" + name + "\"");
            std::vector<Column> cols;
            const auto names = obj.at("columns").as_array();
            for (const auto& n : names) {
              const std::string cname = n.is_string() ? std::string(n.as_string()) : std::string();
              auto c = std::find_if(def->columns.begin(), def->columns.end(), [&](const ColumnDef& d) { return d.name == cname; });
              if (c == def->columns.end()) throw bad("table " + name + " has no column \"" + cname + "\"");
              cols.push_back({c->name, c->integer});
            }
            const bool identity = !def->identity.empty() && !dialect_.explicit_ids_on.empty();
            if (identity) sql << replace_table(dialect_.explicit_ids_on, name);
            Batch batch(cols.size());
            Checksum sum;
            std::int64_t rows = 0;
            boost::json::object end;
            for (auto r = next(); ; r = next()) {
              if (r.empty()) throw Error(ErrorKind::invalid_argument, "the export ends inside table " + name + ": the file is truncated");
              if (!r.contains("row")) {
                end = std::move(r);
                break;
              }
              const auto& row = r.at("row").as_array();
              if (row.size() != cols.size())
                throw bad("a row of " + name + " has " + std::to_string(row.size()) + " values, the table header " +
                          std::to_string(cols.size()));
              for (std::size_t i = 0; i < cols.size(); ++i) {
                const auto& v = row[i];
                const bool null = v.is_null();
                if (!null && (cols[i].integer ? !v.is_int64() : !v.is_string()))
                  throw bad("column " + cols[i].name + " of " + name + " holds " +
                            (cols[i].integer ? "a non-integer" : "a non-string") + " value");
                batch.inds[i].push_back(null ? soci::i_null : soci::i_ok);
                if (cols[i].integer) batch.ints[i].push_back(null ? 0 : v.as_int64());
                else batch.texts[i].push_back(null ? std::string() : std::string(v.as_string()));
              }
              ++batch.size;
              sum.add(boost::json::serialize(row));
              if (++rows % 1000 == 0) {
                insert_batch(sql, name, cols, batch);
                if (progress && rows % 10000 == 0) progress(name, rows);
              }
            }
            insert_batch(sql, name, cols, batch);
            if (identity) sql << replace_table(dialect_.explicit_ids_off, name);
            if (!def->identity.empty())
              for (const auto& st : dialect_.reset_identity(name, def->identity)) sql << st;
            if (!end.contains("end") || end.at("end") != name.c_str() || !end.contains("rows") ||
                !end.at("rows").is_int64() || !end.contains("checksum") || !end.at("checksum").is_string())
              throw bad("expected the trailer of table " + name);
            TableSummary ts{name, end.at("rows").as_int64(), std::string(end.at("checksum").as_string())};
            if (ts.rows != rows || ts.checksum != sum.hex())
              throw Error(ErrorKind::invalid_argument,
                          "the export is corrupted: table " + name + " declares " + std::to_string(ts.rows) +
                              " rows with checksum " + ts.checksum.substr(0, 16) + "… but holds " + std::to_string(rows) +
                              " with checksum " + sum.hex().substr(0, 16) + "…");
            if (progress) progress(name, rows);
            declared.tables.push_back(std::move(ts));
            imported_cols.push_back(std::move(cols));
          }
          if (!complete) throw Error(ErrorKind::invalid_argument, "the export ends early: the file is truncated");
          // Read back what was written, with the same columns: the database now holds exactly
          // what the export declared.
          for (std::size_t i = 0; i < declared.tables.size(); ++i) {
            const auto& want = declared.tables[i];
            const auto got = scan_table(sql, want.name, imported_cols[i], [](const std::string&) {});
            if (got.rows != want.rows || got.checksum != want.checksum)
              throw Error(ErrorKind::internal, "table " + want.name + " reads back " + std::to_string(got.rows) +
                                                   " rows (checksum " + got.checksum.substr(0, 16) + "…) after import, "
                                                   "not the " + std::to_string(want.rows) + " written; nothing was kept");
          }
          tr.commit();
          return declared;
        },
        0);
  }

  static std::string replace_table(std::string s, const std::string& table) {
    for (auto pos = s.find("%T"); pos != std::string::npos; pos = s.find("%T", pos)) s.replace(pos, 2, table);
    return s;
  }

  // Runs `fn` on a pooled session. A lost connection (the server restarted, a network cut) is
  // re-established and `fn` run again, until settings.reconnect_seconds have passed: the
  // server rolled back the transaction it was in, so running it again applies it once.
  template <class Fn>
  std::invoke_result_t<Fn&, soci::session&> guarded(Fn&& fn, int reconnect_seconds = -1) {
    const auto budget = reconnect_seconds < 0 ? reconnect_seconds_ : reconnect_seconds;
    const auto started = std::chrono::steady_clock::now();
    struct Timed {
      SociStore& self;
      std::chrono::steady_clock::time_point t0;
      ~Timed() { self.count_call(t0); }
    } timed{*this, started};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(std::max(0, budget));
    auto pause = std::chrono::milliseconds(100);
    for (;;) {
      auto lease = pool_.lease();
      soci::session& sql = *lease;
      std::string lost;
      try {
        // No check before use (SOCI's PostgreSQL is_connected() is a round trip): a dead
        // connection fails its first statement and is reconnected below.
        if (sql.get_backend() == nullptr) reconnect(sql);
        using R = std::invoke_result_t<Fn&, soci::session&>;
        if constexpr (std::is_void_v<R>) {
          fn(sql);
          recovered();
          return;
        } else {
          R result = fn(sql);
          recovered();
          return result;
        }
      } catch (const Error&) {
        throw;
      } catch (const soci::soci_error& e) {
        const std::string what = first_line(e.what());
        if (!connection_lost(sql, e)) {
          const bool busy = what.find("locked") != std::string::npos ||
                            what.find("busy") != std::string::npos;
          throw Error(busy ? ErrorKind::unavailable : ErrorKind::internal,
                      dialect_.name + " database error: " + what);
        }
        lost = what;
      }
      if (!outage_.exchange(true)) {
        outage_since_ms_ = fs::now_unix_ms();
        ++outages_;
        spdlog::warn("lost the connection to the {} database ({}); reconnecting", dialect_.name, lost);
      }
      if (std::chrono::steady_clock::now() + pause > deadline)
        throw Error(ErrorKind::unavailable, "the " + dialect_.name + " database cannot be reached (" + lost +
                                                "); the request can be retried when it is back");
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(1000));
      try {
        reconnect(sql);
      } catch (const soci::soci_error&) {
        // still down: the next round tries again
      }
    }
  }

  void count_call(std::chrono::steady_clock::time_point t0) noexcept {
    const auto us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
    ++calls_;
    total_micros_ += us;
    static constexpr std::uint64_t kLimits[] = {1000, 5000, 25000, 100000, 500000};
    std::size_t b = 0;
    while (b < 5 && us > kLimits[b]) ++b;
    ++buckets_[b];
  }

  void recovered() {
    if (outage_.exchange(false)) {
      spdlog::info("the {} database is reachable again", dialect_.name);
      // A stale pooled connection re-established at once (idle timeout, a server restart
      // already over) is no outage worth telling: only one that lasted.
      const ll since = outage_since_ms_.load(), until = fs::now_unix_ms();
      if (until - since < kOutageEventMs) return;
      std::lock_guard lock(outage_mutex_);
      ended_outage_ = std::make_pair(since, until);
    }
  }

  static bool connection_lost(soci::session& sql, const soci::soci_error& e) {
    if (e.get_error_category() == soci::soci_error::connection_error) return true;
    try {
      return sql.get_backend() == nullptr || !sql.is_connected();
    } catch (...) {
      return true;
    }
  }

  void reconnect(soci::session& sql) {
    sql.reconnect();
    for (const auto& stmt : dialect_.connection_setup) sql << stmt;
  }

  // One transaction; serialised in-process (see Dialect::serialize_writes). When fenced, the
  // transaction first checks that this node still holds the active lease.
  template <class Fn>
  std::invoke_result_t<Fn&, soci::session&> write(Fn&& fn) {
    std::optional<std::pair<ll, ll>> outage;
    auto result_of = [&]() -> std::invoke_result_t<Fn&, soci::session&> {
      return write_unfenced([&](soci::session& sql) -> std::invoke_result_t<Fn&, soci::session&> {
        check_fence(sql);
        // An outage that ended is told with the first write of the serving node after it
        // (nothing could be written during it).
        {
          std::lock_guard outage_lock(outage_mutex_);
          outage = ended_outage_;
        }
        if (outage)
          emit(sql, "database.outage", Severity::error, 0, "", dialect_.name,
               "the " + dialect_.name + " database could not be reached for " +
                   std::to_string((outage->second - outage->first + 500) / 1000) + " s (since " +
                   format_rfc3339_ms(outage->first) + ")");
        return fn(sql);
      });
    };
    auto forget = [&] {
      if (!outage) return;
      std::lock_guard outage_lock(outage_mutex_);
      if (ended_outage_ == outage) ended_outage_.reset();
    };
    if constexpr (std::is_void_v<std::invoke_result_t<Fn&, soci::session&>>) {
      result_of();
      forget();
    } else {
      auto result = result_of();
      forget();
      return result;
    }
  }

  template <class Fn>
  std::invoke_result_t<Fn&, soci::session&> write_unfenced(Fn&& fn) {
    std::unique_lock<std::mutex> lock(write_mutex_, std::defer_lock);
    if (dialect_.serialize_writes) lock.lock();
    return guarded([&](soci::session& sql) -> std::invoke_result_t<Fn&, soci::session&> {
      soci::transaction tr(sql);
      tl_events_written = 0;
      auto commit = [&] {
        try {
          tr.commit();
          if (tl_events_written > 0) {
            tl_events_written = 0;
            std::lock_guard listener_lock(listener_mutex_);
            if (listener_) listener_();
          }
        } catch (const soci::soci_error& e) {
          // Whether the server committed before the connection broke cannot be known: say so
          // rather than apply the change a second time.
          if (connection_lost(sql, e))
            throw Error(ErrorKind::unavailable, "the connection to the " + dialect_.name +
                                                    " database was lost while committing; the change may or may not "
                                                    "have been applied (" + first_line(e.what()) + ")");
          throw;
        }
      };
      if constexpr (std::is_void_v<decltype(fn(sql))>) {
        fn(sql);
        commit();
      } else {
        auto result = fn(sql);
        commit();
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
        // Created only when absent: an account without the right to create tables can run a
        // database a DBA migrated.
        try {
          read_version(sql);
        } catch (const soci::soci_error&) {
          sql << dialect_.create_version_table;
        }
      } catch (const soci::soci_error& e) {
        throw Error(ErrorKind::unavailable,
                    "cannot use the " + dialect_.name + " database: " + first_line(e.what()));
      }
      const int current = read_version(sql);
      version_at_open_ = current;
      if (current > latest_schema_version())
        throw Error(ErrorKind::invalid_argument,
                    "database schema version " + std::to_string(current) +
                        " is newer than this distribd understands (" +
                        std::to_string(latest_schema_version()) + "); upgrade distribd");
      for (const auto& m : migrations()) {
        if (m.version <= current) continue;
        soci::transaction tr(sql);
        for (const auto& s : m.statements)
          for (const auto& r : render(s, dialect_)) sql << r;
        const ll now = fs::now_unix();
        sql << "INSERT INTO schema_version (version, applied_at) VALUES (:v, :t)",
            soci::use(m.version), soci::use(now);
        tr.commit();
      }
      return 0;
    });
  }

  const Dialect& dialect_;
  SessionPool pool_;
  std::mutex write_mutex_;
  int reconnect_seconds_ = 15;
  std::mutex fence_mutex_;
  std::string fence_name_;
  ll fence_token_ = 0;
  int version_at_open_ = 0;
  std::atomic<bool> outage_{false};
  std::atomic<ll> outage_since_ms_{0};
  std::mutex outage_mutex_;
  std::optional<std::pair<ll, ll>> ended_outage_;
  std::mutex listener_mutex_;
  std::function<void()> listener_;
  // Stats
  std::atomic<std::uint64_t> calls_{0}, total_micros_{0}, outages_{0};
  std::atomic<std::uint64_t> buckets_[6] = {};
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
  registry.add("postgresql", [](const StoreSettings& s) -> std::unique_ptr<Store> {
    if (!s.dialect.empty() && s.dialect != "postgresql")
      throw Error(ErrorKind::invalid_argument, "the postgresql backend speaks only the postgresql dialect (for \"" +
                                                   s.dialect + "\" use the odbc backend)");
    const auto conn = store::check_postgresql_connection(s.connection, s.busy_timeout_seconds);
    return std::make_unique<store::SociStore>(store::postgresql_dialect(), *soci::factory_postgresql(), conn, s);
  });
  registry.add("odbc", [](const StoreSettings& s) -> std::unique_ptr<Store> {
    if (s.connection.empty())
      throw Error(ErrorKind::invalid_argument,
                  "the odbc backend needs a connection string (e.g. \"DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;"
                  "PORT=5432;DATABASE=distrib;UID=distrib;PWD=...\")");
    const auto dialect = store::check_odbc_connection(s.connection, s.dialect, store::installed_odbc_drivers());
    return std::make_unique<store::SociStore>(*store::find_dialect(dialect), *soci::factory_odbc(), s.connection, s);
  });
}

}  // namespace distrib
