// Inventory: reports from agents (group commit on the ingest thread), user field definitions, queries, a
// host's inventory and its history.
#include "services/manager/inventory.h"

#include <distrib/model/group.h>

#include "services/manager/registration.h"
#include "services/manager/uplink.h"

namespace distrib::manager {

void Inventory::register_routes(Router& t) {
  // Inventory reports are large JSON.
  t.add(Route{"POST", "/v1/agent/inventory", Access::agent, bind(this, &Inventory::agent_inventory),
              64ull << 20});
  t.add(Route{"GET", "/v1/agent/inventory-fields", Access::agent,
              bind(this, &Inventory::agent_inventory_fields)});
  t.add(Route{"GET", "/v1/inventory", Access::view, bind(this, &Inventory::inventory_query)});
  t.add(Route{"GET", "/v1/inventory/fields", Access::view, bind(this, &Inventory::inventory_fields_list)});
  // Field definitions are configuration: administrators only.
  t.add(Route{"POST", "/v1/inventory/fields", Access::administer,
              bind(this, &Inventory::inventory_field_define)});
  t.add(Route{"DELETE", "/v1/inventory/fields/{name}", Access::administer,
              bind(this, &Inventory::inventory_field_delete)});
  t.add(Route{"GET", "/v1/inventory/hosts/{key}", Access::view, bind(this, &Inventory::inventory_host)});
  t.add(Route{"GET", "/v1/inventory/hosts/{key}/history", Access::view,
              bind(this, &Inventory::inventory_host)});
}

void Inventory::start() {
  ingest_stopping_ = false;
  ingester_ = std::thread([this] { ingest_loop(); });
}

void Inventory::stop() {
  {
    std::lock_guard lock(ingest_mutex_);
    ingest_stopping_ = true;
  }
  ingest_cv_.notify_all();
  if (ingester_.joinable()) ingester_.join();
}

namespace {
bj::object fields_json(const std::vector<InventoryField>& fields) {
  bj::array arr;
  for (const auto& f : fields) {
    bj::array values;
    for (const auto& v : f.allowed) values.emplace_back(v);
    arr.push_back(bj::object{{"name", f.name},
                             {"type", std::string(to_string(f.type))},
                             {"values", std::move(values)},
                             {"description", f.description}});
  }
  return bj::object{{"fields", std::move(arr)}};
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    auto part = trim(text.substr(start, comma - start));
    if (!part.empty()) out.push_back(part);
    start = comma + 1;
  }
  return out;
}
}  // namespace

// Forwarded to the parent at a relay: the top manager keeps the definitions and every host's
// inventory. The relay passes the request on as it came (the parent checks it).

void Inventory::agent_inventory_fields(HttpRequest&& req, Responder& r, const PathSegments&) {
  if (uplink_.has_parent()) return pass_up(ctx_, uplink_, std::move(req), r);
  return ctx_.blocking(
      std::move(r), [this] { return json_response(200, fields_json(ctx_.store->list_inventory_fields())); });
}

// Stored values of a query or display field; '*' and '?' stand for any part of a key.
auto Inventory::values_of(const std::string& field, const std::vector<std::string>& hosts)
    -> std::vector<InventoryValue> {
  const auto wild = field.find_first_of("*?");
  if (wild == std::string::npos) return ctx_.store->inventory_values_of(field, false, hosts);
  auto values = ctx_.store->inventory_values_of(field.substr(0, wild), true, hosts);
  std::erase_if(values, [&](const InventoryValue& v) { return !glob_matches(field, v.key); });
  return values;
}

// Hosts whose latest inventory satisfies every condition (all inventoried hosts for none). The
// store judges each distinct stored value once, not each host's.
auto Inventory::hosts_matching(const InventoryQuery& q) -> std::vector<std::string> {
  const auto all = ctx_.store->inventoried_hosts();
  std::set<std::string> result(all.begin(), all.end());
  for (const auto& c : q.conditions) {
    const auto wild = c.field.find_first_of("*?");
    const bool prefix = wild != std::string::npos;
    const auto m = ctx_.store->match_inventory(
        prefix ? c.field.substr(0, wild) : c.field, prefix,
        [&](std::string_view key) { return !prefix || glob_matches(c.field, key); },
        [&](std::string_view, std::string_view value) { return condition_holds(c, value); });
    const auto& wanted = c.op == InventoryCondition::Op::missing ? m.having : m.accepted;
    const std::set<std::string> in(wanted.begin(), wanted.end());
    std::set<std::string> next;
    for (const auto& h : result)
      if (c.op == InventoryCondition::Op::missing ? !in.count(h) : in.count(h) > 0) next.insert(h);
    result = std::move(next);
  }
  return {result.begin(), result.end()};
}

auto Inventory::inventory_fields() -> std::vector<InventoryField> {
  std::lock_guard lock(fields_mutex_);
  if (!fields_cache_) fields_cache_ = ctx_.store->list_inventory_fields();
  return *fields_cache_;
}

void Inventory::forget_fields() {
  std::lock_guard lock(fields_mutex_);
  fields_cache_.reset();
}

// POST /v1/agent/inventory {host_id, scope, collected_at, items: {key: value}}
void Inventory::agent_inventory(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  InventoryReport rep;
  rep.host_id = json::get_string(body, "host_id");
  if (!is_valid_host_id(rep.host_id)) throw Error(ErrorKind::invalid_argument, "host_id must be a host UUID");
  // Its own inventory, or a relay's for a host below it (a store lookup: relays only).
  ctx_.callers.require_for(req, rep.host_id, *ctx_.store);
  if (uplink_.has_parent()) return pass_up(ctx_, uplink_, std::move(req), r);
  const auto scope = json::get_string(body, "scope", false);
  rep.scope = parse_inventory_scope(scope.empty() ? "full" : scope);
  rep.collected_at = json::get_int(body, "collected_at", 0);
  if (auto d = body.find("digests"); d != body.end()) {
    // The digest handshake: stable items left out, their digests named.
    if (!d->value().is_object())
      throw Error(ErrorKind::invalid_argument, "digests must be an object {system, software}");
    const auto& digests = d->value().as_object();
    auto digest = [&](const char* part, bool wanted) -> std::string {
      if (!wanted) return {};
      const auto text = json::get_string(digests, part, false);
      if (!is_sha256_hex(text))
        throw Error(ErrorKind::invalid_argument, std::string("digests.") + part +
                                                     " must be the 64-hex-digit digest of the report's " +
                                                     part + " items");
      return text;
    };
    rep.stable_elided = true;
    rep.system_digest = digest("system", rep.scope != InventoryScope::software);
    rep.software_digest = digest("software", rep.scope != InventoryScope::system);
  }
  auto it = body.find("items");
  if (it == body.end() || !it->value().is_object())
    throw Error(ErrorKind::invalid_argument, "items must be an object of \"key\": \"value\" pairs");
  const auto& items = it->value().as_object();
  if (items.size() > 200000)
    throw Error(ErrorKind::invalid_argument, "an inventory report holds at most 200000 items");
  for (const auto& kv : items) {
    const std::string key(kv.key());
    validate_inventory_key(key);
    if (!in_scope(rep.scope, key))
      throw Error(ErrorKind::invalid_argument, "item \"" + key + "\" is outside the report's scope " + scope);
    if (rep.stable_elided && !is_volatile_key(key))
      throw Error(ErrorKind::invalid_argument,
                  "item \"" + key +
                      "\" is not a volatile value: a report that names its digests "
                      "carries volatile values only");
    if (!kv.value().is_string())
      throw Error(ErrorKind::invalid_argument, "item \"" + key + "\" must be a string");
    const auto& v = kv.value().as_string();
    if (v.size() > 65536)
      throw Error(ErrorKind::invalid_argument, "item \"" + key + "\" is longer than 64 KiB");
    rep.items.emplace(key, std::string(v));
  }
  {
    std::lock_guard lock(ingest_mutex_);
    ingest_queue_.push_back({std::move(rep), std::make_shared<Responder>(std::move(r))});
  }
  ingest_cv_.notify_one();
}

// User inventory: only fields the administrator defined, with values that fit them. Returns
// why each value left out was refused.
auto Inventory::drop_undefined_fields(InventoryReport& rep) -> bj::array {
  bj::array rejected;
  auto u = rep.items.lower_bound("user.");
  if (u == rep.items.end() || !u->first.starts_with("user.")) return rejected;
  const auto fields = inventory_fields();
  for (auto i = u; i != rep.items.end() && i->first.starts_with("user.");) {
    try {
      check_user_value(fields, std::string_view(i->first).substr(5), i->second);
      ++i;
    } catch (const Error& e) {
      rejected.emplace_back(e.what());
      i = rep.items.erase(i);
    }
  }
  return rejected;
}

// Group commit of inventory reports: whatever arrived while the last batch was written goes
// into the next transaction together (one commit for many agents).
void Inventory::ingest_loop() {
  for (;;) {
    std::vector<QueuedReport> batch;
    {
      std::unique_lock lock(ingest_mutex_);
      ingest_cv_.wait(lock, [&] { return ingest_stopping_ || !ingest_queue_.empty(); });
      if (ingest_queue_.empty()) return;
      const auto n = std::min<std::size_t>(ingest_queue_.size(), 256);
      batch.assign(std::make_move_iterator(ingest_queue_.begin()),
                   std::make_move_iterator(ingest_queue_.begin() + static_cast<long>(n)));
      ingest_queue_.erase(ingest_queue_.begin(), ingest_queue_.begin() + static_cast<long>(n));
    }
    std::vector<InventoryReport> reports;
    std::vector<bj::array> rejected;
    try {
      for (auto& p : batch) {
        rejected.push_back(drop_undefined_fields(p.report));
        reports.push_back(std::move(p.report));
      }
      const auto results = ctx_.store->ingest_inventory_batch(reports, fs::now_unix());
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto& res = results[i];
        if (!res.error.empty()) {
          (*batch[i].responder)(error_response(Error(ErrorKind::not_found, res.error)));
          continue;
        }
        if (res.digest_unknown) {
          (*batch[i].responder)(
              error_response(Error(ErrorKind::conflict,
                                   "the manager does not hold the inventory these digests name (a "
                                   "restored or new database, or items it refused): send the full report")));
          continue;
        }
        if (res.first || !res.changes.empty())
          spdlog::info("inventory of host {}: {}", reports[i].host_id,
                       res.first ? std::to_string(res.items) + " items (first report)"
                                 : std::to_string(res.changes.size()) + " change(s)");
        (*batch[i].responder)(json_response(
            200, bj::object{{"items", res.items},
                            {"changes", res.changes.size()},
                            {"first", res.first},
                            {"unchanged", res.unchanged},
                            {"digests",
                             bj::object{{"system", res.system_digest}, {"software", res.software_digest}}},
                            {"rejected", std::move(rejected[i])}}));
      }
    } catch (const Error& e) {
      spdlog::warn("inventory batch of {} report(s) not stored: {}", batch.size(), e.what());
      for (auto& p : batch) (*p.responder)(error_response(e));
    } catch (const std::exception& e) {
      for (auto& p : batch) (*p.responder)(error_response(Error(ErrorKind::internal, e.what())));
    }
  }
}

// Admin: /v1/inventory?query=&fields=, /v1/inventory/hosts/KEY[/history], /v1/inventory/fields[/NAME]
void Inventory::inventory_query(HttpRequest&& req, Responder& r, const PathSegments&) {
  InventoryQuery q;
  if (const auto text = req.query["query"]; !text.empty()) q = parse_inventory_query(text);
  const auto fields = split_list(req.query["fields"]);
  for (const auto& f : fields)
    if (!(f.starts_with("system.") || f.starts_with("software.") || f.starts_with("user.")))
      throw Error(ErrorKind::invalid_argument,
                  "field \"" + f + "\" is not under system., software. or user.");
  return ctx_.blocking(std::move(r), [this, q, fields] {
    const auto ids = hosts_matching(q);
    std::map<std::string, std::map<std::string, std::string>> shown;  // host → key → value
    std::vector<std::string> columns = fields;
    if (columns.empty())
      for (const auto& c : q.conditions) columns.push_back(c.field);
    for (const auto& f : columns)
      for (auto& v : values_of(f, ids)) shown[v.host_id][v.key] = std::move(v.value);
    std::map<std::string, std::string> names;
    for (const auto& h : ctx_.store->list_hosts()) names[h.host_id] = h.name;
    std::vector<std::string> order = ids;
    std::sort(order.begin(), order.end(), [&](const auto& a, const auto& b) { return names[a] < names[b]; });
    bj::array hosts;
    for (const auto& id : order) {
      bj::object items;
      for (const auto& [k, v] : shown[id]) items[k] = v;
      hosts.push_back(bj::object{{"host_id", id}, {"name", names[id]}, {"items", std::move(items)}});
    }
    bj::array cols;
    for (const auto& c : columns) cols.emplace_back(c);
    return json_response(200, bj::object{{"query", to_string(q)},
                                         {"count", order.size()},
                                         {"fields", std::move(cols)},
                                         {"hosts", std::move(hosts)}});
  });
}

void Inventory::inventory_fields_list(HttpRequest&&, Responder& r, const PathSegments&) {
  return ctx_.blocking(
      std::move(r), [this] { return json_response(200, fields_json(ctx_.store->list_inventory_fields())); });
}

void Inventory::inventory_field_define(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  InventoryField f;
  f.name = json::get_string(body, "name");
  const auto type = json::get_string(body, "type", false);
  f.type = parse_inventory_field_type(type.empty() ? "text" : type);
  f.allowed = optional_strings(body, "values");
  f.description = json::get_string(body, "description", false);
  validate_description(f.description, "an inventory field's");
  validate_inventory_field(f);
  return ctx_.blocking(std::move(r), [this, f] {
    ctx_.store->put_inventory_field(f);
    forget_fields();
    spdlog::info("inventory field {} ({}) defined", f.name, to_string(f.type));
    return json_response(201, fields_json({f}));
  });
}

void Inventory::inventory_field_delete(HttpRequest&&, Responder& r, const PathSegments& p) {
  const auto name = p[3];
  return ctx_.blocking(std::move(r), [this, name] {
    if (!ctx_.store->delete_inventory_field(name))
      throw Error(ErrorKind::not_found, "inventory field \"" + name + "\" does not exist");
    forget_fields();
    return json_response(200, bj::object{{"deleted", name}});
  });
}

void Inventory::inventory_host(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto key = p[3];
  const bool history = p.size() == 5;
  const int limit = static_cast<int>(manager::query_number(req, "limit", 200, 1, 100000));
  return ctx_.blocking(std::move(r), [this, key, history, limit] {
    const auto all = ctx_.store->list_hosts();
    const auto id = registration_.resolve_host_keys({key}, "no inventory shown", all).front();
    std::string name;
    for (const auto& h : all)
      if (h.host_id == id) name = h.name;
    bj::object out{{"host_id", id}, {"name", name}};
    if (history) {
      bj::array arr;
      for (const auto& c : ctx_.store->inventory_history(id, limit))
        arr.push_back(bj::object{{"at", c.at},
                                 {"change", std::string(to_string(c.kind))},
                                 {"key", c.key},
                                 {"old", c.old_value},
                                 {"new", c.new_value}});
      out["history"] = std::move(arr);
      return json_response(200, out);
    }
    auto inv = ctx_.store->find_inventory(id);
    if (!inv)
      throw Error(ErrorKind::not_found, "host " + name +
                                            " has not reported an inventory yet (create a get-system-info "
                                            "job, or wait for its periodic report)");
    bj::object items;
    for (const auto& [k, v] : inv->items) items[k] = v;
    out["collected_at"] = inv->collected_at;
    out["reported_at"] = inv->reported_at;
    out["items"] = std::move(items);
    return json_response(200, out);
  });
}

}  // namespace distrib::manager
