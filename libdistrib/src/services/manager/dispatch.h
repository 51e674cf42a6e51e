#pragma once
// Agents asking for work: due entries, long polls answered from the work cache, the check between two
// segments of a transfer, and state reports.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include "services/manager/common.h"
#include "services/manager/orders.h"

namespace distrib::manager {

class Content;
class Scheduler;
class Uplink;

/// What kind of contact a poll is: the first after the agent started (at-start installs are
/// due), or its last before an orderly stop (at-stop installs are due).
struct PollFlags {
  bool start = false;
  bool stopping = false;
};

/// The minute of the day now, local time (install windows).
int minute_of_day_now();

class Dispatch {
 public:
  /// Reports in one request (an agent sends at most 500 at a time).
  static constexpr std::size_t kMaxReports = 1000;
  /// A held poll that asks for it gets a byte this often while it waits (heartbeat=1).
  static constexpr std::chrono::milliseconds kHeartbeat{2000};
  /// Waiting polls answered together when they are woken (one task on the store pool).
  static constexpr std::size_t kWakeBatch = 256;

  Dispatch(Context& ctx, Uplink& uplink, Scheduler& scheduler, Content& content)
      : ctx_(ctx), uplink_(uplink), scheduler_(scheduler), content_(content), signer_(ctx) {}
  void register_routes(Router& t);

  /// A host was in contact now.
  void note_contact(const std::string& id);
  /// Does the direct child have work due: its own entries, or entries to push below it?
  bool has_work(const std::string& child);
  /// Clears the host's work flag when it has no open entries and nothing arrived since `seen`.
  void settle(const std::string& host_id, std::uint64_t seen, bool has_open_entries);
  /// The work answer for a host: its due entries, entries routed below it, hosts released.
  HttpResponse work_for(const std::string& host_id, PollFlags flags = {});
  /// These direct children have (or may have) work: waiting polls are answered.
  /// Answers the polls of the relays directly below (something every relay must hear at once:
  /// a revocation). Call off the network threads.
  void wake_relays();
  void wake(const std::vector<std::string>& host_ids, bool has_work);

 private:
  using DueEntries =
      std::unordered_map<std::string, std::vector<std::pair<JobEntry, std::shared_ptr<const Job>>>>;
  // Jobs read once for the batches of one wake-up, shared by their entries.
  struct JobCache {
    std::mutex mutex;
    std::map<std::int64_t, std::shared_ptr<const Job>> jobs;
    std::shared_ptr<const Job> get(std::int64_t id, const std::function<std::optional<Job>()>& load);
  };
  DueEntries due_entries_of(const std::vector<std::string>& host_ids, PollFlags flags,
                            JobCache* cache = nullptr);
  std::vector<HttpResponse> work_for_many(const std::vector<std::string>& host_ids, PollFlags flags,
                                          JobCache* jobs = nullptr);
  bj::object work_item(const JobEntry& e, const Job& job, OrderSigner::Batch& orders);
  void agent_work(HttpRequest&& req, Responder& r, const PathSegments&);
  void agent_transfer(HttpRequest&& req, Responder& r, const PathSegments&);
  void agent_report(HttpRequest&& req, Responder& r, const PathSegments&);

  Context& ctx_;
  Uplink& uplink_;
  Scheduler& scheduler_;
  Content& content_;
  OrderSigner signer_;
};

}  // namespace distrib::manager
