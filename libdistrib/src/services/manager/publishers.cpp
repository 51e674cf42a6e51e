// The routes of trusted publishers (publishers.h).
#include "services/manager/publishers.h"

namespace distrib::manager {

void Publishers::register_routes(Router& t) {
  t.add(Route{"GET", "/v1/publishers", Access::view, bind(this, &Publishers::list)});
  // Who may say what runs on every machine: administrators only.
  t.add(Route{"POST", "/v1/publishers", Access::administer, bind(this, &Publishers::trust), 8 * 1024});
  t.add(Route{"DELETE", "/v1/publishers/{id}", Access::administer, bind(this, &Publishers::revoke)});
  t.add(Route{"GET", "/v1/agent/publishers", Access::agent, bind(this, &Publishers::signed_set)});
}

void Publishers::require_top() const {
  if (ctx_.is_relay())
    throw Error(ErrorKind::conflict,
                "publisher keys are trusted and revoked at the top manager, not at a relay");
  if (!ctx_.pki)
    throw Error(ErrorKind::conflict,
                "the trusted publisher set is signed with the manager's order-signing key, which a manager "
                "serving plain HTTP (--insecure-http) does not have; agents can still be given keys with "
                "--publisher-key");
}

void Publishers::list(HttpRequest&&, Responder& r, const PathSegments&) {
  const auto set = ctx_.publishers.set();
  bj::array keys, revoked;
  for (const auto& k : set.keys)
    keys.push_back(
        bj::object{{"id", k.id}, {"name", k.name}, {"added", k.added}, {"public_key", k.public_pem}});
  for (const auto& id : set.revoked) revoked.emplace_back(id);
  r(json_response(200, bj::object{{"version", set.version}, {"keys", keys}, {"revoked", revoked}}));
}

// POST /v1/publishers {"name": NAME, "public_key": PEM}
void Publishers::trust(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  require_top();
  const auto body = json::parse_object(req.body);
  security::PublisherKey key{
      {}, json::get_string(body, "name"), json::get_string(body, "public_key"), fs::now_unix()};
  security::validate_publisher_name(key.name);
  key.id = security::publisher_key_id(key.public_pem);
  const auto set = ctx_.publishers.change(
      [&](security::PublisherSet& s) {
        if (std::find(s.revoked.begin(), s.revoked.end(), key.id) != s.revoked.end())
          throw Error(ErrorKind::conflict,
                      "publisher key " + key.id + " was revoked and is never trusted again; make a new key");
        for (const auto& k : s.keys) {
          if (k.id == key.id)
            throw Error(ErrorKind::conflict, "publisher key " + key.id + " is trusted already");
          if (k.name == key.name)
            throw Error(ErrorKind::conflict, "a trusted publisher key is named " + key.name + " already");
        }
        if (s.keys.size() >= security::kMaxPublisherKeys)
          throw Error(ErrorKind::conflict, "at most " + std::to_string(security::kMaxPublisherKeys) +
                                               " publisher keys are trusted at once; revoke one first");
        s.keys.push_back(key);
      },
      fs::read_file(ctx_.pki->signer_key), fs::read_file(ctx_.pki->signer_cert));
  spdlog::info("publisher key {} ({}) trusted: set version {}", key.id, key.name, set.version);
  r(json_response(201, bj::object{{"id", key.id}, {"name", key.name}, {"version", set.version}}));
}

void Publishers::revoke(HttpRequest&&, Responder& r, const PathSegments& p) {
  require_top();
  const auto id = p[2];
  std::string name;
  const auto set = ctx_.publishers.change(
      [&](security::PublisherSet& s) {
        const auto k = std::find_if(s.keys.begin(), s.keys.end(),
                                    [&](const auto& x) { return x.id == id || x.name == id; });
        if (k == s.keys.end())
          throw Error(ErrorKind::not_found,
                      "no trusted publisher key has id or name \"" + id.substr(0, 80) + "\"");
        if (s.revoked.size() >= security::kMaxRevokedPublishers)
          throw Error(ErrorKind::conflict, "the list of revoked publisher keys is full");
        name = k->name;
        s.revoked.push_back(k->id);
        s.keys.erase(k);
      },
      fs::read_file(ctx_.pki->signer_key), fs::read_file(ctx_.pki->signer_cert));
  spdlog::warn("publisher key {} revoked: set version {}", name, set.version);
  r(json_response(200,
                  bj::object{{"revoked", set.revoked.back()}, {"name", name}, {"version", set.version}}));
}

void Publishers::signed_set(HttpRequest&&, Responder& r, const PathSegments&) {
  auto text = ctx_.publishers.signed_text();
  if (text.empty()) throw Error(ErrorKind::not_found, "no publisher key is trusted in this tree");
  r(json_response(200, bj::object{{"signed", std::move(text)}}));
}

void Publishers::check_upload(const Context& ctx, const Manifest& m) {
  const auto set = ctx.publishers.set();
  try {
    security::check_publisher(m, set.keys, set.revoked, false);
  } catch (const Error& e) {
    throw Error(ErrorKind::invalid_argument, e.what());
  }
}

}  // namespace distrib::manager
