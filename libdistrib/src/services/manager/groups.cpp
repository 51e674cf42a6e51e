// Host groups and ID groups: joins asked by hosts (forwarded up to the owning server), the admin routes of
// both kinds of group.
#include "services/manager/groups.h"

#include "services/manager/dispatch.h"
#include "services/manager/inventory.h"
#include "services/manager/registration.h"
#include "services/manager/uplink.h"

namespace distrib::manager {

void Groups::register_routes(Router& t) {
  t.add(Route{"POST", "/v1/agent/join", Access::agent, bind(this, &Groups::agent_join)});
  t.add(Route{"GET", "/v1/groups", Access::view, bind(this, &Groups::group_list)});
  t.add(Route{"POST", "/v1/groups", Access::operate, bind(this, &Groups::group_create)});
  t.add(Route{"GET", "/v1/groups/{name}", Access::view, bind(this, &Groups::group_show)});
  t.add(Route{"DELETE", "/v1/groups/{name}", Access::operate, bind(this, &Groups::group_delete)});
  t.add(Route{"POST", "/v1/groups/{name}/members", Access::operate, bind(this, &Groups::group_members)});
  t.add(Route{"GET", "/v1/id-groups", Access::view, bind(this, &Groups::id_group_list)});
  t.add(Route{"POST", "/v1/id-groups", Access::operate, bind(this, &Groups::id_group_create)});
  t.add(Route{"GET", "/v1/id-groups/{name}", Access::view, bind(this, &Groups::id_group_show)});
  t.add(Route{"DELETE", "/v1/id-groups/{name}", Access::operate, bind(this, &Groups::id_group_delete)});
  t.add(
      Route{"POST", "/v1/id-groups/{name}/members", Access::operate, bind(this, &Groups::id_group_members)});
}

namespace {
// {"add": [keys], "remove": [keys]} of a members request; at least one host.
std::pair<std::vector<std::string>, std::vector<std::string>> member_change(const HttpRequest& req) {
  require_json(req);
  auto body = json::parse_object(req.body);
  auto add = optional_strings(body, "add");
  auto remove = optional_strings(body, "remove");
  if (add.empty() && remove.empty())
    throw Error(ErrorKind::invalid_argument, "name hosts to \"add\" or \"remove\"");
  return {std::move(add), std::move(remove)};
}
}  // namespace

void Groups::agent_join(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  JoinRequest j;
  j.host_id = json::get_string(body, "host_id");
  if (!is_valid_host_id(j.host_id)) throw Error(ErrorKind::invalid_argument, "host_id must be a host UUID");
  j.group = json::get_string(body, "group");
  validate_group_name(j.group, "ID group");
  j.password = json::get_string(body, "password", false);
  j.leave = json::get_bool(body, "leave");
  const auto how = json::get_string(body, "how", false);
  j.how = parse_join_method(how.empty() ? "command" : how);
  if (j.how == JoinMethod::admin || j.how == JoinMethod::policy)
    throw Error(ErrorKind::invalid_argument, "an agent joins by \"config\" or \"command\"");
  j.relay = json::get_string(body, "relay", false);
  if (!j.relay.empty()) {
    if (!is_valid_host_id(j.relay)) throw Error(ErrorKind::invalid_argument, "relay must be a host UUID");
    if (auto it = body.find("host"); it != body.end() && it->value().is_object())
      j.record = json::host_from_json(it->value().as_object());
  }
  // A host joins for itself; a relay passes on joins of hosts below it, naming itself.
  const auto caller = ctx_.callers.of(req);
  if (ctx_.callers.enabled() && caller && caller->host_id != j.host_id) {
    if (caller->role != "relay" || j.relay != caller->host_id)
      throw Error(ErrorKind::forbidden,
                  "host " + caller->host_id + " may not join or leave for host " + j.host_id);
  } else if (!j.relay.empty()) {
    ctx_.callers.require_self(req, j.relay);
  }
  return ctx_.blocking(std::move(r), [this, j] { return json_response(200, join(j)); });
}

auto Groups::join(const JoinRequest& j) -> bj::object {
  if (!j.relay.empty()) {
    auto relay = ctx_.store->find_host(j.relay);
    if (!relay || relay->role != HostRole::relay || relay->via != j.relay)
      throw Error(ErrorKind::forbidden,
                  "host " + j.relay + " is not a relay registered directly with this manager");
    auto known = ctx_.store->find_host(j.host_id);
    if (!known && !ctx_.callers.may_claim(j.relay, j.host_id, *ctx_.store))
      throw Error(ErrorKind::forbidden, "host " + j.host_id + " did not enrol through relay " + relay->name);
    if (!known && j.record && j.record->host_id == j.host_id && is_valid_host_id(j.record->parent))
      registration_.record_host(*j.record, j.relay);  // its registration has not arrived yet
    else if (known && known->via != j.relay)
      throw Error(ErrorKind::forbidden, "host " + j.host_id + " is not below relay " + relay->name);
  }
  auto host = ctx_.store->find_host(j.host_id);
  if (!host)
    throw Error(ErrorKind::not_found,
                "host " + j.host_id + " is not registered here; it must register first");
  auto group = ctx_.store->find_id_group(j.group);
  if (!group) {
    if (!uplink_.has_parent())
      throw Error(
          ErrorKind::not_found,
          "no ID group \"" + j.group +
              "\" at this manager or the relays on the way to it (create it with distribctl idgroup create)");
    // Owned above: the parent decides (and keeps the membership).
    Host up = *host;
    if (up.parent.empty()) up.parent = ctx_.my_id;
    bj::object body{{"host_id", j.host_id},
                    {"group", j.group},
                    {"password", j.password},
                    {"leave", j.leave},
                    {"how", std::string(to_string(j.how))},
                    {"relay", ctx_.my_id},
                    {"host", json::to_json(up)}};
    return uplink_.ask_parent("POST", "/v1/agent/join", body, 30);
  }
  if (j.leave) {
    auto change = ctx_.store->leave_id_group(j.group, {j.host_id});
    dispatch_.wake(change.vias, true);
    if (change.changed) spdlog::info("host {} left ID group {}", host->name, j.group);
    return bj::object{{"group", j.group},
                      {"owner", ctx_.my_id},
                      {"left", change.changed > 0},
                      {"cancelled", change.entries}};
  }
  if (group->has_password() && !check_join_password(j.password, group->password_hash))
    throw Error(ErrorKind::forbidden,
                j.password.empty()
                    ? "ID group \"" + j.group + "\" needs a password to join; the host did not join"
                    : "wrong password for ID group \"" + j.group + "\"; the host did not join");
  auto change = ctx_.store->join_id_group(j.group, {j.host_id}, j.how);
  dispatch_.wake(change.vias, true);
  if (change.changed)
    spdlog::info("host {} joined ID group {} ({}; {} standing job(s) to receive)", host->name, j.group,
                 to_string(j.how), change.entries);
  return bj::object{
      {"group", j.group}, {"owner", ctx_.my_id}, {"joined", change.changed > 0}, {"entries", change.entries}};
}

auto Groups::host_refs(const std::vector<std::string>& ids) -> bj::array {
  std::map<std::string, std::string> names;
  for (const auto& h : ctx_.store->list_hosts()) names[h.host_id] = h.name;
  bj::array out;
  for (const auto& id : ids)
    out.push_back(bj::object{{"host_id", id}, {"name", names.count(id) ? names[id] : ""}});
  return out;
}

void Groups::delete_group(Responder& r, const char* what, const std::string& name,
                          std::function<bool()> erase) {
  ctx_.blocking(std::move(r), [what, name, erase = std::move(erase)] {
    if (!erase()) throw Error(ErrorKind::not_found, std::string(what) + " \"" + name + "\" does not exist");
    spdlog::info("{} {} deleted", what, name);
    return json_response(200, bj::object{{"deleted", name}});
  });
}

void Groups::group_list(HttpRequest&&, Responder& r, const PathSegments&) {
  return ctx_.blocking(std::move(r), [this] {
    bj::array arr;
    for (auto& g : ctx_.store->list_host_groups()) {
      if (!g.query.empty()) g.members = inventory_.hosts_matching(parse_inventory_query(g.query));
      auto o = json::to_json(g);
      o["hosts"] = host_refs(g.members);
      arr.push_back(std::move(o));
    }
    return json_response(200, bj::object{{"groups", std::move(arr)}});
  });
}

void Groups::group_create(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  HostGroup g;
  g.name = json::get_string(body, "name");
  validate_group_name(g.name, "host group");
  g.description = json::get_string(body, "description", false);
  validate_description(g.description, "a host group's");
  g.query = json::get_string(body, "query", false);
  auto keys = optional_strings(body, "hosts");
  if (!g.query.empty()) {
    if (!keys.empty())
      throw Error(ErrorKind::invalid_argument,
                  "a host group has either members or a query, not both; the host group was not created");
    g.query = to_string(parse_inventory_query(g.query));  // refused here when malformed
  }
  return ctx_.blocking(std::move(r), [this, g, keys]() mutable {
    g.members = registration_.resolve_host_keys(keys, "the host group was not created");
    ctx_.store->create_host_group(g);
    if (!g.query.empty()) g.members = inventory_.hosts_matching(parse_inventory_query(g.query));
    spdlog::info("host group {} created with {} host(s){}", g.name, g.members.size(),
                 g.query.empty() ? "" : " matching " + g.query);
    return json_response(201, json::to_json(g));
  });
}

void Groups::group_show(HttpRequest&&, Responder& r, const PathSegments& p) {
  const auto name = p[2];
  return ctx_.blocking(std::move(r), [this, name] {
    auto g = ctx_.store->find_host_group(name);
    if (!g) throw Error(ErrorKind::not_found, "host group \"" + name + "\" does not exist");
    if (!g->query.empty()) g->members = inventory_.hosts_matching(parse_inventory_query(g->query));
    auto o = json::to_json(*g);
    o["hosts"] = host_refs(g->members);
    return json_response(200, o);
  });
}

void Groups::group_delete(HttpRequest&&, Responder& r, const PathSegments& p) {
  const auto name = p[2];
  return delete_group(r, "host group", name, [this, name] { return ctx_.store->delete_host_group(name); });
}

void Groups::group_members(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto name = p[2];
  auto [add, remove] = member_change(req);
  return ctx_.blocking(std::move(r), [this, name, add, remove] {
    auto g = ctx_.store->find_host_group(name);
    if (!g) throw Error(ErrorKind::not_found, "host group \"" + name + "\" does not exist");
    if (!g->query.empty())
      throw Error(ErrorKind::conflict, "host group \"" + name + "\" is defined by the query \"" + g->query +
                                           "\"; its members follow the inventory");
    const auto a = registration_.resolve_host_keys(add, "nothing was changed");
    const auto d = registration_.resolve_host_keys(remove, "nothing was changed");
    const int n = ctx_.store->change_host_group(name, a, d);
    return json_response(200, bj::object{{"group", name}, {"changed", n}});
  });
}

void Groups::id_group_list(HttpRequest&&, Responder& r, const PathSegments&) {
  return ctx_.blocking(std::move(r), [this] {
    std::map<std::string, std::int64_t> counts;
    bj::array arr;
    for (const auto& g : ctx_.store->list_id_groups(&counts)) {
      auto o = json::to_json(g);
      o["member_count"] = counts.count(g.name) ? counts[g.name] : 0;
      o["standing_jobs"] = ctx_.store->standing_jobs(g.name).size();
      arr.push_back(std::move(o));
    }
    return json_response(200, bj::object{{"id_groups", std::move(arr)}, {"owner", ctx_.my_id}});
  });
}

void Groups::id_group_create(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  IdGroup g = json::id_group_from_json(body);
  validate_description(g.description, "an ID group's");
  validate_group_name(g.name, "ID group");
  validate_join_policy(g.policy);
  const auto password = json::get_string(body, "password", false);
  if (!password.empty()) g.password_hash = hash_join_password(password);
  g.owner = ctx_.my_id;
  g.members.clear();
  return ctx_.blocking(std::move(r), [this, g] {
    ctx_.store->create_id_group(g);
    spdlog::info("ID group {} created{}{}", g.name, g.has_password() ? " (join password set)" : "",
                 g.policy.empty() ? "" : " with a join policy");
    if (!g.policy.empty()) {
      // Hosts already registered that the policy takes in, in one join.
      std::vector<std::string> matching;
      for (const auto& h : ctx_.store->list_hosts())
        if (h.approved && policy_matches(g.policy, h)) matching.push_back(h.host_id);
      if (!matching.empty())
        dispatch_.wake(ctx_.store->join_id_group(g.name, matching, JoinMethod::policy).vias, true);
    }
    auto created = ctx_.store->find_id_group(g.name);
    return json_response(201, json::to_json(*created));
  });
}

void Groups::id_group_show(HttpRequest&&, Responder& r, const PathSegments& p) {
  const auto name = p[2];
  return ctx_.blocking(std::move(r), [this, name] {
    auto g = ctx_.store->find_id_group(name);
    if (!g) throw Error(ErrorKind::not_found, "ID group \"" + name + "\" does not exist here");
    auto o = json::to_json(*g);
    bj::array jobs;
    for (const auto& j : ctx_.store->standing_jobs(name)) jobs.push_back(json::to_json(j));
    o["jobs"] = std::move(jobs);
    return json_response(200, o);
  });
}

void Groups::id_group_delete(HttpRequest&&, Responder& r, const PathSegments& p) {
  const auto name = p[2];
  return delete_group(r, "ID group", name, [this, name] { return ctx_.store->delete_id_group(name); });
}

void Groups::id_group_members(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto name = p[2];
  auto [add, remove] = member_change(req);
  return ctx_.blocking(std::move(r), [this, name, add, remove] {
    if (!ctx_.store->find_id_group(name))
      throw Error(ErrorKind::not_found, "ID group \"" + name + "\" does not exist here");
    const auto a = registration_.resolve_host_keys(add, "nothing was changed");
    const auto d = registration_.resolve_host_keys(remove, "nothing was changed");
    auto joined_change = ctx_.store->join_id_group(name, a, JoinMethod::admin);
    auto left_change = ctx_.store->leave_id_group(name, d);
    dispatch_.wake(joined_change.vias, true);
    dispatch_.wake(left_change.vias, true);
    return json_response(200, bj::object{{"group", name},
                                         {"joined", joined_change.changed},
                                         {"entries", joined_change.entries},
                                         {"left", left_change.changed},
                                         {"cancelled", left_change.entries}});
  });
}

}  // namespace distrib::manager
