#pragma once
// The manager's work cache: which direct children have work, the agents waiting in a long poll,
// last contacts, and the hosts a relay below must forget. The only mutable state the facilities
// share, behind its own lock, with its own sweeper thread that ends long polls whose wait ran out.
// Rebuilt from the store at start (mark); never the source of truth.
#include <distrib/net/http.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace distrib::manager {

class WorkCache {
 public:
  using Waiter = std::shared_ptr<Responder>;
  /// What a poll finds: flagged work (answer it now), nothing (answer empty now), or it waits.
  enum class Poll { work, nothing, parked };
  struct Load {
    std::int64_t connected = 0;  ///< hosts heard from since the cutoff
    std::int64_t waiting = 0;    ///< polls waiting now
  };

  /// `expire` answers polls whose wait ran out; called on the sweeper thread, outside the lock.
  explicit WorkCache(std::function<void(std::vector<Waiter>)> expire);
  ~WorkCache();
  WorkCache(const WorkCache&) = delete;
  WorkCache& operator=(const WorkCache&) = delete;

  /// Starts the sweeper (every 200 ms).
  void start();
  /// Stops the sweeper and hands back the polls still waiting, for the caller to answer.
  std::vector<Waiter> stop();

  /// Flags hosts as having work (at start: those with open entries in the store).
  void mark(const std::vector<std::string>& hosts);
  std::size_t hosts_with_work() const;

  /// A contact from `host` at `now` (unix seconds).
  void contact(const std::string& host, std::int64_t now);
  /// A poll from `host` at `now`: `answer_now` (a first or last contact) or flagged work is
  /// answered at once; otherwise with `wait` > 0 the poll waits (`park` makes its waiter).
  Poll poll(const std::string& host, std::int64_t now, bool answer_now, std::chrono::seconds wait,
            const std::function<Waiter()>& park);

  /// Bumped whenever the host gets work: a reader who saw no open entries clears the host's
  /// flag only if nothing arrived since (no lost wake-ups).
  std::uint64_t generation(const std::string& host);
  /// Clears the host's flag when its generation is still `seen`.
  void settle(const std::string& host, std::uint64_t seen);
  /// Flags the hosts (when `has_work`) and takes the polls waiting for them, to be answered.
  std::vector<std::pair<std::string, Waiter>> wake(const std::vector<std::string>& hosts, bool has_work);

  /// `host` moved away from the relay `via`: that relay is told in its next work answer.
  void release(const std::string& via, const std::string& host);
  /// `host` is back below `via`: the release is stale.
  void unrelease(const std::string& via, const std::string& host);
  /// The hosts `via` must forget, once.
  std::vector<std::string> take_released(const std::string& via);

  /// Last contacts to write to the store: each host's (a host waiting in a long poll is in
  /// contact `now`) once it is `refresh` seconds newer than the one last handed out for it.
  /// A host's first is handed out at once and counted as written up to `refresh` seconds
  /// earlier (by its name's hash), so a fleet's writes spread over the interval rather than
  /// coming all at once. What is handed out counts as written.
  std::vector<std::pair<std::string, std::int64_t>> contacts_to_write(std::int64_t now, std::int64_t refresh);
  /// Every last contact held in memory.
  std::unordered_map<std::string, std::int64_t> last_contacts() const;
  Load load(std::int64_t cutoff) const;

 private:
  struct Waiting {
    Waiter responder;
    std::chrono::steady_clock::time_point deadline;
  };
  void sweep_loop();

  std::function<void(std::vector<Waiter>)> expire_;
  mutable std::mutex mutex_;
  std::condition_variable sweeper_cv_;
  std::thread sweeper_;
  bool stopping_ = false;
  std::unordered_set<std::string> hosts_with_work_;
  std::unordered_map<std::string, std::vector<Waiting>> waiters_;
  std::unordered_map<std::string, std::int64_t> last_contact_;
  std::unordered_map<std::string, std::int64_t> written_;  // contact last handed out, per host
  std::unordered_map<std::string, std::uint64_t> generation_;
  std::unordered_map<std::string, std::set<std::string>> released_;
};

}  // namespace distrib::manager
