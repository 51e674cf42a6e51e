// The manager's shared context: the tree path and running store calls off the network threads.
#include "services/manager/context.h"

#include "util/fs.h"

#include <spdlog/spdlog.h>

namespace distrib::manager {

Context::Context(ManagerSettings s, const StoreRegistry& stores, const EventSinkRegistry& sinks)
    : settings(std::move(s)) {
  auto& st = settings;
  fs::ensure_writable_dir(st.state_dir, "state directory");
  if (st.store.backend == "sqlite" && st.store.path.empty())
    st.store.path = (st.state_dir / "distrib.db").string();
  if (st.store.pool_size < st.store_threads + 1) st.store.pool_size = st.store_threads + 1;
  if (st.poll_timeout_seconds < 1)
    throw Error(ErrorKind::invalid_argument, "poll timeout must be at least 1 second");
  if (st.silent_after_seconds < 0)
    throw Error(ErrorKind::invalid_argument, "silent-after must be 0 (never) or more seconds");
  if (st.event_retention_days < 0)
    throw Error(ErrorKind::invalid_argument, "event retention must be 0 (keep) or more days");
  chunks = std::make_unique<ChunkStore>(st.state_dir / "chunks");
  my_id = fs::load_or_create_host_id(st.state_dir / "host-id");
  store = stores.open(st.store);
  events = std::make_unique<EventDispatcher>(*store, sinks, st.event_sinks);
}

std::vector<std::string> Context::path() const {
  std::lock_guard lock(path_mutex_);
  return path_.empty() ? std::vector<std::string>{my_id} : path_;
}

void Context::set_path(std::vector<std::string> up) {
  std::lock_guard lock(path_mutex_);
  path_ = std::move(up);
}

void Context::blocking(Responder r, std::function<HttpResponse()> fn) {
  auto shared = std::make_shared<Responder>(std::move(r));
  pool->submit([shared, fn = std::move(fn)] {
    HttpResponse res;
    try {
      res = fn();
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::internal || e.kind() == ErrorKind::unavailable)
        spdlog::error("{}", e.what());
      res = error_response(e);
    } catch (const std::exception& e) {
      spdlog::error("unexpected failure: {}", e.what());
      res = error_response(Error(ErrorKind::internal, e.what()));
    }
    (*shared)(std::move(res));
  });
}

}  // namespace distrib::manager
