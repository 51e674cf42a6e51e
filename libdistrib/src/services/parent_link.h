#pragma once
// Parent fallback for agents and relays: an ordered list of parents. Requests go to the current
// parent; a failed contact moves on to the next; while away from the first, the first is probed
// every `recheck_seconds` and taken back as soon as it answers (the BigFix relay-failover rule).
#include <distrib/net/http.h>

#include <boost/json.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace distrib {

class ParentLink {
 public:
  struct Settings {
    std::vector<std::string> urls;  ///< in order of preference; at least one
    std::string ca_file;
    std::string bind_address;
    int recheck_seconds = 30;
    /// This host's certificate and key, presented to parents once the certificate exists.
    std::string cert_file, key_file;
  };
  /// Validates every URL; throws Error(invalid_argument) naming a bad one.
  explicit ParentLink(Settings settings);

  /// The parent to talk to now. Thread-safe.
  std::string current() const;
  std::size_t size() const noexcept { return settings_.urls.size(); }
  /// A contact with `url` failed: if it is still the current parent, the next one becomes
  /// current. Returns true when that wrapped around (every parent failed once: back off).
  bool failed(const std::string& url);
  /// Away from the first parent and the recheck interval has passed: probes the first and
  /// returns true when it answered and became current again.
  bool maybe_return_to_primary();
  /// Settings for a client of `url` (CA file, bind address).
  HttpClientSettings client_settings(const std::string& url) const;

 private:
  Settings settings_;
  mutable std::mutex mutex_;
  std::size_t index_ = 0;
  std::chrono::steady_clock::time_point last_probe_{};
};

/// Throws unless `res` is a 2xx: not_found (404), conflict (409), otherwise unavailable (worth
/// retrying later), naming `what` and the parent's message.
void require_ok(const HttpResponse& res, std::string_view what);

/// Sends a JSON request to a parent and returns its JSON answer (see require_ok).
boost::json::object call_parent(HttpClient& client, std::string_view method, std::string_view target,
                                const boost::json::value& body);

/// One HttpClient per parent URL, for one thread. abort() may be called from any thread.
class ClientSet {
 public:
  explicit ClientSet(const ParentLink& link) : link_(link) {}
  HttpClient& get(const std::string& url);
  void abort() noexcept;
  /// Later get()s make new clients (this host's certificate changed). Clients handed out before
  /// stay valid (kept until the set goes).
  void renew();

 private:
  const ParentLink& link_;
  std::mutex mutex_;
  std::map<std::string, std::unique_ptr<HttpClient>> clients_;
  std::vector<std::unique_ptr<HttpClient>> retired_;
};

/// Kept-alive clients of the parents for requests from several threads at once (a relay forwarding
/// joins, inventory reports and file uploads): each call leases a client of its own, made when none
/// is idle, so one slow upload does not hold up the others. abort() breaks off every leased
/// request and fails every later lease (the pool is stopping).
class ClientPool {
 public:
  explicit ClientPool(const ParentLink& link) : link_(link) {}
  ClientPool(const ClientPool&) = delete;
  ClientPool& operator=(const ClientPool&) = delete;

  class Lease {
   public:
    Lease(ClientPool& pool, std::size_t slot) : pool_(&pool), slot_(slot) {}
    Lease(Lease&& other) noexcept : pool_(std::exchange(other.pool_, nullptr)), slot_(other.slot_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_) pool_->give_back(slot_);
    }
    HttpClient& operator*() const { return pool_->client(slot_); }
    HttpClient* operator->() const { return &pool_->client(slot_); }

   private:
    ClientPool* pool_;
    std::size_t slot_;
  };

  /// A client of `url` for the caller alone until the lease ends. Throws Error(unavailable) after abort().
  Lease lease(const std::string& url);
  /// Breaks off every request in progress; later leases fail. Any thread.
  void abort() noexcept;
  /// Clients made so far (idle or leased).
  std::size_t size() const;
  /// This host's certificate changed: idle clients are made anew when next leased (leased ones
  /// when they come back and are leased again).
  void renew();

 private:
  struct Slot {
    std::string url;
    std::unique_ptr<HttpClient> client;
    bool leased = false;
    std::uint64_t generation = 0;
  };
  HttpClient& client(std::size_t slot);
  void give_back(std::size_t slot) noexcept;

  const ParentLink& link_;
  mutable std::mutex mutex_;
  std::vector<Slot> slots_;  // never shrinks: a slot's client lives as long as the pool
  bool aborted_ = false;
  std::uint64_t generation_ = 0;
};

}  // namespace distrib
