#pragma once
// What every facility of the manager shares: settings, the store, the chunk store, the store
// thread pool, this manager's host id and its path to the top of the tree, the work cache and the
// event dispatcher. Facilities (one class per file in this directory) take a Context& and the
// few other facilities they call; manager.cpp builds them in order.
#include <distrib/content/chunk_store.h>
#include <distrib/services/manager.h>
#include <distrib/store/store.h>

#include <distrib/services/events.h>
#include "security/authority.h"
#include "security/host_identity.h"
#include "services/manager/callers.h"
#include "services/manager/http_util.h"
#include "services/manager/publisher_set.h"
#include "services/manager/work_cache.h"
#include "util/blocking_pool.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace distrib::manager {

struct Context {
  /// Checks the settings, prepares the state directory and opens the store and the event
  /// dispatcher (not started). Throws Error(invalid_argument) naming a bad setting.
  Context(ManagerSettings s, const StoreRegistry& stores, const EventSinkRegistry& sinks);
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  ManagerSettings settings;
  std::unique_ptr<Store> store;
  std::unique_ptr<ChunkStore> chunks;
  std::unique_ptr<BlockingPool> pool;  // made by Manager::start
  std::unique_ptr<EventDispatcher> events;
  std::string my_id;  // this manager's host identifier

  // Identities (docs/SECURITY.md). With TLS (the default) `callers` checks hosts' certificates.
  Callers callers;
  std::optional<security::TlsFiles> pki;             // the top manager's CA and server certificate
  std::unique_ptr<security::HostIdentity> identity;  // a relay's own key and certificate
  std::string client_ca_file;                        // what hosts' certificates chain to
  std::function<void()> certificate_renewed;         // a relay's listener takes its new certificate
  PublisherSetHolder publishers;                     // the trusted publisher set served below
  std::int64_t started_unix = 0;

  // Hosts with work, agents waiting in a long poll, last contacts, releases: the only mutable
  // state the facilities share (work_cache.h). Long polls whose wait ran out are answered empty.
  WorkCache work_cache{[](std::vector<WorkCache::Waiter> expired) {
    const auto empty = json_response(200, boost::json::object{{"work", boost::json::array{}}});
    for (auto& r : expired) (*r)(empty);
  }};

  std::atomic<std::uint64_t> polls{0}, request_bytes{0};  // metrics

  bool is_relay() const noexcept { return !settings.parents.empty(); }
  const char* role() const noexcept { return is_relay() ? "relay" : "manager"; }

  /// Host ids from this manager up to the top (a relay learns it when it registers upward).
  std::vector<std::string> path() const;
  void set_path(std::vector<std::string> up);

  /// The CA certificate (PEM) in client_ca_file, read once it exists (a tree's CA never changes;
  /// a relay has it once enrolled). Throws Error(unavailable) before.
  std::string client_ca_pem() const;

  /// Runs `fn` on the store pool and answers with its result or its error; nothing escapes.
  void blocking(Responder r, std::function<HttpResponse()> fn);

 private:
  void prepare_identities();

  mutable std::mutex path_mutex_;
  std::vector<std::string> path_;
  mutable std::mutex ca_mutex_;
  mutable std::string ca_pem_;
};

}  // namespace distrib::manager
