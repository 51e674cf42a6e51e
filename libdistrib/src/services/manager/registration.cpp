// Hosts placing themselves in the tree: registration, conflicts, join policies at registration, approval, the
// host list and host keys.
#include "services/manager/registration.h"

#include "services/manager/dispatch.h"
#include "services/manager/uplink.h"

namespace distrib::manager {

void Registration::register_routes(Router& t) {
  t.add(Route{"POST", "/v1/agent/register", Access::agent, bind(this, &Registration::agent_register)});
  t.add(Route{"GET", "/v1/hosts", Access::view, bind(this, &Registration::list_hosts)});
  t.add(Route{"POST", "/v1/hosts/approve", Access::operate, bind(this, &Registration::approve_hosts)});
}

// `host` now lives elsewhere: the relay `via` it was reached through forgets it.
void Registration::release(const std::string& via, const std::string& host) {
  ctx_.work_cache.release(via, host);
  dispatch_.wake({via}, true);
}

// Registers or updates a host reached through the direct child `via`; releases it from the
// relay it was reached through before.
auto Registration::record_host(Host host, const std::string& via) -> HostChange {
  host.via = via;
  host.approved = ctx_.settings.auto_register;
  // A host registering directly may have been below another parent meanwhile: tell upward.
  const auto change = ctx_.store->upsert_host(host, via == host.host_id);
  // Back below a relay that was told to forget it: that news is stale now.
  if (via != host.host_id) ctx_.work_cache.unrelease(via, host.host_id);
  if (!change.previous_via.empty() && change.previous_via != via && change.previous_via != host.host_id) {
    spdlog::info("host {} ({}) moved from below {} to below {}", host.name, host.host_id, change.previous_via,
                 via);
    release(change.previous_via, host.host_id);
  }
  if (change.created && !ctx_.settings.auto_register)
    spdlog::warn("host {} ({}) registered and waits for approval (distribctl hosts approve {})", host.name,
                 host.host_id, host.name);
  if (change.changed || via == host.host_id) uplink_.notify_sync();
  if (change.created) join_token_group(host.host_id);
  if (change.changed) {
    apply_join_policies(host.host_id);
    report_conflicts(host);
  }
  return change;
}

// A host enrolled with a token that names an ID group joins it when it first appears here.
void Registration::join_token_group(const std::string& host_id) {
  const auto e = ctx_.store->find_enrolment(host_id);
  if (!e || e->token_id.empty()) return;
  for (const auto& t : ctx_.store->list_enrol_tokens()) {
    if (t.id != e->token_id || t.group.empty()) continue;
    try {
      auto change = ctx_.store->join_id_group(t.group, {host_id}, JoinMethod::admin);
      spdlog::info("host {} joined ID group {} with its enrolment token {} ({} standing job(s))", host_id,
                   t.group, t.id, change.entries);
      dispatch_.wake(change.vias, true);
    } catch (const Error& err) {
      spdlog::warn("host {} could not join ID group {} of its enrolment token {}: {}", host_id, t.group, t.id,
                   err.what());
    }
  }
}

// A host that now answers to a key another host answers to (name or address, by the key
// mode) makes that key ambiguous: operations by it are refused until one of them changes.
void Registration::report_conflicts(const Host& host) {
  const auto mode = ctx_.settings.key_mode;
  if (mode == HostKeyMode::host_id) return;
  std::vector<Event> found;
  const auto keys = mode == HostKeyMode::name ? std::vector<std::string>{host.name} : host.addresses;
  for (const auto& key : keys) {
    for (const auto& other : ctx_.store->hosts_with_key(mode, key)) {
      if (other.host_id == host.host_id || !host_matches(other, mode, key)) continue;
      Event e;
      e.type = "host.conflict";
      e.severity = Severity::warning;
      e.host_id = host.host_id;
      e.subject = host.name;
      e.message = "hosts " + host.name + " (" + host.host_id + ") and " + other.name + " (" + other.host_id +
                  ") both answer to " + std::string(mode == HostKeyMode::name ? "name " : "address ") + key +
                  "; jobs refuse it as a destination until one changes";
      found.push_back(std::move(e));
      spdlog::warn("{}", found.back().message);
    }
  }
  if (!found.empty()) ctx_.store->record_events(found);
}

// ID groups whose join policy the host matches take it in (evaluated at registration, when a
// host's name or addresses change, at approval and when a group is created).
void Registration::apply_join_policies(const std::string& host_id) {
  auto host = ctx_.store->find_host(host_id);
  if (!host || !host->approved) return;
  std::vector<std::string> member_of;
  bool loaded = false;
  for (const auto& g : ctx_.store->list_id_groups()) {
    if (g.policy.empty() || !policy_matches(g.policy, *host)) continue;
    if (!loaded) {
      member_of = ctx_.store->id_groups_of(host_id);
      loaded = true;
    }
    if (std::find(member_of.begin(), member_of.end(), g.name) != member_of.end()) continue;
    auto change = ctx_.store->join_id_group(g.name, {host_id}, JoinMethod::policy);
    spdlog::info("host {} joined ID group {} by its join policy ({} standing job(s))", host->name, g.name,
                 change.entries);
    dispatch_.wake(change.vias, true);
  }
}

void Registration::agent_register(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  Host host = json::host_from_json(body);
  validate_host_fields(host);
  // A host registers itself, over its own certificate, in the role it enrolled in.
  ctx_.callers.require_self(req, host.host_id);
  // Its signed placement here lets the relays above report it should it have moved.
  if (auto it = body.find("proof"); ctx_.callers.enabled() && it != body.end() && it->value().is_object()) {
    const auto p = placement_from_json(it->value().as_object());
    if (p.parent != ctx_.my_id || !ctx_.callers.accept_placement(host.host_id, p, ctx_.client_ca_pem()))
      throw Error(ErrorKind::forbidden, "the placement proof of host " + host.host_id + " does not hold");
  }
  if (const auto caller = ctx_.callers.of(req); caller && caller->role != to_string(host.role))
    throw Error(ErrorKind::forbidden, "host " + host.host_id + " enrolled as " + caller->role +
                                          " and cannot register as " + std::string(to_string(host.role)));
  if (host.host_id == ctx_.my_id)
    throw Error(ErrorKind::conflict,
                "host " + host.host_id + " is this manager itself: a relay cannot be its own parent");
  {
    const auto up = ctx_.path();
    if (std::find(up.begin(), up.end(), host.host_id) != up.end())
      throw Error(
          ErrorKind::conflict,
          "host " + host.host_id + " is above this manager in the tree: registering here would make a loop");
  }
  host.parent.clear();  // directly under this manager
  // The address the manager sees comes first; it is what operators mostly know.
  if (!req.remote_address.empty()) {
    std::erase(host.addresses, req.remote_address);
    host.addresses.insert(host.addresses.begin(), req.remote_address);
  }
  host.last_seen = fs::now_unix();
  return ctx_.blocking(std::move(r), [this, host] {
    const auto change = record_host(host, host.host_id);
    dispatch_.note_contact(host.host_id);
    spdlog::info("{} {} ({}) registered from {}", to_string(host.role), host.name, host.host_id,
                 host.addresses.empty() ? "?" : host.addresses.front());
    bj::array up;
    for (const auto& h : ctx_.path()) up.emplace_back(h);
    return json_response(200, bj::object{{"host_id", host.host_id},
                                         {"server_id", ctx_.my_id},
                                         {"path", std::move(up)},
                                         {"approved", change.created ? ctx_.settings.auto_register : true},
                                         {"poll_timeout_seconds", ctx_.settings.poll_timeout_seconds},
                                         {"key_mode", std::string(to_string(ctx_.settings.key_mode))}});
  });
}

void Registration::approve_hosts(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto keys = json::get_string_array(json::parse_object(req.body), "hosts");
  if (keys.empty()) throw Error(ErrorKind::invalid_argument, "name at least one host to approve");
  return ctx_.blocking(std::move(r), [this, keys] {
    auto all = ctx_.store->list_hosts();
    std::vector<std::string> ids, unknown;
    for (const auto& k : keys) {
      bool found = false;
      for (const auto& h : all)
        if (h.host_id == k || host_matches(h, ctx_.settings.key_mode, k)) {
          ids.push_back(h.host_id);
          found = true;
        }
      if (!found) unknown.push_back(k);
    }
    if (!unknown.empty()) {
      std::string list;
      for (const auto& u : unknown) list += (list.empty() ? "" : ", ") + u;
      throw Error(ErrorKind::not_found, "no host answers to " + list + "; nothing was approved");
    }
    const int n = ctx_.store->approve_hosts(ids);
    spdlog::info("{} host(s) approved", n);
    for (const auto& id : ids) apply_join_policies(id);
    return json_response(200, bj::object{{"approved", n}});
  });
}

void Registration::list_hosts(HttpRequest&&, Responder& r, const PathSegments&) {
  ctx_.blocking(std::move(r), [this] {
    auto hosts = ctx_.store->list_hosts();
    const auto contacts = ctx_.work_cache.last_contacts();
    for (auto& h : hosts)
      if (auto it = contacts.find(h.host_id); it != contacts.end())
        h.last_seen = std::max(h.last_seen, it->second);
    bj::array arr;
    const auto now = fs::now_unix();
    const auto window = 2 * ctx_.settings.poll_timeout_seconds + 15;
    for (const auto& h : hosts) {
      auto o = json::to_json(h);
      o["online"] = now - h.last_seen <= window;
      arr.push_back(std::move(o));
    }
    bj::array dups;
    for (auto& d : duplicate_keys(hosts, ctx_.settings.key_mode)) dups.emplace_back(d);
    return json_response(200,
                         bj::object{{"hosts", std::move(arr)},
                                    {"manager", bj::object{{"host_id", ctx_.my_id}, {"role", ctx_.role()}}},
                                    {"key_mode", std::string(to_string(ctx_.settings.key_mode))},
                                    {"duplicate_keys", std::move(dups)}});
  });
}

// Host ids for keys by the manager's key mode (or host ids); throws naming every unknown key.
auto Registration::resolve_host_keys(const std::vector<std::string>& keys, const std::string& what)
    -> std::vector<std::string> {
  return resolve_host_keys(keys, what, ctx_.store->list_hosts());
}

auto Registration::resolve_host_keys(const std::vector<std::string>& keys, const std::string& what,
                                     const std::vector<Host>& all) -> std::vector<std::string> {
  std::vector<std::string> ids, unknown;
  for (const auto& k : keys) {
    std::vector<std::string> found;
    for (const auto& h : all)
      if (h.host_id == k || host_matches(h, ctx_.settings.key_mode, k)) found.push_back(h.host_id);
    if (found.empty())
      unknown.push_back(k);
    else if (found.size() > 1)
      throw Error(ErrorKind::invalid_argument,
                  "\"" + k + "\" is claimed by several hosts; name it by host id; " + what);
    else
      ids.push_back(found.front());
  }
  if (!unknown.empty())
    throw Error(ErrorKind::not_found, "no host answers to " + join_list(unknown) + "; " + what);
  return ids;
}

// Is `host` somewhere below `ancestor` (following parents, guarding against cycles)?
bool is_below(const std::map<std::string, const Host*>& by_id, const Host& host,
              const std::string& ancestor) {
  std::set<std::string> seen{host.host_id};
  for (std::string at = host.parent; !at.empty() && seen.insert(at).second;) {
    if (at == ancestor) return true;
    auto it = by_id.find(at);
    if (it == by_id.end()) return false;
    at = it->second->parent;
  }
  return false;
}

}  // namespace distrib::manager
