// A relay's link to its parent: registration upward, the sync of hosts and entry states, the poll for routed
// work, its own entries, and requests forwarded upward; at the parent, the sync route.
#include "services/manager/impl.h"

namespace distrib {

// At a relay: the contact goes upward with the next sync.
void Manager::Impl::note_for_sync(const std::string& id) {
  if (!is_relay()) return;
  std::lock_guard lock(relay_mutex);
  seen_since_sync[id] = fs::now_unix();
}

// Wakes the relay's syncer: something is to be reported upward.
void Manager::Impl::notify_sync() {
  if (!is_relay()) return;
  {
    std::lock_guard lock(relay_mutex);
    sync_wanted = true;
  }
  relay_cv.notify_all();
}

void Manager::Impl::relay_sync(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  const auto relay = json::get_string(body, "host_id");
  if (!is_valid_host_id(relay)) throw Error(ErrorKind::invalid_argument, "host_id must be a host UUID");
  std::vector<Host> hosts;
  if (body.contains("hosts"))
    for (const auto& v : json::get_array(body, "hosts")) {
      if (!v.is_object()) throw Error(ErrorKind::invalid_argument, "hosts must contain objects");
      auto h = json::host_from_json(v.as_object());
      if (!is_valid_host_id(h.host_id) || h.name.empty() || !is_valid_host_id(h.parent))
        throw Error(
            ErrorKind::invalid_argument,
            "host \"" + h.name + "\": host_id and parent must be host UUIDs and the name must not be empty");
      hosts.push_back(std::move(h));
    }
  std::vector<std::pair<std::string, std::int64_t>> seen;
  if (body.contains("seen"))
    for (const auto& v : json::get_array(body, "seen")) {
      if (!v.is_object()) throw Error(ErrorKind::invalid_argument, "seen must contain objects");
      seen.emplace_back(json::get_string(v.as_object(), "host_id"),
                        json::get_int(v.as_object(), "last_seen"));
    }
  std::vector<EntryReport> reports;
  if (body.contains("reports"))
    for (const auto& v : json::get_array(body, "reports")) {
      if (!v.is_object()) throw Error(ErrorKind::invalid_argument, "reports must contain objects");
      reports.push_back(json::report_from_json(v.as_object()));
    }
  std::vector<std::pair<std::int64_t, EntryState>> acks;
  if (body.contains("acks"))
    for (const auto& v : json::get_array(body, "acks")) {
      if (!v.is_object()) throw Error(ErrorKind::invalid_argument, "acks must contain objects");
      acks.emplace_back(json::get_int(v.as_object(), "entry_id"),
                        parse_entry_state(json::get_string(v.as_object(), "state")));
    }
  return blocking(std::move(r), [this, relay, hosts, seen, reports, acks] {
    auto me = store->find_host(relay);
    if (!me || me->role != HostRole::relay || me->via != relay)
      throw Error(
          ErrorKind::forbidden,
          "host " + relay + " is not a relay registered directly with this manager; it must register first");
    note_contact(relay);
    const auto gen = generation_of(relay);
    store->mark_pushed(relay, acks);
    for (const auto& h : hosts) {
      if (h.host_id == my_id || h.host_id == relay) continue;
      const auto change = record_host(h, relay);
      if (change.changed)
        spdlog::info("{} {} ({}) registered below relay {}", to_string(h.role), h.name, h.host_id, me->name);
    }
    store->touch_hosts(seen);
    if (is_relay()) {
      std::lock_guard lock(relay_mutex);
      for (const auto& [h, t] : seen) seen_since_sync[h] = std::max(seen_since_sync[h], t);
    }
    bj::array results;
    for (const auto& rep : reports) {
      const auto outcome = store->apply_report(relay, rep, true);
      if (outcome.kind == ReportOutcome::Kind::applied && is_final(rep.state)) {
        spdlog::info("entry {} below relay {}: {}", rep.entry_id, me->name, to_string(rep.state));
        poke_scheduler();
      }
      results.push_back(bj::object{{"entry_id", rep.entry_id},
                                   {"outcome", std::string(to_string(outcome.kind))},
                                   {"state", std::string(to_string(outcome.current))}});
    }
    if (!reports.empty()) notify_sync();
    settle(relay, gen, has_work(relay));
    return json_response(200, bj::object{{"results", std::move(results)}, {"hosts", hosts.size()}});
  });
}

// At a relay: passes an agent's request to the parent (at `target`) and its answer back down.
auto Manager::Impl::forward_request(const HttpRequest& req, const std::string& target) -> HttpResponse {
  const auto url = link->current();
  auto c = join_clients->lease(url);
  c->set_timeout(120);
  try {
    return c->request(req.method, target, req.body,
                      req.content_type.empty() ? "application/json" : req.content_type);
  } catch (const Error& e) {
    throw Error(ErrorKind::unavailable,
                "the parent " + url + " cannot be reached (" + e.what() + "); try again later");
  }
}

void Manager::Impl::forward_up(HttpRequest&& req, Responder& r, std::string target) {
  auto shared = std::make_shared<HttpRequest>(std::move(req));
  return blocking(std::move(r), [this, shared, target] { return forward_request(*shared, target); });
}

void Manager::Impl::relay_sleep(int ms) {
  std::unique_lock lock(relay_mutex);
  relay_cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return relay_stopping_flag.load(); });
}

auto Manager::Impl::parent_call(ClientSet& clients, const std::string& url, std::string_view method,
                                const std::string& target, const bj::value& body, int timeout) -> bj::object {
  auto& c = clients.get(url);
  c.set_timeout(timeout);
  return call_parent(c, method, target, body);
}

// Registers this relay with `url`; refuses a parent that is this relay or below it.
void Manager::Impl::register_up(const std::string& url) {
  const bool wildcard = settings.listen_address == "0.0.0.0" || settings.listen_address == "::";
  const Host me = describe_this_host(my_id, HostRole::relay, settings.host_name,
                                     !settings.bind_address.empty() ? settings.bind_address
                                     : wildcard                     ? std::string()
                                                                    : settings.listen_address);
  auto res = parent_call(*poll_clients, url, "POST", "/v1/agent/register", json::to_json(me));
  std::vector<std::string> up = json::get_string_array(res, "path", false);
  check_not_below(url, up);
  {
    std::lock_guard lock(relay_mutex);
    tree_path = {my_id};
    tree_path.insert(tree_path.end(), up.begin(), up.end());
    registered_url = url;
    sync_wanted = true;
  }
  relay_cv.notify_all();
  spdlog::info("relay {} registered with parent {} ({} level(s) below the top)", me.name, url, up.size());
}

void Manager::Impl::check_not_below(const std::string& url,
                                    const std::vector<std::string>& parent_path) const {
  if (!parent_path.empty() && parent_path.front() == my_id)
    throw Error(ErrorKind::invalid_argument,
                "parent " + url + " is this relay itself; a relay's parent must be above it");
  if (std::find(parent_path.begin(), parent_path.end(), my_id) != parent_path.end())
    throw Error(ErrorKind::invalid_argument,
                "parent " + url + " is below this relay in the tree; choosing it would make a loop");
}

// Sends acks, hosts, last contacts and entry states upward. Returns true when more is queued.
auto Manager::Impl::sync_once(const std::vector<std::pair<std::int64_t, EntryState>>& acks) -> bool {
  std::string url;
  {
    std::lock_guard lock(relay_mutex);
    url = registered_url;
  }
  if (url.empty()) return false;
  auto hosts = acks.empty() ? store->hosts_to_report(500) : std::vector<PendingHost>{};
  auto reports = acks.empty() ? store->reports_to_forward(500) : std::vector<PendingReport>{};
  std::unordered_map<std::string, std::int64_t> seen;
  if (acks.empty()) {
    std::lock_guard lock(relay_mutex);
    seen.swap(seen_since_sync);
  }
  if (acks.empty() && hosts.empty() && reports.empty() && seen.empty()) return false;
  bj::array ha, sa, ra, aa;
  for (auto& h : hosts) {
    Host up = h.host;
    if (up.parent.empty()) up.parent = my_id;  // directly below this relay
    ha.push_back(json::to_json(up));
  }
  for (const auto& [h, t] : seen) sa.push_back(bj::object{{"host_id", h}, {"last_seen", t}});
  for (const auto& r : reports) ra.push_back(json::to_json(r.report));
  for (const auto& [e, st] : acks)
    aa.push_back(bj::object{{"entry_id", e}, {"state", std::string(to_string(st))}});
  try {
    parent_call(*sync_clients, url, "POST", "/v1/relay/sync",
                bj::object{{"host_id", my_id}, {"hosts", ha}, {"seen", sa}, {"reports", ra}, {"acks", aa}});
  } catch (...) {
    std::lock_guard lock(relay_mutex);
    for (const auto& [h, t] : seen) seen_since_sync.try_emplace(h, t);
    throw;
  }
  std::vector<std::pair<std::string, std::int64_t>> hd;
  for (const auto& h : hosts) hd.emplace_back(h.host.host_id, h.version);
  store->hosts_reported(hd);
  std::vector<std::pair<std::int64_t, std::int64_t>> rd;
  for (const auto& r : reports) rd.emplace_back(r.local_id, r.version);
  store->reports_forwarded(rd);
  return hosts.size() == 500 || reports.size() == 500;
}

void Manager::Impl::sync_loop() {
  int backoff = 0;
  while (!relay_stopping_flag) {
    {
      std::unique_lock lock(relay_mutex);
      relay_cv.wait_for(lock, std::chrono::milliseconds(backoff ? backoff : settings.sync_interval_ms),
                        [&] { return relay_stopping_flag.load() || (sync_wanted && backoff == 0); });
      sync_wanted = false;
    }
    if (relay_stopping_flag) break;
    // A short pause lets a burst of changes travel in one batch.
    relay_sleep(50);
    try {
      while (sync_once({}) && !relay_stopping_flag) {
      }
      backoff = 0;
    } catch (const std::exception& e) {
      backoff = std::min(backoff ? backoff * 2 : 250, 5000);
      spdlog::warn("reporting to the parent failed: {}; retrying in {} ms", e.what(), backoff);
    }
  }
}

void Manager::Impl::send_own_report(EntryReport rep) {
  rep.seq = own_seq++;
  fs::write_file_atomic(settings.state_dir / "seq", std::to_string(own_seq));
  own_unsent.push_back(std::move(rep));
  flush_own_reports();
}

void Manager::Impl::flush_own_reports() {
  if (own_unsent.empty()) return;
  bj::array arr;
  for (const auto& r : own_unsent) arr.push_back(json::to_json(r));
  parent_call(*poll_clients, link->current(), "POST", "/v1/agent/report",
              bj::object{{"host_id", my_id}, {"reports", std::move(arr)}});
  own_unsent.clear();
}

// Work addressed to this relay itself: pre-stage or drop a package in its cache.
void Manager::Impl::process_own(const bj::object& item) {
  EntryReport rep;
  rep.entry_id = json::get_int(item, "entry_id");
  rep.attempt = static_cast<std::int32_t>(json::get_int(item, "attempt", 1));
  const auto type = parse_job_type(json::get_string(item, "type"));
  const auto& pkg = item.at("package").as_object();
  const auto name = json::get_string(pkg, "name");
  const auto version = json::get_string(pkg, "version");
  try {
    if (type == JobType::transfer_to_relay) {
      rep.state = EntryState::transferring;
      send_own_report(rep);
      auto m = ensure_manifest(name, version);
      if (!m)
        throw Error(ErrorKind::not_found,
                    "package \"" + name + "\" " + version + " does not exist at the parent");
      std::vector<std::string> digests;
      for (const auto& c : m->chunks) digests.push_back(c.digest);
      const auto before = upstream->fetches();
      upstream->fetch_all(digests);
      store->touch_package(name, version, fs::now_unix());
      rep.state = EntryState::succeeded;
      rep.message = "cached: " + std::to_string(upstream->fetches() - before) + " of " +
                    std::to_string(digests.size()) + " chunk(s) fetched";
      maybe_maintain();
    } else if (type == JobType::delete_package) {
      auto m = store->find_package(name, version);
      if (m && store->delete_package(name, version)) {
        const auto freed = remove_package_chunks(*m);
        rep.message = "removed from the cache (" + std::to_string(freed.chunks) + " chunk(s) freed)";
      } else {
        rep.message = "was not in this relay's cache";
      }
      rep.state = EntryState::succeeded;
    } else {
      throw Error(ErrorKind::invalid_argument, "relays do not install packages");
    }
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::unavailable) throw;  // transient: the entry comes again
    rep.state = EntryState::failed;
    rep.message = e.what();
  }
  send_own_report(rep);
}

void Manager::Impl::poll_loop() {
  int backoff = 0;
  std::set<std::pair<std::int64_t, std::int64_t>> done_own;  // (entry, attempt) finished here
  while (!relay_stopping_flag) {
    const auto url = link->current();
    try {
      if (link->maybe_return_to_primary()) {
        std::lock_guard lock(relay_mutex);
        registered_url.clear();
      }
      bool registered;
      {
        std::lock_guard lock(relay_mutex);
        registered = registered_url == link->current();
      }
      if (!registered) register_up(link->current());
      flush_own_reports();
      auto res = parent_call(
          *poll_clients, link->current(), "GET",
          "/v1/agent/work?host_id=" + my_id + "&wait=" + std::to_string(settings.poll_timeout_seconds),
          nullptr, settings.poll_timeout_seconds + 15);
      backoff = 0;
      if (auto it = res.find("routed"); it != res.end() && it->value().is_array()) {
        std::vector<RoutedEntry> routed;
        for (const auto& v : it->value().as_array())
          routed.push_back(json::routed_entry_from_json(v.as_object()));
        auto vias = store->import_entries(routed);
        wake(vias, true);
        std::vector<std::pair<std::int64_t, EntryState>> acks;
        for (const auto& x : routed) acks.emplace_back(x.entry.id, x.entry.state);
        sync_once(acks);
        spdlog::debug("{} entr(ies) received from the parent", routed.size());
      }
      if (auto it = res.find("released"); it != res.end() && it->value().is_array()) {
        for (const auto& v : it->value().as_array()) {
          const std::string h(v.as_string());
          if (auto known = store->find_host(h)) {
            if (!known->via.empty() && known->via != h) release(known->via, h);
            store->remove_host(h);
            spdlog::info("host {} ({}) now lives under another parent; forgotten here", known->name, h);
          }
        }
      }
      bool fresh = false;
      for (const auto& v : json::get_array(res, "work")) {
        const auto& o = v.as_object();
        const auto key = std::make_pair(json::get_int(o, "entry_id"), json::get_int(o, "attempt", 1));
        if (done_own.count(key)) continue;
        process_own(o);
        done_own.insert(key);
        fresh = true;
      }
      if (!fresh && !json::get_array(res, "work").empty()) relay_sleep(1000);
    } catch (const Error& e) {
      if (relay_stopping_flag) break;
      {
        std::lock_guard lock(relay_mutex);
        registered_url.clear();
      }
      const bool wrapped = link->failed(url);
      if (wrapped || e.kind() != ErrorKind::unavailable) {
        backoff = std::min(backoff ? backoff * 2 : 200, 5000);
        spdlog::warn("{}; retrying in {} ms", e.what(), backoff);
        relay_sleep(backoff);
      } else {
        spdlog::warn("{}; trying the next parent", e.what());
      }
    } catch (const std::exception& e) {
      if (relay_stopping_flag) break;
      backoff = std::min(backoff ? backoff * 2 : 200, 5000);
      spdlog::error("relay uplink: {}; retrying in {} ms", e.what(), backoff);
      relay_sleep(backoff);
    }
  }
}

// At start: a parent that answers and lists this relay on its way to the top is refused.
void Manager::Impl::check_parents_at_start() {
  for (const auto& url : settings.parents) {
    std::vector<std::string> parent_path;
    try {
      HttpClientSettings cs = link->client_settings(url);
      cs.connect_timeout_seconds = 3;
      cs.timeout_seconds = 5;
      HttpClient probe(cs);
      parent_path = json::get_string_array(call_parent(probe, "GET", "/v1/status", nullptr), "path", false);
    } catch (const Error& e) {
      spdlog::warn("parent {} is not reachable now ({}); will keep trying", url, e.what());
      continue;
    }
    check_not_below(url, parent_path);
  }
}

}  // namespace distrib
