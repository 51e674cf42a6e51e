// Private utilities: the blocking pool.
#include "util/blocking_pool.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>

using namespace distrib;

TEST_CASE("a task that throws does not take its pool thread down", "[util]") {
  BlockingPool pool(1);
  std::atomic<int> done{0};
  pool.submit([] { throw std::runtime_error("a store call failed in an unexpected way"); });
  pool.submit([] { throw 42; });
  pool.submit([&] { ++done; });
  pool.submit([&] { ++done; });
  pool.stop();  // runs what is queued, then joins
  CHECK(done == 2);
}
