// The manager's shared context: the tree path and running store calls off the network threads.
#include "services/manager/context.h"

#include "services/system_info.h"
#include "util/fs.h"

#include <spdlog/spdlog.h>

#include <sys/stat.h>

namespace distrib::manager {

Context::Context(ManagerSettings s, const StoreRegistry& stores, const EventSinkRegistry& sinks)
    : settings(std::move(s)) {
  auto& st = settings;
  fs::ensure_writable_dir(st.state_dir, "state directory");
  // The database, keys, tokens and collected files are this server's alone.
  ::chmod(st.state_dir.c_str(), 0700);
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
  if (st.store.backend == "sqlite")
    for (const auto* suffix : {"", "-wal", "-shm"}) ::chmod((st.store.path + suffix).c_str(), 0600);
  prepare_identities();
  publishers.load(st.state_dir);
  events = std::make_unique<EventDispatcher>(*store, sinks, st.event_sinks);
}

// The top manager's CA (made at the first start) and the TLS files of the listener; a relay's own
// key (its certificate comes with its enrolment, before it serves).
void Context::prepare_identities() {
  auto& st = settings;
  if (!is_relay()) {
    std::vector<std::string> given = st.tls_names;
    if (st.listen_address != "0.0.0.0" && st.listen_address != "::") given.push_back(st.listen_address);
    // A cluster's nodes share the certificate: it names the logical address, not a node.
    if (!st.cluster_status) given.push_back(st.host_name.empty() ? system_host_name() : st.host_name);
    given.insert(given.end(), {"localhost", "127.0.0.1"});
    std::vector<std::string> names, addresses;
    security::split_names(given, names, addresses);
    pki = security::ensure_manager_tls(st.state_dir / "pki", names, addresses);
    client_ca_file = pki->ca_cert.string();
    if (!st.insecure_http && st.tls_cert_file.empty()) {
      st.tls_cert_file = pki->server_cert.string();
      st.tls_key_file = pki->server_key.string();
    }
  } else if (!st.insecure_http) {
    identity =
        std::make_unique<security::HostIdentity>(st.state_dir / "identity", pki::Identity{my_id, "relay"});
    client_ca_file = identity->ca_file().string();
    if (st.tls_cert_file.empty()) {
      st.tls_cert_file = identity->cert_file().string();
      st.tls_key_file = identity->key_file().string();
    }
  }
  callers.enable(!st.insecure_http);
  callers.set_revoked(store->revoked_serials());
  if (st.insecure_http)
    spdlog::warn(
        "serving plain HTTP (--insecure-http): hosts and administrators prove nothing and "
        "everything on the network can read and forge their requests");
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

std::string Context::client_ca_pem() const {
  std::lock_guard lock(ca_mutex_);
  if (ca_pem_.empty()) {
    std::error_code ec;
    if (client_ca_file.empty() || !std::filesystem::exists(client_ca_file, ec))
      throw Error(ErrorKind::unavailable, "this server does not know its CA yet (a relay not yet enrolled)");
    ca_pem_ = fs::read_file(client_ca_file);
  }
  return ca_pem_;
}

}  // namespace distrib::manager
