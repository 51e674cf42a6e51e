// Enrolment of hosts, their certificates, and enrolment tokens (enrolment.h).
#include "services/manager/enrolment.h"

#include <distrib/model/event.h>
#include <distrib/model/group.h>
#include <distrib/model/host.h>

#include "security/enrolment.h"
#include "services/observe.h"

namespace distrib::manager {

void Enrolments::register_routes(Router& t) {
  // Anyone may ask; only an administrator's decision or a valid token makes it count.
  t.add(Route{"GET", "/v1/ca", Access::open, bind(this, &Enrolments::ca)});
  t.add(Route{"POST", "/v1/agent/enrol", Access::open, bind(this, &Enrolments::enrol), 64 * 1024});
  t.add(Route{"POST", "/v1/agent/renew", Access::agent, bind(this, &Enrolments::renew), 64 * 1024});
  t.add(Route{"GET", "/v1/enrolments", Access::view, bind(this, &Enrolments::list)});
  t.add(Route{"POST", "/v1/enrolments/{host}/accept", Access::operate, bind(this, &Enrolments::decide)});
  t.add(Route{"POST", "/v1/enrolments/{host}/reject", Access::operate, bind(this, &Enrolments::decide)});
  t.add(Route{"POST", "/v1/enrolments/{host}/revoke", Access::administer, bind(this, &Enrolments::revoke)});
  t.add(Route{"GET", "/v1/relay/revoked", Access::relay, bind(this, &Enrolments::revoked)});
  // Tokens let hosts in without an operator's approval: administrators only.
  t.add(Route{"POST", "/v1/enrol-tokens", Access::administer, bind(this, &Enrolments::token_create)});
  t.add(Route{"GET", "/v1/enrol-tokens", Access::administer, bind(this, &Enrolments::token_list)});
  t.add(Route{"DELETE", "/v1/enrol-tokens/{id}", Access::administer, bind(this, &Enrolments::token_revoke)});
  t.add(Route{"POST", "/v1/enrol-bundle", Access::administer, bind(this, &Enrolments::bundle)});
}

namespace {

bj::object token_json(const EnrolToken& t) {
  return bj::object{{"id", t.id},
                    {"created_at", t.created_at},
                    {"expires_at", t.expires_at},
                    {"uses_left", t.uses_left},
                    {"group", t.group},
                    {"created_by", t.created_by},
                    {"revoked", t.revoked}};
}

bj::object enrolment_json(const Enrolment& e) {
  return bj::object{{"host_id", e.host_id},
                    {"name", e.name},
                    {"role", e.role},
                    {"address", e.address},
                    {"via", e.via},
                    {"fingerprint", e.fingerprint},
                    {"state", std::string(to_string(e.state))},
                    {"serial", std::to_string(e.serial)},
                    {"not_after", e.not_after},
                    {"requested_at", e.requested_at},
                    {"decided_at", e.decided_at},
                    {"decided_by", e.decided_by},
                    {"token_id", e.token_id}};
}

std::string checked_host(const std::string& text) {
  if (!is_valid_host_id(text))
    throw Error(ErrorKind::invalid_argument, "\"" + text.substr(0, 64) + "\" is not a host id");
  return text;
}

std::string bounded(const bj::object& o, std::string_view key, std::size_t limit, bool required) {
  auto v = json::get_string(o, key, required);
  if (v.size() > limit)
    throw Error(ErrorKind::invalid_argument,
                std::string(key) + " is longer than " + std::to_string(limit) + " bytes");
  return v;
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find(sep, start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// The certificate an enrolment now holds, with its serial and expiry.
void take_certificate(Enrolment& e, std::string pem) {
  const auto cert = pki::inspect_certificate(pem);
  e.certificate_pem = std::move(pem);
  e.serial = cert.serial;
  e.not_after = cert.not_after;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : ",") + x;
  return out;
}

}  // namespace

void Enrolments::ca(HttpRequest&&, Responder& r, const PathSegments&) {
  const auto pem = ctx_.client_ca_pem();
  r(json_response(
      200, bj::object{{"ca_certificate", pem}, {"fingerprint", pki::inspect_certificate(pem).fingerprint}}));
}

void Enrolments::record_event(const char* type, Severity severity, const Enrolment& e, std::string message) {
  Event ev;
  ev.type = type;
  ev.severity = severity;
  ev.host_id = e.host_id;
  ev.subject = e.name;
  ev.message = std::move(message);
  if (severity == Severity::info)
    spdlog::info("{}", ev.message);
  else
    spdlog::warn("{}", ev.message);
  ctx_.store->record_events({ev});
}

std::string Enrolments::issue(const std::string& request_pem) const {
  return pki::issue_host(security::load_authority(*ctx_.pki), request_pem,
                         ctx_.settings.certificate_lifetime_seconds, security::random_serial());
}

HttpResponse Enrolments::issued(const Enrolment& e) const {
  return json_response(200, bj::object{{"state", "accepted"},
                                       {"host_id", e.host_id},
                                       {"certificate", e.certificate_pem},
                                       {"ca_certificate", ctx_.client_ca_pem()}});
}

// POST /v1/agent/enrol {"request": CSR, "name": NAME, "token": TOKEN} (and, from a relay passing
// it up, "via": [relays nearer the host first], "address": where the host asked from)
void Enrolments::enrol(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  const auto body = json::parse_object(req.body);
  Enrolment e;
  e.request_pem = bounded(body, "request", kMaxRequest, true);
  e.name = bounded(body, "name", kMaxName, false);
  const auto token = bounded(body, "token", 256, false);
  const auto info = pki::inspect_request(e.request_pem);
  e.host_id = info.identity.host_id;
  e.role = info.identity.role;
  e.fingerprint = info.fingerprint;
  e.address = req.remote_address;
  // A relay passing a request up names the relays it came through; nobody else may.
  std::vector<std::string> via;
  if (body.contains("via")) {
    const auto caller = ctx_.callers.of(req);
    if (ctx_.callers.enabled() && (!caller || caller->role != "relay"))
      throw Error(ErrorKind::forbidden, "only a relay passes enrolments on (\"via\")");
    for (const auto& v : json::get_string_array(body, "via")) via.push_back(checked_host(v));
    if (via.size() >= kMaxVia)
      throw Error(ErrorKind::invalid_argument, "an enrolment passed too many relays");
    if (caller) via.push_back(caller->host_id);
    e.address = bounded(body, "address", 64, false);
  }
  e.via = joined(via);
  return ctx_.blocking(std::move(r), [this, e = std::move(e), token, body]() mutable {
    return ctx_.pki ? enrol_here(std::move(e), token) : pass_enrolment_up(std::move(e), body);
  });
}

HttpResponse Enrolments::enrol_here(Enrolment e, const std::string& token) {
  const bool known = ctx_.store->find_enrolment(e.host_id).has_value();
  auto stored = ctx_.store->request_enrolment(e);
  switch (stored.state) {
    case EnrolmentState::accepted:
      return issued(stored);
    case EnrolmentState::rejected:
      throw Error(ErrorKind::forbidden, "the enrolment of host " + e.host_id + " was rejected");
    case EnrolmentState::revoked:
      throw Error(ErrorKind::forbidden, "the certificate of host " + e.host_id + " is revoked");
    case EnrolmentState::pending:
      break;
  }
  std::string message;
  if (!token.empty()) {
    std::optional<EnrolToken> used;
    try {
      used = ctx_.store->use_enrol_token(security::parse_enrol_token(token).secret_hash, fs::now_unix());
    } catch (const Error&) {
    }
    if (used) {
      stored.state = EnrolmentState::accepted;
      take_certificate(stored, issue(stored.request_pem));
      stored.decided_at = fs::now_unix();
      stored.token_id = used->id;
      if (ctx_.store->decide_enrolment(stored)) {
        record_event("host.enrolled", Severity::info, stored,
                     stored.role + " " + stored.name + " (" + stored.host_id + ") enrolled with token " +
                         used->id + (stored.via.empty() ? "" : " through " + stored.via));
        return issued(stored);
      }
    }
    message = "the enrolment token is not valid (unknown, expired, used up or revoked)";
  }
  if (!known)
    record_event("host.enrol_requested", Severity::info, stored,
                 stored.role + " " + stored.name + " (" + stored.host_id + ", key " + stored.fingerprint +
                     ") asks to enrol; distribctl hosts accept " + stored.host_id);
  bj::object out{{"state", "pending"}, {"host_id", stored.host_id}, {"fingerprint", stored.fingerprint}};
  if (!message.empty()) out["message"] = message;
  return json_response(202, out);
}

// At a relay: the parent decides; the outcome is recorded here too, so that this relay knows
// which hosts enrolled through it.
HttpResponse Enrolments::pass_enrolment_up(Enrolment e, const bj::object& body) {
  bj::object up{{"request", e.request_pem}, {"name", e.name}, {"address", e.address}};
  if (body.contains("token")) up["token"] = body.at("token");
  bj::array via;
  for (const auto& v : split(e.via, ',')) via.emplace_back(v);
  up["via"] = std::move(via);  // the parent adds this relay: it knows it by its certificate
  auto answer = uplink_.ask_parent("POST", "/v1/agent/enrol", up, 30);
  const auto state = json::get_string(answer, "state", false);
  if (state != "accepted") return json_response(202, answer);
  ctx_.store->request_enrolment(e);
  auto decided = e;
  decided.state = EnrolmentState::accepted;
  take_certificate(decided, json::get_string(answer, "certificate"));
  decided.decided_at = fs::now_unix();
  decided.decided_by = "the parent";
  if (!ctx_.store->decide_enrolment(decided))
    ctx_.store->renew_certificate(e.host_id, e.fingerprint, e.request_pem, decided.certificate_pem,
                                  decided.serial, decided.not_after);
  return json_response(200, answer);
}

// POST /v1/agent/renew {"request": CSR} over the host's current certificate.
void Enrolments::renew(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  const auto body = json::parse_object(req.body);
  const auto csr = bounded(body, "request", kMaxRequest, true);
  const auto info = pki::inspect_request(csr);
  const auto caller = ctx_.callers.of(req);
  if (!caller) throw Error(ErrorKind::unauthorized, "a renewal comes over the certificate it renews");
  const bool own = caller->host_id == info.identity.host_id && caller->role == info.identity.role;
  return ctx_.blocking(std::move(r), [this, req = std::move(req), csr, info, own] {
    if (!own) ctx_.callers.require_for(req, info.identity.host_id, *ctx_.store);
    const auto e = ctx_.store->find_enrolment(info.identity.host_id);
    if (!e || e->state != EnrolmentState::accepted || e->role != info.identity.role)
      throw Error(ErrorKind::forbidden,
                  "host " + info.identity.host_id + " is not enrolled as " + info.identity.role);
    std::string cert_pem;
    if (ctx_.pki) {
      cert_pem = issue(csr);
    } else {
      cert_pem = json::get_string(
          uplink_.ask_parent("POST", "/v1/agent/renew", bj::object{{"request", csr}}, 30), "certificate");
    }
    const auto cert = pki::inspect_certificate(cert_pem);
    ctx_.store->renew_certificate(e->host_id, info.fingerprint, csr, cert_pem, cert.serial, cert.not_after);
    spdlog::info("certificate of {} {} renewed (valid until {})", e->role, e->host_id, cert.not_after);
    return json_response(
        200, bj::object{
                 {"state", "accepted"}, {"certificate", cert_pem}, {"ca_certificate", ctx_.client_ca_pem()}});
  });
}

// GET /v1/enrolments?state=pending
void Enrolments::list(HttpRequest&& req, Responder& r, const PathSegments&) {
  std::optional<EnrolmentState> state;
  if (auto it = req.query.find("state"); it != req.query.end() && !it->second.empty())
    state = parse_enrolment_state(it->second);
  return ctx_.blocking(std::move(r), [this, state] {
    bj::array arr;
    for (const auto& e : ctx_.store->list_enrolments(state)) arr.push_back(enrolment_json(e));
    return json_response(200, bj::object{{"enrolments", std::move(arr)}});
  });
}

// POST /v1/enrolments/HOST/accept|reject {"fingerprint": "sha256:..." (optional: the key the
// administrator compared)}
void Enrolments::decide(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto host = checked_host(p[2]);
  const bool accept = p[3] == "accept";
  std::string fingerprint;
  if (!req.body.empty()) fingerprint = bounded(json::parse_object(req.body), "fingerprint", 100, false);
  const auto who = audit_actor(req);
  return ctx_.blocking(std::move(r), [this, host, accept, fingerprint, who] {
    if (!ctx_.pki)
      throw Error(ErrorKind::invalid_argument,
                  "a relay does not decide enrolments; accept or reject on the top manager");
    auto e = ctx_.store->find_enrolment(host);
    if (!e)
      throw Error(ErrorKind::not_found,
                  "no enrolment request from host " + host + " (distribctl hosts pending)");
    if (e->state != EnrolmentState::pending)
      throw Error(ErrorKind::conflict, "the enrolment of host " + host + " is " +
                                           std::string(to_string(e->state)) + ", not pending");
    if (!fingerprint.empty() && fingerprint != e->fingerprint)
      throw Error(ErrorKind::conflict, "host " + host + " now asks with key " + e->fingerprint + ", not " +
                                           fingerprint + "; compare again");
    e->state = accept ? EnrolmentState::accepted : EnrolmentState::rejected;
    if (accept) {
      take_certificate(*e, issue(e->request_pem));
    }
    e->decided_at = fs::now_unix();
    e->decided_by = who;
    if (!ctx_.store->decide_enrolment(*e))
      throw Error(ErrorKind::conflict, "the enrolment of host " + host + " changed meanwhile; look again");
    record_event(
        accept ? "host.enrolled" : "host.rejected", accept ? Severity::info : Severity::warning, *e,
        e->role + " " + e->name + " (" + host + ") " + (accept ? "accepted" : "rejected") + " by " + who);
    return json_response(200, enrolment_json(*e));
  });
}

// GET /v1/relay/revoked: the serials of every revoked certificate, for a relay's copy.
void Enrolments::revoked(HttpRequest&&, Responder& r, const PathSegments&) {
  bj::array serials;
  for (const auto s : ctx_.callers.revoked_list()) serials.emplace_back(std::to_string(s));
  r(json_response(200, bj::object{{"serials", std::move(serials)}}));
}

// POST /v1/enrolments/HOST/revoke
void Enrolments::revoke(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto host = checked_host(p[2]);
  const auto who = audit_actor(req);
  return ctx_.blocking(std::move(r), [this, host, who] {
    if (!ctx_.pki)
      throw Error(ErrorKind::invalid_argument,
                  "a relay does not revoke certificates; revoke on the top manager");
    const auto e = ctx_.store->find_enrolment(host);
    if (!e || e->state != EnrolmentState::accepted)
      throw Error(ErrorKind::conflict,
                  "host " + host + " holds no certificate to revoke" +
                      (e ? " (its enrolment is " + std::string(to_string(e->state)) + ")" : ""));
    if (!ctx_.store->revoke_enrolment(host, fs::now_unix(), who))
      throw Error(ErrorKind::conflict, "the enrolment of host " + host + " changed meanwhile; look again");
    ctx_.callers.revoke(e->serial);
    dispatch_.wake_relays();  // they fetch the list at once
    record_event("host.revoked", Severity::warning, *e,
                 e->role + " " + e->name + " (" + host + "): certificate " + std::to_string(e->serial) +
                     " revoked by " + who);
    auto out = enrolment_json(*e);
    out["state"] = "revoked";
    return json_response(200, out);
  });
}

// POST /v1/enrol-bundle {"servers": [URL...], "token": TOKEN (optional)} → {"bundle": TEXT}
void Enrolments::bundle(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  const auto body = json::parse_object(req.body);
  security::EnrolBundle b;
  b.servers = json::get_string_array(body, "servers");
  if (b.servers.empty() || b.servers.size() > 16)
    throw Error(ErrorKind::invalid_argument, "a bundle names 1 to 16 servers");
  for (const auto& s : b.servers)
    if (s.size() > 512) throw Error(ErrorKind::invalid_argument, "a server URL is at most 512 bytes");
  b.token = bounded(body, "token", 256, false);
  if (!b.token.empty()) security::parse_enrol_token(b.token);
  if (ctx_.client_ca_file.empty() || !std::filesystem::exists(ctx_.client_ca_file))
    throw Error(ErrorKind::unavailable, "this server does not know its CA yet (a relay not yet enrolled)");
  b.ca_certificate = ctx_.client_ca_pem();
  b.publishers = ctx_.publishers.signed_text();
  const auto text = security::write_bundle(b);
  security::read_bundle(text);  // the same checks a host makes (https servers)
  r(json_response(200,
                  bj::object{{"bundle", text},
                             {"ca_fingerprint", pki::inspect_certificate(b.ca_certificate).fingerprint}}));
}

// POST /v1/enrol-tokens {"expires_in_seconds": N, "uses": N|-1, "group": NAME}
void Enrolments::token_create(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  const auto body = json::parse_object(req.body);
  const auto lifetime = json::get_int(body, "expires_in_seconds", 86400);
  if (lifetime < kMinLifetime || lifetime > kMaxLifetime)
    throw Error(
        ErrorKind::invalid_argument,
        "a token lives from 60 seconds to 365 days (expires_in_seconds), not " + std::to_string(lifetime));
  const auto uses = json::get_int(body, "uses", 1);
  if (uses != -1 && (uses < 1 || uses > kMaxUses))
    throw Error(ErrorKind::invalid_argument, "uses is -1 (any number) or from 1 to " +
                                                 std::to_string(kMaxUses) + ", not " + std::to_string(uses));
  const auto group = json::get_string(body, "group", false);
  if (!group.empty()) validate_group_name(group, "ID group");
  const auto who = audit_actor(req) + " from " + req.remote_address;
  return ctx_.blocking(std::move(r), [this, lifetime, uses, group, who] {
    if (!group.empty() && !ctx_.store->find_id_group(group))
      throw Error(ErrorKind::not_found,
                  "ID group \"" + group + "\" does not exist here; no token was created");
    const auto made = security::make_enrol_token();
    EnrolToken t;
    t.id = made.id;
    t.secret_hash = made.secret_hash;
    t.created_at = fs::now_unix();
    t.expires_at = t.created_at + lifetime;
    t.uses_left = static_cast<int>(uses);
    t.group = group;
    t.created_by = who;
    ctx_.store->create_enrol_token(t);
    spdlog::info("enrolment token {} created by {} ({} use(s), expires in {} s{})", t.id, who,
                 uses < 0 ? std::string("any number of") : std::to_string(uses), lifetime,
                 group.empty() ? "" : ", joins ID group " + group);
    auto out = token_json(t);
    out["token"] = made.text;  // shown once: only its hash is kept
    return json_response(201, out);
  });
}

void Enrolments::token_list(HttpRequest&&, Responder& r, const PathSegments&) {
  return ctx_.blocking(std::move(r), [this] {
    bj::array arr;
    for (const auto& t : ctx_.store->list_enrol_tokens()) arr.push_back(token_json(t));
    return json_response(200, bj::object{{"tokens", std::move(arr)}});
  });
}

void Enrolments::token_revoke(HttpRequest&&, Responder& r, const PathSegments& p) {
  const auto id = p[2];
  if (id.empty() || id.size() > 64)
    throw Error(ErrorKind::invalid_argument, "\"" + id.substr(0, 64) + "\" is not a token id");
  return ctx_.blocking(std::move(r), [this, id] {
    if (!ctx_.store->revoke_enrol_token(id)) {
      for (const auto& t : ctx_.store->list_enrol_tokens())
        if (t.id == id) throw Error(ErrorKind::conflict, "enrolment token " + id + " was revoked already");
      throw Error(ErrorKind::not_found,
                  "enrolment token " + id + " does not exist (distribctl enrol-token list)");
    }
    spdlog::info("enrolment token {} revoked", id);
    return json_response(200, bj::object{{"revoked", id}});
  });
}

}  // namespace distrib::manager
