#pragma once
// What every part of the agent shares: its settings and host id, the chunk store, the parents and
// their clients, the parent it is registered with, and the stop flags. The parts (one class per
// file in this directory) take a Context& and references to the few other parts they call;
// agent.cpp builds them in order. Everything here is used by the agent's worker thread only,
// except what is marked otherwise.
#include "services/agent/common.h"
#include "services/enrol_client.h"

namespace distrib::agent {

struct Context {
  /// Checks the settings, prepares the state directory (outbox, entry journal, chunk store) and
  /// loads the host identifier, making it on first start. Throws Error(invalid_argument) without
  /// a parent URL, and Error naming a directory that cannot be created or written.
  explicit Context(AgentSettings s);
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  AgentSettings settings;
  std::unique_ptr<ParentLink> parents;  // in order of preference, and which is current (thread-safe)
  std::unique_ptr<ClientSet> clients;   // a client per parent URL (abort() from any thread)
  std::unique_ptr<ChunkStore> chunks;
  std::string host_id;
  /// This agent's key and certificate, with an https parent (none with plain http ones).
  std::unique_ptr<security::HostIdentity> identity;
  EnrolSettings enrol;
  HttpClient* http = nullptr;  // the current parent's client
  std::string parent_url;      // the parent registered with
  std::string server_id;       // its identifier: entry ids are only unique per server
  bool registered = false;
  std::atomic<bool> registered_once{false};  // read by the inventory thread

  std::atomic<bool> stopping{false};  // set from any thread by request_stop()
  // Orderly stop: installs timed "at agent stop" run until the deadline.
  std::atomic<bool> in_stop_phase{false};
  std::chrono::steady_clock::time_point stop_deadline;

  stdfs::path outbox_dir() const { return settings.state_dir / "outbox"; }

  /// Sleeps `ms` milliseconds; returns early when the agent is stopping.
  void sleep_ms(int ms);
  /// Should entry processing give up (a stop, or the stop phase's time is over)?
  bool abandoning() const;
  /// Sets `stopping`, wakes sleep_ms and breaks off the calls to the parents in flight. Safe
  /// from any thread.
  void request_stop();

 private:
  std::mutex sleep_mutex_;
  std::condition_variable sleep_cv_;
};

}  // namespace distrib::agent
