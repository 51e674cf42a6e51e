// Events through the outbox while a large job runs.
//
// ENTRIES hosts are registered in an embedded (SQLite) store and one install job goes to all of
// them. REPORTERS threads then apply each entry's reports as the manager's store pool does
// (transferring, transferred, installing, succeeded: four transactions per entry); every final
// report writes its entry.succeeded event into the outbox in the same transaction, and the last
// one job.completed.
//   - sinks off: nobody reads the outbox;
//   - JSON sink: an EventDispatcher with a file sink runs during the job, as in distribd.
// Figures: job throughput (reports/s) in both modes and their ratio; events per second that
// reached the JSON file (from the first report until the sink's cursor holds the last event);
// and how far behind the sink was when the job ended. Each mode runs ROUNDS times on a fresh
// database, alternating, and the median is printed. Last, the sink's own pace: ENTRIES events
// waiting in the outbox (a sink that was down) drained into the JSON file.
//
// usage: bench_events [ENTRIES=10000] [REPORTERS=4] [ROUNDS=3]
#include "bench_common.h"
#include "harness.h"

#include <distrib/model/event.h>
#include <distrib/model/host.h>
#include <distrib/services/events.h>
#include <distrib/store/store.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace distrib;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Result {
  double job_seconds = 0;    // all reports applied
  double drain_seconds = 0;  // until the sink held the last event (sink runs only)
  std::int64_t events = 0;   // events the job wrote
  std::int64_t behind = 0;   // events the sink had not taken when the job ended
  std::size_t file_lines = 0;
};

Result run(std::size_t entries, int reporters, bool with_sink) {
  test::TempDir tmp;
  StoreRegistry reg;
  register_builtin_stores(reg);
  StoreSettings ss;
  ss.path = (tmp / "distrib.db").string();
  ss.pool_size = reporters + 2;
  auto store = reg.open(ss);
  std::vector<std::string> ids(entries);
  std::vector<std::string> names(entries);
  for (std::size_t i = 0; i < entries; ++i) {
    Host h;
    h.host_id = ids[i] = make_host_id();
    h.name = names[i] = "pc" + std::to_string(i);
    h.addresses = {"10.1." + std::to_string(i >> 8 & 255) + "." + std::to_string(i & 255)};
    store->upsert_host(h);
  }
  Manifest m;
  m.name = "app";
  m.version = "1";
  m.payload_digest = std::string(64, 'a');
  m.payload_size = 1;
  store->insert_package(m);

  EventSinkRegistry sinks;
  register_builtin_event_sinks(sinks);
  std::vector<EventSinkSettings> configured;
  const auto file = tmp / "events.jsonl";
  if (with_sink) configured.push_back(parse_event_sink("json=file:" + file.string()));
  EventDispatcher dispatcher(*store, sinks, configured);
  store->set_event_listener([&] { dispatcher.notify(); });
  dispatcher.start();
  // The sink starts after the newest event: registrations are not part of the figure.
  while (with_sink && dispatcher.status().front().cursor < store->last_event_id())
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto first_event = store->last_event_id();

  Job job;
  job.package_name = "app";
  job.package_version = "1";
  job.destinations = names;
  job.key_mode = "name";
  const auto created = store->create_job(job, ids);
  const auto list = store->job_entries(created.job.id);
  if (list.size() != entries)
    throw std::runtime_error("the job has " + std::to_string(list.size()) + " entries");

  const auto t0 = Clock::now();
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < reporters; ++t)
    threads.emplace_back([&] {
      for (std::size_t i = next++; i < list.size(); i = next++) {
        std::int64_t seq = 1;
        for (auto state : {EntryState::transferring, EntryState::transferred, EntryState::installing,
                           EntryState::succeeded}) {
          EntryReport r;
          r.entry_id = list[i].id;
          r.seq = seq++;
          r.state = state;
          if (state == EntryState::succeeded) r.exit_code = 0;
          const auto out = store->apply_report(list[i].host_id, r);
          if (out.kind != ReportOutcome::Kind::applied) throw std::runtime_error("report not applied");
        }
      }
    });
  for (auto& th : threads) th.join();
  Result res;
  res.job_seconds = seconds_since(t0);
  const auto last = store->last_event_id();
  res.events = last - first_event;
  if (with_sink) {
    res.behind = last - dispatcher.status().front().cursor;
    while (dispatcher.status().front().cursor < last)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    res.drain_seconds = seconds_since(t0);
  }
  dispatcher.stop();
  store->set_event_listener(nullptr);
  if (with_sink) {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) ++res.file_lines;
  }
  return res;
}

// How fast the driver empties a backlog into the JSON sink: `n` events waiting in the outbox
// (a sink that was down), then the dispatcher starts.
double backlog_events_per_second(std::size_t n) {
  test::TempDir tmp;
  StoreRegistry reg;
  register_builtin_stores(reg);
  StoreSettings ss;
  ss.path = (tmp / "distrib.db").string();
  auto store = reg.open(ss);
  std::vector<Event> batch;
  for (std::size_t i = 0; i < n; ++i) {
    Event e;
    e.type = "entry.succeeded";
    e.job_id = 1;
    e.host_id = make_host_id();
    e.subject = "pc" + std::to_string(i);
    e.message = "job 1 on pc" + std::to_string(i) + ": succeeded";
    batch.push_back(std::move(e));
    if (batch.size() == 1000) {
      store->record_events(batch);
      batch.clear();
    }
  }
  store->record_events(batch);
  store->set_event_cursor("json", 0);  // the sink has taken nothing yet
  EventSinkRegistry sinks;
  register_builtin_event_sinks(sinks);
  EventDispatcher dispatcher(*store, sinks,
                             {parse_event_sink("json=file:" + (tmp / "events.jsonl").string())});
  const auto last = store->last_event_id();
  const auto t0 = Clock::now();
  dispatcher.start();
  while (dispatcher.status().front().cursor < last) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double s = seconds_since(t0);
  dispatcher.stop();
  return static_cast<double>(n) / s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t entries = argc > 1 ? std::stoul(argv[1]) : 10000;
  const int reporters = argc > 2 ? std::stoi(argv[2]) : 4;
  const int rounds = argc > 3 ? std::stoi(argv[3]) : 3;
  std::printf("machine: %s\n", bench::machine().c_str());
  std::printf("job of %zu entries, %d reporting threads, 4 reports per entry, SQLite, %d round(s) per mode\n",
              entries, reporters, rounds);
  std::vector<double> off_rate, on_rate, ev_rate, behind;
  for (int r = 0; r < rounds; ++r) {
    const auto off = run(entries, reporters, false);
    const auto on = run(entries, reporters, true);
    if (on.file_lines != static_cast<std::size_t>(on.events))
      throw std::runtime_error("the JSON sink holds " + std::to_string(on.file_lines) +
                               " events, the job wrote " + std::to_string(on.events));
    const double reports = static_cast<double>(entries) * 4;
    off_rate.push_back(reports / off.job_seconds);
    on_rate.push_back(reports / on.job_seconds);
    ev_rate.push_back(static_cast<double>(on.events) / on.drain_seconds);
    behind.push_back(static_cast<double>(on.behind));
    std::printf(
        "round %d: sinks off %.2f s (%.0f reports/s); JSON sink %.2f s (%.0f reports/s), %lld events in the "
        "file after %.2f s (%.0f events/s), %lld behind at the job's end\n",
        r + 1, off.job_seconds, reports / off.job_seconds, on.job_seconds, reports / on.job_seconds,
        static_cast<long long>(on.events), on.drain_seconds,
        static_cast<double>(on.events) / on.drain_seconds, static_cast<long long>(on.behind));
  }
  std::printf("\nmedian job throughput, sinks off:  %.0f reports/s (%.0f entries/s)\n", median(off_rate),
              median(off_rate) / 4);
  std::printf("median job throughput, JSON sink:  %.0f reports/s (%.0f entries/s)\n", median(on_rate),
              median(on_rate) / 4);
  std::printf("ratio JSON sink / sinks off:       %.2f\n", median(on_rate) / median(off_rate));
  std::printf(
      "median events through the outbox to the JSON sink: %.0f events/s (behind at the job's end: %.0f)\n",
      median(ev_rate), median(behind));
  std::vector<double> drain;
  for (int r = 0; r < rounds; ++r) drain.push_back(backlog_events_per_second(entries));
  std::printf("median backlog drain (%zu events waiting, then the dispatcher starts): %.0f events/s\n",
              entries, median(drain));
  return 0;
}
