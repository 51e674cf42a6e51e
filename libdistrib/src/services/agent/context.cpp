// What the agent's parts share: the state directory prepared, the host id, sleeping and stopping.
#include "services/agent/context.h"

#include "security/enrolment.h"
#include "services/system_info.h"

#include <algorithm>

namespace distrib::agent {

Context::Context(AgentSettings s) : settings(std::move(s)) {
  enrol.bundle = settings.enrol_bundle;
  enrol.token = settings.enrol_token;
  enrol.ca_file = settings.ca_file;
  enrol.ca_fingerprint = settings.ca_fingerprint;
  enrol.name = settings.host_name.empty() ? system_host_name() : settings.host_name;
  if (settings.parents.empty() && !settings.enrol_bundle.empty())
    settings.parents = security::read_bundle(fs::read_file(settings.enrol_bundle)).servers;
  if (settings.parents.empty())
    throw Error(ErrorKind::invalid_argument, "agent needs a parent URL (--server) or an enrolment bundle");
  fs::ensure_writable_dir(settings.state_dir, "state directory");
  host_id = fs::load_or_create_host_id(settings.state_dir / "host-id");
  ParentLink::Settings ls;
  ls.urls = settings.parents;
  ls.ca_file = settings.ca_file;
  ls.bind_address = settings.bind_address;
  ls.recheck_seconds = settings.parent_recheck_seconds;
  const bool tls = std::any_of(settings.parents.begin(), settings.parents.end(),
                               [](const std::string& u) { return u.starts_with("https://"); });
  if (tls) {
    identity = std::make_unique<security::HostIdentity>(settings.state_dir / "identity",
                                                        pki::Identity{host_id, "agent"});
    ls.ca_file = identity->ca_file().string();
    ls.cert_file = identity->cert_file().string();
    ls.key_file = identity->key_file().string();
  } else {
    spdlog::warn("talking plain HTTP to {}: this agent proves nothing and trusts whatever answers there",
                 settings.parents.front());
  }
  parents = std::make_unique<ParentLink>(ls);
  clients = std::make_unique<ClientSet>(*parents);
  fs::ensure_writable_dir(outbox_dir(), "outbox directory");
  fs::ensure_writable_dir(settings.state_dir / "entries", "entry journal directory");
  chunks = std::make_unique<ChunkStore>(settings.state_dir / "chunks");
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
