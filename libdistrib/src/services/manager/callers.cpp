// Who is calling, and what it may do (callers.h).
#include "services/manager/callers.h"

#include <distrib/error.h>

#include <mutex>

namespace distrib::manager {

std::optional<pki::Identity> Callers::of(const HttpRequest& req) const {
  if (!enabled_ || !req.peer.present()) return std::nullopt;
  std::optional<pki::Identity> found;
  for (const auto& uri : req.peer.uris) {
    auto id = pki::parse_identity(uri);
    if (!id) continue;
    if (found) return std::nullopt;  // a certificate names one identity
    found = std::move(id);
  }
  return found;
}

std::string Callers::requester(const HttpRequest& req, std::string claimed) const {
  if (!enabled_) return claimed;
  const auto id = of(req);
  return id ? id->host_id : std::string();
}

void Callers::require_host(const HttpRequest& req) const {
  if (!enabled_) return;
  if (!req.peer.present())
    throw Error(ErrorKind::unauthorized,
                "this route needs the client certificate of an enrolled host (distribctl hosts pending)");
  if (!of(req)) throw Error(ErrorKind::forbidden, "the client certificate names no distrib host identity");
  if (revoked(req.peer.serial))
    throw Error(ErrorKind::forbidden,
                "the certificate of host " + of(req)->host_id + " is revoked; the host must enrol again");
}

void Callers::require_relay(const HttpRequest& req) const {
  require_host(req);
  if (!enabled_) return;
  const auto id = of(req);
  if (id->role != "relay")
    throw Error(ErrorKind::forbidden,
                "this route is for relays; host " + id->host_id + " enrolled as an agent");
}

void Callers::require_self(const HttpRequest& req, const std::string& host_id) const {
  if (!enabled_) return;
  const auto id = of(req);
  if (!id || id->host_id != host_id)
    throw Error(ErrorKind::forbidden, "host " + (id ? id->host_id : std::string("(none)")) +
                                          " may not act for host " + host_id.substr(0, 64));
}

void Callers::require_for(const HttpRequest& req, const std::string& host_id, Store& store) const {
  if (!enabled_) return;
  const auto id = of(req);
  if (id && id->host_id == host_id) return;
  if (id && id->role == "relay") {
    const auto host = store.find_host(host_id);
    if (host && host->via == id->host_id) return;
  }
  throw Error(ErrorKind::forbidden, "host " + (id ? id->host_id : std::string("(none)")) +
                                        " may not act for host " + host_id.substr(0, 64) +
                                        " (neither that host nor the relay it is reached through)");
}

bool Callers::may_claim(const std::string& relay, const std::string& host_id, Store& store) const {
  if (!enabled_) return true;
  if (const auto host = store.find_host(host_id); host && host->via == relay) return true;
  const auto e = store.find_enrolment(host_id);
  if (!e || e->state != EnrolmentState::accepted) return false;
  const auto last = e->via.rfind(',');
  return (last == std::string::npos ? e->via : e->via.substr(last + 1)) == relay;
}

void Callers::set_revoked(const std::vector<std::uint64_t>& serials) {
  std::unique_lock lock(mutex_);
  revoked_ = {serials.begin(), serials.end()};
}

void Callers::revoke(std::uint64_t serial) {
  std::unique_lock lock(mutex_);
  revoked_.insert(serial);
}

bool Callers::revoked(std::uint64_t serial) const {
  std::shared_lock lock(mutex_);
  return revoked_.contains(serial);
}

}  // namespace distrib::manager
