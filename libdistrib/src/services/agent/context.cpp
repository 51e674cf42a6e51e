// What the agent's parts share: the state directory prepared, the host id, sleeping and stopping.
#include "services/agent/context.h"

namespace distrib::agent {

Context::Context(AgentSettings s) : settings(std::move(s)) {
  if (settings.parents.empty())
    throw Error(ErrorKind::invalid_argument, "agent needs a parent URL (--server)");
  ParentLink::Settings ls;
  ls.urls = settings.parents;
  ls.ca_file = settings.ca_file;
  ls.bind_address = settings.bind_address;
  ls.recheck_seconds = settings.parent_recheck_seconds;
  parents = std::make_unique<ParentLink>(ls);
  clients = std::make_unique<ClientSet>(*parents);
  fs::ensure_writable_dir(settings.state_dir, "state directory");
  fs::ensure_writable_dir(outbox_dir(), "outbox directory");
  fs::ensure_writable_dir(settings.state_dir / "entries", "entry journal directory");
  chunks = std::make_unique<ChunkStore>(settings.state_dir / "chunks");
  host_id = fs::load_or_create_host_id(settings.state_dir / "host-id");
}

void Context::sleep_ms(int ms) {
  std::unique_lock lock(sleep_mutex_);
  sleep_cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping.load(); });
}

auto Context::abandoning() const -> bool {
  if (!stopping) return false;
  return !in_stop_phase || std::chrono::steady_clock::now() > stop_deadline;
}

void Context::request_stop() {
  stopping = true;
  sleep_cv_.notify_all();
  clients->abort();
}

}  // namespace distrib::agent
