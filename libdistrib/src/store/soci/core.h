#pragma once
// SociCore: what the facilities of SociStore (soci_store.h) share. One object per store, holding
// the session pool, the dialect, the write path (one transaction per call, serialised where the
// dialect needs it, fenced while this node holds the active lease), reconnection after a lost
// connection, call statistics and the event listener, plus the statements several facilities
// run inside their own transactions: events, a job's rows, the direct children to wake.
#include <distrib/error.h>
#include <distrib/model/event.h>
#include <distrib/store/store.h>

#include "store/connection.h"
#include "store/dialect.h"
#include "store/soci/rows.h"
#include "util/fs.h"

#include <soci/soci.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace distrib::store {

// Events written by the current thread's transaction in progress (the listener is told after
// its commit).
inline thread_local int tl_events_written = 0;
// The schema version that added the host key columns (hosts.name_key, host_addresses).
constexpr int kHostKeysVersion = 11;
// Fills the host key columns from the hosts stored (hosts.cpp): run by the migration that adds
// them and after importing an export made before it.
void rebuild_host_keys(soci::session& sql);
// The schema version that interned inventory items (item_catalogue.h, intern_inventory).
constexpr int kInternedInventoryVersion = 12;

// A database unreachable at least this long is told as a database.outage event.
constexpr long long kOutageEventMs = 2000;

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

// The in-process write lock. Lease operations (lock_first) go ahead of every write waiting:
// a busy manager's lease renewal must never queue behind its own serving work, or the node
// steps down by itself under load.
class WriteGate {
 public:
  void lock() { take(false); }
  void lock_first() { take(true); }
  void unlock() {
    {
      std::lock_guard lock(m_);
      held_ = false;
    }
    cv_.notify_all();
  }

 private:
  void take(bool first) {
    std::unique_lock lock(m_);
    if (first) ++first_waiting_;
    cv_.wait(lock, [&] { return !held_ && (first || first_waiting_ == 0); });
    if (first) --first_waiting_;
    held_ = true;
  }
  std::mutex m_;
  std::condition_variable cv_;
  bool held_ = false;
  int first_waiting_ = 0;
};

class SociCore {
 public:
  // Opens settings.pool_size sessions and migrates the schema; throws Error(unavailable) naming
  // the driver's reason when the database cannot be opened.
  SociCore(const Dialect& dialect, const soci::backend_factory& backend, const std::string& connection,
           const StoreSettings& settings);
  SociCore(const SociCore&) = delete;
  SociCore& operator=(const SociCore&) = delete;

  const Dialect& dialect() const { return dialect_; }
  int version_at_open() const { return version_at_open_; }
  DataStore::Stats stats() const;
  // Holds every write off (a whole-database import).
  std::unique_lock<WriteGate> hold_writes() { return std::unique_lock<WriteGate>(write_gate_); }
  // Writes check lease `name` with `token` from now on (0: not fenced).
  void set_fencing(const std::string& name, ll token);
  void set_event_listener(std::function<void()> listener);

  // Runs `fn` on a pooled session. A lost connection (the server restarted, a network cut) is
  // re-established and `fn` run again, until settings.reconnect_seconds have passed: the
  // server rolled back the transaction it was in, so running it again applies it once.
  // `lease_path`: on the session kept for lease operations (opened at first use), never waiting
  // for a pooled one.
  template <class Fn>
  std::invoke_result_t<Fn&, soci::session&> guarded(Fn&& fn, int reconnect_seconds = -1,
                                                    bool lease_path = false) {
    const auto budget = reconnect_seconds < 0 ? reconnect_seconds_ : reconnect_seconds;
    const auto started = std::chrono::steady_clock::now();
    struct Timed {
      SociCore& self;
      std::chrono::steady_clock::time_point t0;
      ~Timed() { self.count_call(t0); }
    } timed{*this, started};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(std::max(0, budget));
    auto pause = std::chrono::milliseconds(100);
    for (;;) {
      auto lease = lease_path ? lease_pool_.lease() : pool_.lease();
      soci::session& sql = *lease;
      if (lease_path) open_lease_session(sql);
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
          if (disk_full(what))
            throw Error(ErrorKind::insufficient_storage,
                        "the " + dialect_.name + " database has no space left (" + what +
                            "); nothing was changed: free space on its disk, then retry");
          const bool busy =
              what.find("locked") != std::string::npos || what.find("busy") != std::string::npos;
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

  // `lease_path`: a lease operation, on its own session and ahead of waiting writes.
  template <class Fn>
  std::invoke_result_t<Fn&, soci::session&> write_unfenced(Fn&& fn, bool lease_path = false) {
    std::unique_lock<WriteGate> lock(write_gate_, std::defer_lock);
    if (dialect_.serialize_writes) {
      if (lease_path)
        write_gate_.lock_first();
      else
        write_gate_.lock();
      lock = std::unique_lock<WriteGate>(write_gate_, std::adopt_lock);
    }
    return guarded(
        [&](soci::session& sql) -> std::invoke_result_t<Fn&, soci::session&> {
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
                throw Error(ErrorKind::unavailable,
                            "the connection to the " + dialect_.name +
                                " database was lost while committing; the change may or may not "
                                "have been applied (" +
                                first_line(e.what()) + ")");
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
        },
        -1, lease_path);
  }

  // --- statements run inside a facility's transaction
  // The event commits with the change or not at all.
  void emit(soci::session& sql, const std::string& type, Severity severity, ll job_id,
            const std::string& host_id, const std::string& subject, const std::string& message);
  // After an entry became final: when the job has no open entry left, it completed or failed.
  void emit_job_end(soci::session& sql, ll job_id);
  // Inserts the job and its entries; `waves` (when not empty) gives each host's wave.
  Job insert_job(soci::session& sql, const Job& job, const std::vector<std::string>& host_ids,
                 const std::vector<int>& waves = {});
  // The direct children (hosts' `via`) of the entries `where` selects, binding `a` and `b`.
  std::vector<std::string> distinct_vias(soci::session& sql, const std::string& where, ll a, ll b);
  /// How select_lease holds the row until the transaction ends: not at all, in key-share mode
  /// (Dialect::share_rows: the fence check) or exclusively (Dialect::lock_rows: a takeover).
  enum class LeaseLock { none, share, exclusive };
  std::optional<LeaseRecord> select_lease(soci::session& sql, const std::string& name,
                                          LeaseLock lock = LeaseLock::none);
  int read_version(soci::session& sql);

  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

 private:
  // Inside a write transaction: the lease this store is fenced by is still ours.
  void check_fence(soci::session& sql);
  void count_call(std::chrono::steady_clock::time_point t0) noexcept;
  void recovered();
  static bool connection_lost(soci::session& sql, const soci::soci_error& e);
  // The database's words for a full disk (SQLite, PostgreSQL, SQL Server, Oracle).
  static bool disk_full(const std::string& what);
  void reconnect(soci::session& sql);
  void open_lease_session(soci::session& sql);
  void migrate();

  const Dialect& dialect_;
  SessionPool pool_;
  SessionPool lease_pool_{1};
  const soci::backend_factory& backend_;
  std::string connection_;
  bool lease_session_open_ = false;  // under lease_pool_'s one lease
  WriteGate write_gate_;
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

}  // namespace distrib::store
