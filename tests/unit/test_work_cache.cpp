// The manager's work cache (services/manager/work_cache.h): flags, generations, long polls,
// their expiry, releases and contacts.
#include "services/manager/work_cache.h"

#include "harness.h"

#include <catch2/catch.hpp>

#include <atomic>

using namespace distrib;
using namespace distrib::manager;
using namespace std::chrono_literals;

TEST_CASE("a poll finds flagged work, nothing, or waits until woken", "[work_cache]") {
  WorkCache cache([](std::vector<WorkCache::Waiter>) {});
  int parked = 0;
  const auto park = [&] {
    ++parked;
    return WorkCache::Waiter{};
  };
  cache.mark({"a"});
  CHECK(cache.hosts_with_work() == 1);
  CHECK(cache.poll("a", 100, false, 30s, park) == WorkCache::Poll::work);
  CHECK(cache.poll("b", 100, true, 30s, park) == WorkCache::Poll::work);  // first or last contact
  CHECK(cache.poll("b", 100, false, 0s, park) == WorkCache::Poll::nothing);
  CHECK(parked == 0);
  CHECK(cache.poll("b", 101, false, 30s, park) == WorkCache::Poll::parked);
  CHECK(parked == 1);
  CHECK(cache.load(0).waiting == 1);

  // Waking b takes its poll and flags it; a later poll finds the work at once.
  const auto woken = cache.wake({"b", "c"}, true);
  REQUIRE(woken.size() == 1);
  CHECK(woken[0].first == "b");
  CHECK(cache.load(0).waiting == 0);
  CHECK(cache.poll("c", 102, false, 30s, park) == WorkCache::Poll::work);
  // Waking without work only answers the waiting polls.
  CHECK(cache.poll("d", 102, false, 30s, park) == WorkCache::Poll::parked);
  CHECK(cache.wake({"d"}, false).size() == 1);
  CHECK(cache.poll("d", 103, false, 0s, park) == WorkCache::Poll::nothing);
}

TEST_CASE("a host's flag is cleared only when no work arrived since it was read", "[work_cache]") {
  WorkCache cache([](std::vector<WorkCache::Waiter>) {});
  cache.wake({"a"}, true);
  const auto seen = cache.generation("a");
  cache.wake({"a"}, true);  // a job arrives while the reader looks at the store
  cache.settle("a", seen);
  CHECK(cache.poll("a", 1, false, 0s, [] { return WorkCache::Waiter{}; }) == WorkCache::Poll::work);
  cache.settle("a", cache.generation("a"));
  CHECK(cache.poll("a", 1, false, 0s, [] { return WorkCache::Waiter{}; }) == WorkCache::Poll::nothing);
}

TEST_CASE("the sweeper ends long polls whose wait ran out; stop hands back the rest", "[work_cache]") {
  std::atomic<int> expired{0};
  WorkCache cache([&](std::vector<WorkCache::Waiter> w) { expired += static_cast<int>(w.size()); });
  cache.start();
  const auto park = [] { return WorkCache::Waiter{}; };
  cache.poll("short", 1, false, 1s, park);
  cache.poll("long", 1, false, 60s, park);
  cache.poll("long", 1, false, 60s, park);
  CHECK(distrib::test::wait_until([&] { return expired == 1; }, 5s));
  CHECK(cache.load(0).waiting == 2);
  CHECK(cache.stop().size() == 2);
  CHECK(expired == 1);
  CHECK(cache.load(0).waiting == 0);
}

TEST_CASE("releases are told once and dropped when the host comes back; contacts", "[work_cache]") {
  WorkCache cache([](std::vector<WorkCache::Waiter>) {});
  cache.release("relay1", "h1");
  cache.release("relay1", "h2");
  cache.unrelease("relay1", "h2");  // h2 is back below relay1
  CHECK(cache.take_released("relay1") == std::vector<std::string>{"h1"});
  CHECK(cache.take_released("relay1").empty());

  cache.contact("a", 100);
  cache.contact("b", 200);
  cache.poll("c", 50, false, 30s, [] { return WorkCache::Waiter{}; });  // waiting: in contact now
  // First: every host's contact (c waiting: in contact now).
  auto seen = cache.contacts_to_write(300, 60);
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<std::pair<std::string, std::int64_t>>{{"a", 100}, {"b", 200}, {"c", 300}});
  // Then each host's again only once it moved on by the refresh interval: c, still waiting, is
  // handed out again within 60 s of its first (by its hash), then every 60 s; a and b not
  // until they are in contact again.
  CHECK(cache.contacts_to_write(300, 60).empty());
  std::vector<std::int64_t> c_at;
  for (std::int64_t t = 310; t <= 600; t += 10)
    for (const auto& [h, at] : cache.contacts_to_write(t, 60)) {
      CHECK(h == "c");
      c_at.push_back(at);
    }
  REQUIRE(c_at.size() >= 4);
  CHECK(c_at.front() <= 360);
  for (std::size_t i = 1; i < c_at.size(); ++i) CHECK(c_at[i] - c_at[i - 1] == 60);
  cache.contact("a", 610);
  seen = cache.contacts_to_write(610, 60);
  CHECK(std::count(seen.begin(), seen.end(), std::pair<std::string, std::int64_t>{"a", 610}) == 1);
  CHECK(cache.last_contacts().at("a") == 100);
  CHECK(cache.load(100).connected == 2);  // a and b (c's contact was at 50)
  CHECK(cache.load(100).waiting == 1);
}
