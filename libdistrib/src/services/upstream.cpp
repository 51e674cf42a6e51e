#include "services/upstream.h"

#include <distrib/content/chunk_store.h>
#include <distrib/content/packager.h>
#include <distrib/error.h>

#include "content/frames.h"

#include <spdlog/spdlog.h>
#include <boost/json.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace distrib {

UpstreamFetcher::UpstreamFetcher(ChunkStore& chunks, ParentLink& link, std::string host_id, int threads)
    : chunks_(chunks), link_(link), host_id_(std::move(host_id)), pool_(threads) {}

UpstreamFetcher::~UpstreamFetcher() {
  stop();
}

void UpstreamFetcher::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto* c : busy_) c->abort();
  }
  pool_.stop();
  // Anyone still waiting hears that the relay is going away.
  decltype(inflight_) left;
  {
    std::lock_guard lock(mutex_);
    left.swap(inflight_);
  }
  for (auto& [d, waiters] : left)
    for (auto& w : waiters) w("relay is stopping");
}

std::unique_ptr<ClientSet> UpstreamFetcher::checkout() {
  std::lock_guard lock(mutex_);
  std::unique_ptr<ClientSet> c;
  if (!idle_.empty()) {
    c = std::move(idle_.back());
    idle_.pop_back();
  } else {
    c = std::make_unique<ClientSet>(link_);
  }
  if (stopping_) c->abort();
  busy_.push_back(c.get());
  return c;
}

void UpstreamFetcher::checkin(std::unique_ptr<ClientSet> c) {
  std::lock_guard lock(mutex_);
  std::erase(busy_, c.get());
  idle_.push_back(std::move(c));
}

std::string UpstreamFetcher::get(const std::string& target) {
  return call("GET", target, "");
}

std::string UpstreamFetcher::call(const std::string& method, const std::string& target,
                                  const std::string& body) {
  auto clients = checkout();
  const auto url = link_.current();
  try {
    auto res = clients->get(url).request(method, target, body);
    checkin(std::move(clients));
    require_ok(res, "parent " + url + ": " + method + " " + target);
    return std::move(res.body);
  } catch (const Error& e) {
    if (clients) {
      checkin(std::move(clients));
      if (e.kind() == ErrorKind::unavailable) link_.failed(url);
    }
    throw;
  }
}

void UpstreamFetcher::fetch_many(const std::vector<std::string>& digests, Done done) {
  struct Group {
    std::atomic<std::size_t> left;
    std::mutex m;
    std::string error;
    Done done;
  };
  auto group = std::make_shared<Group>();
  group->left = digests.size();
  group->done = std::move(done);
  if (digests.empty()) return group->done("");
  std::vector<std::string> mine;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return group->done("relay is stopping");
    for (const auto& d : digests) {
      auto [it, first] = inflight_.try_emplace(d);
      it->second.push_back([group, d](const std::string& error) {
        if (!error.empty()) {
          std::lock_guard group_lock(group->m);
          if (group->error.empty()) group->error = "chunk " + short_digest(d) + ": " + error;
        }
        if (--group->left == 0) group->done(group->error);
      });
      if (first)
        mine.push_back(d);
      else
        ++joined_;
    }
  }
  // Segments of kSegmentChunks, fetched side by side on the fetch threads: a relay killed
  // meanwhile loses at most those in flight.
  for (std::size_t i = 0; i < mine.size(); i += kSegmentChunks) {
    std::vector<std::string> part(
        mine.begin() + static_cast<std::ptrdiff_t>(i),
        mine.begin() + static_cast<std::ptrdiff_t>(std::min(mine.size(), i + kSegmentChunks)));
    pool_.submit([this, part = std::move(part)] { run_segments(part); });
  }
}

// Segments while they bring something; then each digest through run_fetch, which stores what is
// still missing alone (or finds it stored) and answers its waiters.
void UpstreamFetcher::run_segments(const std::vector<std::string>& digests) {
  std::vector<std::string> left;
  for (const auto& d : digests)
    if (!chunks_.contains(d)) left.push_back(d);
  try {
    while (!left.empty()) {
      boost::json::array list;
      for (const auto& d : left) list.emplace_back(d);
      const auto body =
          call("POST", "/v1/content/chunks",
               boost::json::serialize(boost::json::object{{"host_id", host_id_}, {"digests", list}}));
      std::size_t stored = 0;
      for (const auto& f : parse_chunk_frames(body, kSegmentChunks, kMaxChunkSize + 64 * 1024)) {
        ++fetches_;
        bytes_ += f.bytes.size();
        try {
          chunks_.put_compressed(f.digest, f.bytes, kMaxChunkSize);
          ++stored;
        } catch (const Error& e) {
          if (e.kind() != ErrorKind::integrity) throw;
          ++bad_;  // fetched alone below, after the parent checks its copy
          spdlog::warn("chunk {} from parent: {}; telling the parent and fetching it once more",
                       short_digest(f.digest), e.what());
          report_bad(f.digest);
        }
      }
      const auto before = left.size();
      std::erase_if(left, [&](const std::string& d) { return chunks_.contains(d); });
      if (stored == 0 || left.size() == before) break;
    }
  } catch (const std::exception& e) {
    spdlog::warn("segment of {} chunk(s) from parent: {}; fetching them one by one", left.size(), e.what());
  }
  for (const auto& d : digests) run_fetch(d);
}

void UpstreamFetcher::fetch(const std::string& digest, Done done) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      done("relay is stopping");
      return;
    }
    auto [it, first] = inflight_.try_emplace(digest);
    it->second.push_back(std::move(done));
    if (!first) {
      ++joined_;
      return;
    }
  }
  pool_.submit([this, digest] { run_fetch(digest); });
}

void UpstreamFetcher::run_fetch(const std::string& digest) {
  std::string error;
  try {
    for (int attempt = 1; !chunks_.contains(digest); ++attempt) {
      const auto body = get("/v1/content/chunks/" + digest + "?host_id=" + host_id_);
      ++fetches_;
      bytes_ += body.size();
      try {
        chunks_.put_compressed(digest, body, kMaxChunkSize);
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::integrity) throw;
        ++bad_;
        // The parent verifies its copy again (quarantining a bad one) before the second try.
        spdlog::warn("chunk {} from parent: {}{}", short_digest(digest), e.what(),
                     attempt < 2 ? "; telling the parent and fetching it once more" : "");
        report_bad(digest);
        if (attempt >= 2) throw;
      }
    }
  } catch (const Error& e) {
    error = e.what();
    spdlog::warn("chunk {} from parent: {}", digest.substr(0, 12), error);
  } catch (const std::exception& e) {
    error = e.what();
  }
  std::vector<Done> waiters;
  {
    std::lock_guard lock(mutex_);
    auto it = inflight_.find(digest);
    if (it != inflight_.end()) {
      waiters = std::move(it->second);
      inflight_.erase(it);
    }
  }
  for (auto& w : waiters) w(error);
}

void UpstreamFetcher::report_bad(const std::string& digest) {
  auto clients = checkout();
  const auto url = link_.current();
  try {
    clients->get(url).request("POST", "/v1/content/bad-chunks",
                              boost::json::serialize(boost::json::object{
                                  {"host_id", host_id_}, {"digests", boost::json::array{digest}}}));
  } catch (const std::exception& e) {
    spdlog::warn("could not tell the parent that chunk {} arrived bad: {}", short_digest(digest), e.what());
  }
  checkin(std::move(clients));
}

void UpstreamFetcher::fetch_all(const std::vector<std::string>& digests) {
  std::mutex m;
  std::condition_variable cv;
  std::size_t pending = 0;
  std::string first_error;
  for (const auto& d : digests) {
    if (chunks_.contains(d)) continue;
    {
      std::lock_guard lock(m);
      ++pending;
    }
    fetch(d, [&](const std::string& err) {
      std::lock_guard lock(m);
      if (!err.empty() && first_error.empty()) first_error = err;
      if (--pending == 0) cv.notify_all();
    });
  }
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return pending == 0; });
  if (!first_error.empty()) throw Error(ErrorKind::unavailable, first_error);
}

}  // namespace distrib
