#pragma once
// Event sinks and the driver that feeds them from the store's durable outbox.
//
// Contract of a sink:
//  - deliver(e) hands one event to the receiver and returns once the receiver has taken it (a
//    file written, a datagram sent, a 2xx answered, a command exited 0). It blocks at most about
//    the sink's timeout. On failure it throws distrib::Error naming the cause; the driver calls
//    it again later with the same event (at-least-once, in order): a sink never skips.
//  - flush() makes what was delivered durable where that means something (fsync of a file); it
//    is called after each batch, before the sink's cursor moves in the store.
//  - A sink is used by one thread at a time (its own delivery thread).
//
// Retries, backoff, cursors and filters live in the EventDispatcher, not in the sinks.
#include <distrib/model/event.h>
#include <distrib/registry.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace distrib {

class Store;
class HttpStream;

/// One configured sink, from "NAME=TYPE:TARGET[;key=value]...", e.g.
///   ops=file:/var/log/distrib/events.jsonl;types=job.*,entry.failed;severity=info
///   hook=webhook:https://hooks.example.com/distrib;secret=s3cret;timeout=5s
/// Keys every sink takes: types (patterns), severity (lowest), max-attempts (0: retry forever;
/// N: give up on one event after N failed deliveries, logged and counted), timeout (10s).
struct EventSinkSettings {
  std::string name;    ///< unique; keys the sink's delivery cursor in the store
  std::string type;    ///< file, syslog, webhook, exec, snmp
  std::string target;  ///< what follows "TYPE:", meaning per type
  EventFilter filter;
  int max_attempts = 0;
  std::chrono::milliseconds timeout{10000};
  std::map<std::string, std::string> options;  ///< type-specific keys (secret, facility, ...)
};
/// Parses the common syntax and keys; type-specific keys stay in `options` for the factory.
/// Throws Error(invalid_argument) naming the part that is wrong.
EventSinkSettings parse_event_sink(const std::string& spec);

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void deliver(const Event& e) = 0;
  virtual void flush() {}
};

/// Maps a sink type to a factory (the common `Registry`) and to the options the type accepts.
class EventSinkRegistry {
 public:
  using Factory = Registry<EventSink, EventSinkSettings>::Factory;
  /// `options`: the type-specific keys the type accepts. Throws on a duplicate type.
  void add(const std::string& type, std::vector<std::string> options, Factory factory);
  /// Throws Error(invalid_argument) naming the sink and listing the known types when the type is
  /// unknown, or the known keys when an option is not one of them; the factory checks the target.
  std::unique_ptr<EventSink> create(const EventSinkSettings& settings) const;
  std::vector<std::string> types() const { return factories_.names(); }

 private:
  Registry<EventSink, EventSinkSettings> factories_{"event sink type"};
  std::map<std::string, std::vector<std::string>> options_;
};

/// file (JSON lines), syslog (RFC 5424 over unix:PATH, udp:HOST:PORT or tcp:HOST:PORT), webhook
/// (HTTP POST, HMAC-SHA256 signature), exec (a command with the event in its environment) and
/// snmp (SNMPv2c trap through net-snmp).
void register_builtin_event_sinks(EventSinkRegistry& registry);

/// Builds every configured sink, in order. Throws Error(invalid_argument) for a name used twice
/// and whatever the registry throws for a wrong sink (distribd calls it first to refuse a bad
/// configuration before anything else happens, on every node of a cluster).
std::vector<std::unique_ptr<EventSink>> make_event_sinks(const EventSinkRegistry& registry,
                                                         const std::vector<EventSinkSettings>& sinks);

/// What a sink has done, for distribctl events sinks and /metrics.
struct EventSinkStatus {
  std::string name, type, target;
  std::int64_t cursor = 0;      ///< last event id taken (or skipped by the filter)
  std::int64_t pending = 0;     ///< events in the outbox after the cursor
  std::uint64_t delivered = 0;  ///< since start
  std::uint64_t failures = 0;   ///< failed deliveries since start
  std::uint64_t dropped = 0;    ///< events given up after max-attempts
  std::string last_error;       ///< empty once a delivery succeeds again
  std::int64_t last_error_ms = 0;
};

/// Feeds every sink from the outbox: one thread per sink reads events after the sink's cursor,
/// delivers those its filter takes, and moves the cursor in the store after each batch. Fails
/// are retried with doubling backoff (250 ms to 30 s); a sink that is down loses nothing. Only
/// the process that writes the store (the active manager) should run one.
class EventDispatcher {
 public:
  /// Builds every sink through the registry (configuration errors throw before anything runs).
  EventDispatcher(Store& store, const EventSinkRegistry& registry, std::vector<EventSinkSettings> sinks);
  ~EventDispatcher();
  EventDispatcher(const EventDispatcher&) = delete;
  EventDispatcher& operator=(const EventDispatcher&) = delete;
  void start();
  void stop();  ///< idempotent; a delivery in progress finishes or times out first
  /// New events were committed: the sinks look now instead of at their next check (1 s).
  void notify();
  std::vector<EventSinkStatus> status() const;
  /// A live subscriber (GET /v1/events/stream): events after `after` that `filter` takes are
  /// written to `stream` as server-sent events ("id:", "event:", "data:" lines) until the client
  /// goes away or the dispatcher stops.
  void subscribe(std::shared_ptr<HttpStream> stream, std::int64_t after, EventFilter filter);
  /// Live subscribers now.
  int subscribers() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace distrib
