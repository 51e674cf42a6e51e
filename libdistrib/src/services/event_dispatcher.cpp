// The driver between the store's event outbox and the sinks: cursors, filters, retries and
// backoff for every sink in one place, and the live subscribers of GET /v1/events/stream.
#include <distrib/error.h>
#include <distrib/net/http.h>
#include <distrib/services/events.h>
#include <distrib/store/store.h>
#include "util/fs.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace distrib {

namespace {

using Clock = std::chrono::steady_clock;

// With concurrent writers (database servers), an event id can commit after a higher one. A
// reader that meets a gap waits this long, counted from the younger event's time, before it takes
// the gap for a rolled-back transaction and moves on.
constexpr std::int64_t kGapWaitMs = 2000;

// `e` follows a gap after `cursor` that may still fill: read again shortly.
bool young_gap(const Event& e, std::int64_t cursor) {
  return e.id != cursor + 1 && fs::now_unix_ms() - e.at_ms < kGapWaitMs;
}
constexpr int kBatch = 256;
// Bytes queued for one live stream client before the reader waits for it to take them.
constexpr std::size_t kStreamBacklog = 4u << 20;

}  // namespace

struct EventDispatcher::Impl {
  Store& store;

  struct Runner {
    EventSinkSettings settings;
    std::unique_ptr<EventSink> sink;
    std::thread thread;
    mutable std::mutex status_mutex;
    EventSinkStatus status;
  };
  std::vector<std::unique_ptr<Runner>> runners;

  struct Subscriber {
    std::shared_ptr<HttpStream> stream;
    std::int64_t cursor = 0;
    EventFilter filter;
    Clock::time_point last_write = Clock::now();
    bool recheck = true;  // new, or stopped at a gap or a full batch: read even without news
  };

  std::mutex mutex;
  std::condition_variable cv;
  std::uint64_t generation = 0;  // bumped by notify()
  bool stopping = false;
  bool started = false;
  std::vector<Subscriber> subscribers;
  std::thread live;

  explicit Impl(Store& s) : store(s) {}

  // Waits until notify() was called since `seen`, `timeout` passed or stop; false on stop.
  bool wait(std::uint64_t& seen, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex);
    cv.wait_for(lock, timeout, [&] { return stopping || generation != seen; });
    seen = generation;
    return !stopping;
  }

  bool sleep(std::chrono::milliseconds d) {
    std::unique_lock lock(mutex);
    return !cv.wait_for(lock, d, [&] { return stopping; });
  }

  bool is_stopping() {
    std::lock_guard lock(mutex);
    return stopping;
  }

  void note_failure(Runner& r, const std::string& what) {
    std::lock_guard lock(r.status_mutex);
    ++r.status.failures;
    r.status.last_error = what;
    r.status.last_error_ms = fs::now_unix_ms();
  }

  // The sink's cursor; a sink seen for the first time starts after the newest event (it
  // receives what happens from now on, not the database's history).
  std::int64_t initial_cursor(Runner& r) {
    auto backoff = std::chrono::milliseconds(250);
    for (;;) {
      try {
        auto c = store.event_cursor(r.settings.name);
        if (c < 0) {
          c = store.last_event_id();
          store.set_event_cursor(r.settings.name, c);
        }
        return c;
      } catch (const std::exception& e) {
        note_failure(r, std::string("reading the sink's position: ") + e.what());
        spdlog::warn("event sink {}: cannot read its position ({}); retrying", r.settings.name, e.what());
        if (!sleep(backoff)) return -1;
        backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
      }
    }
  }

  void run(Runner& r) {
    std::int64_t cursor = initial_cursor(r);
    if (cursor < 0) return;
    {
      std::lock_guard lock(r.status_mutex);
      r.status.cursor = cursor;
    }
    std::uint64_t seen = 0;
    auto backoff = std::chrono::milliseconds(250);
    int attempts = 0;  // failed deliveries of the event at the head
    bool more = true;  // the last batch was full: read again without waiting
    while (!is_stopping()) {
      if (!more && !wait(seen, std::chrono::milliseconds(1000))) break;
      more = false;
      std::vector<Event> batch;
      try {
        batch = store.events_after(cursor, kBatch);
      } catch (const std::exception& e) {
        note_failure(r, std::string("reading the outbox: ") + e.what());
        if (!sleep(backoff)) break;
        backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
        more = true;
        continue;
      }
      const auto before = cursor;
      bool failed = false, gap = false, erred = false;
      std::uint64_t delivered = 0;
      for (const auto& e : batch) {
        if (young_gap(e, cursor)) {
          gap = true;  // an older id may still commit
          break;
        }
        if (r.settings.filter.matches(e)) {
          try {
            r.sink->deliver(e);
            ++delivered;
            attempts = 0;
          } catch (const std::exception& ex) {
            ++attempts;
            erred = true;
            note_failure(r, ex.what());
            if (r.settings.max_attempts > 0 && attempts >= r.settings.max_attempts) {
              spdlog::error("event sink {}: gave up event {} ({}) after {} attempt(s): {}", r.settings.name,
                            e.id, e.type, attempts, ex.what());
              std::lock_guard lock(r.status_mutex);
              ++r.status.dropped;
              attempts = 0;
            } else {
              spdlog::warn("event sink {}: event {} ({}) not delivered (attempt {}): {}; retrying in {} ms",
                           r.settings.name, e.id, e.type, attempts, ex.what(), backoff.count());
              failed = true;
              break;
            }
          }
        }
        cursor = e.id;
      }
      if (cursor != before) {
        try {
          r.sink->flush();
        } catch (const std::exception& ex) {
          // Not durable at the receiver: the whole batch is delivered again.
          note_failure(r, std::string("flush: ") + ex.what());
          spdlog::warn("event sink {}: {}; the last {} event(s) will be delivered again", r.settings.name,
                       ex.what(), delivered);
          cursor = before;
          attempts = 0;
          if (!sleep(backoff)) break;
          backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
          more = true;
          continue;
        }
        try {
          store.set_event_cursor(r.settings.name, cursor);
        } catch (const std::exception& ex) {
          // Delivered but not recorded: delivered again after a restart (at least once).
          note_failure(r, std::string("saving the sink's position: ") + ex.what());
          spdlog::warn("event sink {}: cannot save its position ({})", r.settings.name, ex.what());
        }
        std::lock_guard lock(r.status_mutex);
        r.status.cursor = cursor;
        r.status.delivered += delivered;
        if (!erred && delivered > 0) r.status.last_error.clear();
      }
      if (failed) {
        if (!sleep(backoff)) break;
        backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
        more = true;
        continue;
      }
      backoff = std::chrono::milliseconds(250);
      if (gap) {
        if (!sleep(std::chrono::milliseconds(100))) break;
        more = true;
        continue;
      }
      more = static_cast<int>(batch.size()) == kBatch;
    }
    try {
      r.sink->flush();
    } catch (...) {
    }
  }

  static std::string sse_frame(const Event& e) {
    return "id: " + std::to_string(e.id) + "\nevent: " + e.type + "\ndata: " + event_to_json(e) + "\n\n";
  }

  // Feeds the live subscribers: each gets what its filter takes after its own cursor; a
  // comment line every 15 s keeps proxies from closing the connection and finds clients gone.
  void live_loop() {
    std::uint64_t seen = 0;
    for (;;) {
      if (!wait(seen, std::chrono::milliseconds(1000))) break;
      std::vector<Subscriber> subs;
      {
        std::lock_guard lock(mutex);
        subs.swap(subscribers);
      }
      if (subs.empty()) continue;
      // One cheap read tells who has something to read (events may come from another process).
      std::int64_t newest = -1;
      try {
        newest = store.last_event_id();
      } catch (const std::exception& e) {
        spdlog::warn("event stream: {}", e.what());
      }
      std::vector<Subscriber> keep;
      for (auto& s : subs) {
        bool alive = true;
        // A client that does not keep up gets no more until it has taken what is queued.
        const bool backlogged = s.stream->queued_bytes() > kStreamBacklog;
        if ((newest < 0 || newest > s.cursor || s.recheck) && !backlogged) try {
            s.recheck = false;
            for (;;) {
              const auto batch = store.events_after(s.cursor, kBatch);
              std::string out;
              bool gap = false;
              for (const auto& e : batch) {
                if (young_gap(e, s.cursor)) {
                  gap = s.recheck = true;
                  break;
                }
                if (s.filter.matches(e)) out += sse_frame(e);
                s.cursor = e.id;
              }
              if (!out.empty()) {
                alive = s.stream->write(std::move(out));
                s.last_write = Clock::now();
              }
              if (!alive || gap || static_cast<int>(batch.size()) < kBatch) break;
              if (s.stream->queued_bytes() > kStreamBacklog) {
                s.recheck = true;  // the rest when the client has caught up
                break;
              }
            }
          } catch (const std::exception& e) {
            s.recheck = true;
            spdlog::warn("event stream: {}", e.what());
          }
        if (alive && Clock::now() - s.last_write > std::chrono::seconds(15)) {
          alive = s.stream->write(": keep-alive\n\n");
          s.last_write = Clock::now();
        }
        if (alive) keep.push_back(std::move(s));
      }
      std::lock_guard lock(mutex);
      for (auto& s : keep) subscribers.push_back(std::move(s));
    }
    std::lock_guard lock(mutex);
    for (auto& s : subscribers) s.stream->close();
    subscribers.clear();
  }
};

std::vector<std::unique_ptr<EventSink>> make_event_sinks(const EventSinkRegistry& registry,
                                                         const std::vector<EventSinkSettings>& sinks) {
  std::vector<std::unique_ptr<EventSink>> out;
  for (std::size_t i = 0; i < sinks.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j)
      if (sinks[j].name == sinks[i].name)
        throw Error(ErrorKind::invalid_argument, "event sink \"" + sinks[i].name + "\" is configured twice");
    out.push_back(registry.create(sinks[i]));
  }
  return out;
}

EventDispatcher::EventDispatcher(Store& store, const EventSinkRegistry& registry,
                                 std::vector<EventSinkSettings> sinks)
    : impl_(std::make_unique<Impl>(store)) {
  auto built = make_event_sinks(registry, sinks);
  for (std::size_t i = 0; i < sinks.size(); ++i) {
    auto& s = sinks[i];
    auto runner = std::make_unique<Impl::Runner>();
    runner->sink = std::move(built[i]);
    runner->status.name = s.name;
    runner->status.type = s.type;
    runner->status.target = s.target;
    runner->settings = std::move(s);
    impl_->runners.push_back(std::move(runner));
  }
}

EventDispatcher::~EventDispatcher() {
  stop();
}

void EventDispatcher::start() {
  auto& i = *impl_;
  std::lock_guard lock(i.mutex);
  if (i.started) return;
  i.started = true;
  i.stopping = false;
  for (auto& r : i.runners) {
    auto* runner = r.get();
    runner->thread = std::thread([this, runner] { impl_->run(*runner); });
  }
  i.live = std::thread([this] { impl_->live_loop(); });
}

void EventDispatcher::stop() {
  auto& i = *impl_;
  {
    std::lock_guard lock(i.mutex);
    if (!i.started) return;
    i.started = false;
    i.stopping = true;
  }
  i.cv.notify_all();
  for (auto& r : i.runners)
    if (r->thread.joinable()) r->thread.join();
  if (i.live.joinable()) i.live.join();
}

void EventDispatcher::notify() {
  {
    std::lock_guard lock(impl_->mutex);
    ++impl_->generation;
  }
  impl_->cv.notify_all();
}

void EventDispatcher::subscribe(std::shared_ptr<HttpStream> stream, std::int64_t after, EventFilter filter) {
  {
    std::lock_guard lock(impl_->mutex);
    if (!impl_->started) {  // stopping: nobody would feed or close it
      stream->close();
      return;
    }
    impl_->subscribers.push_back({std::move(stream), after, std::move(filter), Clock::now()});
  }
  notify();
}

int EventDispatcher::subscribers() const {
  std::lock_guard lock(impl_->mutex);
  return static_cast<int>(impl_->subscribers.size());
}

std::vector<EventSinkStatus> EventDispatcher::status() const {
  std::vector<EventSinkStatus> out;
  std::int64_t last = -1;
  for (const auto& r : impl_->runners) {
    EventSinkStatus s;
    {
      std::lock_guard lock(r->status_mutex);
      s = r->status;
    }
    if (last < 0) {
      try {
        last = impl_->store.last_event_id();
      } catch (const std::exception&) {
        last = s.cursor;
      }
    }
    s.pending = std::max<std::int64_t>(0, last - s.cursor);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace distrib
