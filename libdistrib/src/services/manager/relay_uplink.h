#pragma once
// A relay's link to its parent (the Uplink of a relay): registration upward, the sync of hosts, last
// contacts and entry states, the poll for routed work, the relay's own entries (pre-staging and
// dropping packages), and requests passed upward.
#include "services/manager/common.h"

#include "services/manager/relay_cache.h"
#include "services/manager/uplink.h"
#include "services/parent_link.h"

#include <condition_variable>
#include <thread>
#include <unordered_map>

namespace distrib::manager {

class Dispatch;
class Registration;

class RelayUplink final : public Uplink {
 public:
  /// Throws Error(invalid_argument) for a bad parent URL or sync interval.
  RelayUplink(Context& ctx, Dispatch& dispatch, Registration& registration);
  ~RelayUplink() override { stop(); }

  bool has_parent() const noexcept override { return true; }
  void note_contact(const std::string& host_id) override;
  void note_contacts(const std::vector<std::pair<std::string, std::int64_t>>& seen) override;
  void notify_sync() override;
  std::optional<Manifest> manifest(const std::string& name, const std::string& version, bool served) override;
  UpstreamFetcher* chunk_source() noexcept override { return cache_.upstream(); }
  void content_arrived() override { cache_.maybe_maintain(); }
  HttpResponse forward(const HttpRequest& req, const std::string& target) override;
  bj::object ask_parent(std::string_view method, const std::string& target, const bj::value& body,
                        int timeout_seconds) override;
  /// Checks the parents (none may be below this relay), then starts the poller, the syncer
  /// and the cache.
  void prepare() override;
  void start() override;
  void stop() override;

 private:
  void sleep_ms(int ms);
  bj::object parent_call(ClientSet& clients, const std::string& url, std::string_view method,
                         const std::string& target, const bj::value& body, int timeout = 120);
  void register_up(const std::string& url);
  void check_not_below(const std::string& url, const std::vector<std::string>& parent_path) const;
  bool sync_once(const std::vector<std::pair<std::int64_t, EntryState>>& acks);
  void sync_loop();
  void send_own_report(EntryReport rep);
  void flush_own_reports();
  void process_own(const bj::object& item);
  void poll_loop();
  /// Fetches, verifies and keeps the parent's newer trusted publisher set.
  void adopt_publishers(const std::string& url);
  void adopt_revoked(const std::string& url);
  void renew_if_due();
  void check_parents_at_start();

  Context& ctx_;
  Dispatch& dispatch_;
  Registration& registration_;
  ParentLink link_;
  RelayCache cache_;
  std::unique_ptr<ClientSet> poll_clients_, sync_clients_;
  std::unique_ptr<ClientPool> join_clients_;  // joins, inventory and uploads passed to the parent
  std::thread poller_, syncer_;
  std::mutex mutex_;
  std::mutex sync_mutex_;  // held for a whole sync: sync_clients_ serves one thread at a time
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};
  bool running_ = false;
  bool sync_wanted_ = false;
  std::string registered_url_;                                     // the parent we are registered with
  std::unordered_map<std::string, std::int64_t> seen_since_sync_;  // last contacts not yet reported up
  Clock::time_point next_renewal_check_{};
  std::int64_t own_seq_ = 1;             // sequence of this relay's reports on its own entries
  std::vector<EntryReport> own_unsent_;  // those not yet acknowledged by the parent
};

}  // namespace distrib::manager
