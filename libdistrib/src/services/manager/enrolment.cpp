// Enrolment: tokens for hosts to enrol with (enrolment.h).
#include "services/manager/enrolment.h"

#include <distrib/model/enrolment.h>
#include <distrib/model/group.h>

#include "security/enrolment.h"
#include "services/observe.h"

namespace distrib::manager {

void Enrolments::register_routes(Router& t) {
  // Tokens let hosts in without an operator's approval: administrators only.
  t.add(Route{"POST", "/v1/enrol-tokens", Access::administer, bind(this, &Enrolments::token_create)});
  t.add(Route{"GET", "/v1/enrol-tokens", Access::administer, bind(this, &Enrolments::token_list)});
  t.add(Route{"DELETE", "/v1/enrol-tokens/{id}", Access::administer, bind(this, &Enrolments::token_revoke)});
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
}  // namespace

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
