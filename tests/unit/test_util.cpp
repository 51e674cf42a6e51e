// Private utilities: the blocking pool; log lines with control characters escaped.
#include <distrib/services/logging.h>

#include "util/blocking_pool.h"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <catch2/catch.hpp>

#include <sstream>

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

TEST_CASE("log lines cannot be forged: control characters in messages are escaped", "[util]") {
  CHECK(escape_control_characters("plain text / \\ é") == "plain text / \\ é");
  CHECK(escape_control_characters("a\nb\r\tc\x07\x1b[31m\x7f") == "a\\nb\\r\\tc\\x07\\x1b[31m\\x7f");
  std::ostringstream out;
  auto logger =
      std::make_shared<spdlog::logger>("escape-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  set_log_format("%l %v");
  spdlog::info("entry 7 on host {}: {}", "h1", "failed\n2026-12-02 info entry 8 succeeded");
  spdlog::set_default_logger(previous);
  CHECK(out.str() == "info entry 7 on host h1: failed\\n2026-12-02 info entry 8 succeeded\n");
}
