// Who is calling, and what it may do (callers.h).
#include "services/manager/callers.h"

#include <distrib/error.h>

#include "model/json_codec.h"
#include "security/enrolment.h"

#include <boost/json.hpp>

#include <algorithm>
#include <ctime>
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

boost::json::object to_json(const Placement& p) {
  return {{"parent", p.parent}, {"at", p.at}, {"certificate", p.certificate}, {"signature", p.signature}};
}

Placement placement_from_json(const boost::json::object& o) {
  Placement p;
  p.parent = json::get_string(o, "parent");
  p.at = json::get_int(o, "at");
  p.certificate = json::get_string(o, "certificate");
  p.signature = json::get_string(o, "signature");
  if (p.parent.size() > 64 || p.certificate.size() > 8192 || p.signature.size() > 512)
    throw Error(ErrorKind::invalid_argument, "a placement proof's fields are too long");
  return p;
}

bool Callers::valid(const std::string& host_id, const Placement& p, const std::string& ca_pem) const {
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  if (p.at < now - 86400 || p.at > now + 600 || p.certificate.size() > 8192) return false;
  try {
    if (!pki::verify(ca_pem, p.certificate, now).empty()) return false;
    const auto cert = pki::inspect_certificate(p.certificate);
    if (cert.identities.size() != 1 || cert.identities[0].host_id != host_id || revoked(cert.serial))
      return false;
    if (!pki::verify_signature(p.certificate, security::placement_statement(host_id, p.parent, p.at),
                               p.signature))
      return false;
  } catch (const Error&) {
    return false;
  }
  std::shared_lock lock(mutex_);
  const auto it = placements_.find(host_id);
  return it == placements_.end() || it->second.at <= p.at;  // never an older one
}

bool Callers::accept_placement(const std::string& host_id, const Placement& p, const std::string& ca_pem) {
  if (!valid(host_id, p, ca_pem)) return false;
  std::unique_lock lock(mutex_);
  placements_[host_id] = p;
  return true;
}

bool Callers::may_claim_moved(const std::string& relay, const Host& host, const Placement& p,
                              const std::string& ca_pem, Store& store) {
  if (p.parent != host.parent) return false;
  if (host.parent != relay) {
    const auto parent = store.find_host(host.parent);
    if (!parent || parent->via != relay) return false;
  }
  return accept_placement(host.host_id, p, ca_pem);
}

std::optional<Placement> Callers::placement_of(const std::string& host_id) const {
  std::shared_lock lock(mutex_);
  const auto it = placements_.find(host_id);
  if (it == placements_.end()) return std::nullopt;
  return it->second;
}

void Callers::set_revoked(const std::vector<std::uint64_t>& serials) {
  std::unique_lock lock(mutex_);
  revoked_ = {serials.begin(), serials.end()};
}

void Callers::revoke(std::uint64_t serial) {
  std::unique_lock lock(mutex_);
  revoked_.insert(serial);
}

std::size_t Callers::revoked_count() const {
  std::shared_lock lock(mutex_);
  return revoked_.size();
}

std::vector<std::uint64_t> Callers::revoked_list() const {
  std::shared_lock lock(mutex_);
  std::vector<std::uint64_t> out(revoked_.begin(), revoked_.end());
  std::sort(out.begin(), out.end());
  return out;
}

bool Callers::revoked(std::uint64_t serial) const {
  std::shared_lock lock(mutex_);
  return revoked_.contains(serial);
}

}  // namespace distrib::manager
