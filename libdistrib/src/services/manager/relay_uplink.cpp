// A relay's link to its parent: registration upward, the sync of hosts and entry states, the poll for routed
// work, its own entries, and requests passed upward.
#include "services/manager/relay_uplink.h"

#include "services/enrol_client.h"
#include "services/manager/dispatch.h"
#include "services/manager/registration.h"
#include "services/system_info.h"

namespace distrib::manager {

namespace {
ParentLink::Settings link_settings(const Context& ctx) {
  const auto& s = ctx.settings;
  ParentLink::Settings ls;
  ls.urls = s.parents;
  ls.ca_file = s.ca_file;
  ls.bind_address = s.bind_address;
  ls.recheck_seconds = s.parent_recheck_seconds;
  if (ctx.identity) {
    ls.ca_file = ctx.identity->ca_file().string();
    ls.cert_file = ctx.identity->cert_file().string();
    ls.key_file = ctx.identity->key_file().string();
  }
  return ls;
}

EnrolSettings enrol_settings(const Context& ctx) {
  const auto& s = ctx.settings;
  EnrolSettings es;
  es.bundle = s.enrol_bundle;
  es.token = s.enrol_token;
  es.ca_file = s.ca_file;
  es.ca_fingerprint = s.ca_fingerprint;
  es.name = s.host_name.empty() ? system_host_name() : s.host_name;
  std::vector<std::string> given = s.tls_names;
  if (s.listen_address != "0.0.0.0" && s.listen_address != "::") given.push_back(s.listen_address);
  given.push_back(es.name);
  security::split_names(given, es.names, es.addresses);
  return es;
}
}  // namespace

RelayUplink::RelayUplink(Context& ctx, Dispatch& dispatch, Registration& registration)
    : ctx_(ctx),
      dispatch_(dispatch),
      registration_(registration),
      link_(link_settings(ctx)),
      cache_(ctx, link_) {
  if (ctx.settings.sync_interval_ms < 10)
    throw Error(ErrorKind::invalid_argument, "sync interval must be at least 10 ms");
  for (const auto& url : ctx.settings.parents) {
    const auto p = parse_base_url(url);
    if (p.host == ctx.settings.listen_address && p.port == ctx.settings.port)
      throw Error(ErrorKind::invalid_argument,
                  "parent " + url + " is this relay itself; a relay's parent must be above it");
    if (ctx.identity && !p.tls)
      throw Error(ErrorKind::invalid_argument,
                  "parent " + url +
                      " is plain http: a relay enrols and talks to its parent over https "
                      "(or give it --insecure-http too)");
  }
  try {
    own_seq_ = std::stoll(fs::read_file(ctx.settings.state_dir / "seq"));
  } catch (...) {
    own_seq_ = 1;
  }
}

// Before this relay serves: it needs a certificate of the tree's CA, for its parent and for the
// hosts below it. Waits (logging) until its enrolment is accepted.
void RelayUplink::prepare() {
  auto* id = ctx_.identity.get();
  if (!id) return;
  const auto es = enrol_settings(ctx_);
  establish_trust(*id, es, ctx_.settings.parents, ctx_.settings.bind_address);
  bool announced = false;
  for (;;) {
    if (id->certified(fs::now_unix()) && !id->renewal_due(fs::now_unix())) return;
    const auto url = link_.current();
    try {
      HttpClient c(link_.client_settings(url));
      c.set_timeout(30);
      if (id->certified(fs::now_unix())) {
        renew_certificate(*id, es, c);
      } else if (enrol_once(*id, es, c)) {
        return;
      }
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::forbidden) throw;
      if (id->certified(fs::now_unix())) return;  // renewal later
      spdlog::warn("relay enrolment with {}: {}", url, e.what());
      link_.failed(url);
    }
    if (!announced)
      spdlog::warn("relay {} waits for its enrolment to be accepted (key {}) before serving", ctx_.my_id,
                   id->fingerprint());
    announced = true;
    std::this_thread::sleep_for(std::chrono::seconds(std::max(1, ctx_.settings.poll_interval_seconds)));
  }
}

void RelayUplink::start() {
  poll_clients_ = std::make_unique<ClientSet>(link_);
  sync_clients_ = std::make_unique<ClientSet>(link_);
  join_clients_ = std::make_unique<ClientPool>(link_);
  stopping_ = false;
  running_ = true;
  cache_.start();
  check_parents_at_start();  // throws for a parent below this relay (the caller stops)
  poller_ = std::thread([this] { poll_loop(); });
  syncer_ = std::thread([this] { sync_loop(); });
  cache_.maybe_maintain();
}

void RelayUplink::stop() {
  if (!running_) return;
  running_ = false;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  poll_clients_->abort();
  sync_clients_->abort();
  join_clients_->abort();
  cache_.stop();
  for (auto* t : {&poller_, &syncer_})
    if (t->joinable()) t->join();
}

// The contact goes upward with the next sync.
void RelayUplink::note_contact(const std::string& id) {
  std::lock_guard lock(mutex_);
  seen_since_sync_[id] = fs::now_unix();
}

void RelayUplink::note_contacts(const std::vector<std::pair<std::string, std::int64_t>>& seen) {
  std::lock_guard lock(mutex_);
  for (const auto& [h, t] : seen) seen_since_sync_[h] = std::max(seen_since_sync_[h], t);
}

std::optional<Manifest> RelayUplink::manifest(const std::string& name, const std::string& version,
                                              bool served) {
  auto m = cache_.ensure_manifest(name, version);
  if (m && served) ctx_.store->touch_package(name, version, fs::now_unix());
  return m;
}

// Wakes the relay's syncer: something is to be reported upward.
void RelayUplink::notify_sync() {
  {
    std::lock_guard lock(mutex_);
    sync_wanted_ = true;
  }
  cv_.notify_all();
}

// Passes an agent's request to the parent (at `target`) and its answer back down.
auto RelayUplink::forward(const HttpRequest& req, const std::string& target) -> HttpResponse {
  const auto url = link_.current();
  auto c = join_clients_->lease(url);
  c->set_timeout(120);
  try {
    return c->request(req.method, target, req.body,
                      req.content_type.empty() ? "application/json" : req.content_type);
  } catch (const Error& e) {
    throw Error(ErrorKind::unavailable,
                "the parent " + url + " cannot be reached (" + e.what() + "); try again later");
  }
}

auto RelayUplink::ask_parent(std::string_view method, const std::string& target, const bj::value& body,
                             int timeout_seconds) -> bj::object {
  auto c = join_clients_->lease(link_.current());
  c->set_timeout(timeout_seconds);
  return call_parent(*c, method, target, body);
}

void RelayUplink::sleep_ms(int ms) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping_.load(); });
}

auto RelayUplink::parent_call(ClientSet& clients, const std::string& url, std::string_view method,
                              const std::string& target, const bj::value& body, int timeout) -> bj::object {
  auto& c = clients.get(url);
  c.set_timeout(timeout);
  return call_parent(c, method, target, body);
}

// Registers this relay with `url`; refuses a parent that is this relay or below it.
void RelayUplink::register_up(const std::string& url) {
  const bool wildcard = ctx_.settings.listen_address == "0.0.0.0" || ctx_.settings.listen_address == "::";
  const Host me = describe_this_host(ctx_.my_id, HostRole::relay, ctx_.settings.host_name,
                                     !ctx_.settings.bind_address.empty() ? ctx_.settings.bind_address
                                     : wildcard                          ? std::string()
                                                                         : ctx_.settings.listen_address);
  auto res = parent_call(*poll_clients_, url, "POST", "/v1/agent/register", json::to_json(me));
  std::vector<std::string> up = json::get_string_array(res, "path", false);
  check_not_below(url, up);
  {
    std::vector<std::string> path{ctx_.my_id};
    path.insert(path.end(), up.begin(), up.end());
    ctx_.set_path(std::move(path));
    std::lock_guard lock(mutex_);
    registered_url_ = url;
    sync_wanted_ = true;
  }
  cv_.notify_all();
  spdlog::info("relay {} registered with parent {} ({} level(s) below the top)", me.name, url, up.size());
}

void RelayUplink::check_not_below(const std::string& url, const std::vector<std::string>& parent_path) const {
  if (!parent_path.empty() && parent_path.front() == ctx_.my_id)
    throw Error(ErrorKind::invalid_argument,
                "parent " + url + " is this relay itself; a relay's parent must be above it");
  if (std::find(parent_path.begin(), parent_path.end(), ctx_.my_id) != parent_path.end())
    throw Error(ErrorKind::invalid_argument,
                "parent " + url + " is below this relay in the tree; choosing it would make a loop");
}

// Sends acks, hosts, last contacts and entry states upward. Returns true when more is queued.
auto RelayUplink::sync_once(const std::vector<std::pair<std::int64_t, EntryState>>& acks) -> bool {
  // The syncer and the poller (acknowledging routed entries at once) both sync: one at a time, as
  // their client is one connection (two threads on it freed its TLS state under each other).
  std::lock_guard sync_lock(sync_mutex_);
  std::string url;
  {
    std::lock_guard lock(mutex_);
    url = registered_url_;
  }
  if (url.empty()) return false;
  auto hosts = acks.empty() ? ctx_.store->hosts_to_report(500) : std::vector<PendingHost>{};
  auto reports = acks.empty() ? ctx_.store->reports_to_forward(500) : std::vector<PendingReport>{};
  std::unordered_map<std::string, std::int64_t> seen;
  if (acks.empty()) {
    std::lock_guard lock(mutex_);
    seen.swap(seen_since_sync_);
  }
  if (acks.empty() && hosts.empty() && reports.empty() && seen.empty()) return false;
  bj::array ha, sa, ra, aa;
  for (auto& h : hosts) {
    Host up = h.host;
    if (up.parent.empty()) up.parent = ctx_.my_id;  // directly below this relay
    auto o = json::to_json(up);
    if (auto p = ctx_.callers.placement_of(up.host_id)) o["proof"] = to_json(*p);
    ha.push_back(std::move(o));
  }
  for (const auto& [h, t] : seen) sa.push_back(bj::object{{"host_id", h}, {"last_seen", t}});
  for (const auto& r : reports) ra.push_back(json::to_json(r.report));
  for (const auto& [e, st] : acks)
    aa.push_back(bj::object{{"entry_id", e}, {"state", std::string(to_string(st))}});
  try {
    parent_call(
        *sync_clients_, url, "POST", "/v1/relay/sync",
        bj::object{{"host_id", ctx_.my_id}, {"hosts", ha}, {"seen", sa}, {"reports", ra}, {"acks", aa}});
  } catch (...) {
    std::lock_guard lock(mutex_);
    for (const auto& [h, t] : seen) seen_since_sync_.try_emplace(h, t);
    throw;
  }
  std::vector<std::pair<std::string, std::int64_t>> hd;
  for (const auto& h : hosts) hd.emplace_back(h.host.host_id, h.version);
  ctx_.store->hosts_reported(hd);
  std::vector<std::pair<std::int64_t, std::int64_t>> rd;
  for (const auto& r : reports) rd.emplace_back(r.local_id, r.version);
  ctx_.store->reports_forwarded(rd);
  return hosts.size() == 500 || reports.size() == 500;
}

void RelayUplink::sync_loop() {
  int backoff = 0;
  while (!stopping_) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, std::chrono::milliseconds(backoff ? backoff : ctx_.settings.sync_interval_ms),
                   [&] { return stopping_.load() || (sync_wanted_ && backoff == 0); });
      sync_wanted_ = false;
    }
    if (stopping_) break;
    // A short pause lets a burst of changes travel in one batch.
    sleep_ms(50);
    try {
      while (sync_once({}) && !stopping_) {
      }
      backoff = 0;
    } catch (const std::exception& e) {
      backoff = std::min(backoff ? backoff * 2 : 250, 5000);
      spdlog::warn("reporting to the parent failed: {}; retrying in {} ms", e.what(), backoff);
    }
  }
}

void RelayUplink::send_own_report(EntryReport rep) {
  rep.seq = own_seq_++;
  fs::write_file_atomic(ctx_.settings.state_dir / "seq", std::to_string(own_seq_));
  own_unsent_.push_back(std::move(rep));
  flush_own_reports();
}

void RelayUplink::flush_own_reports() {
  if (own_unsent_.empty()) return;
  bj::array arr;
  for (const auto& r : own_unsent_) arr.push_back(json::to_json(r));
  parent_call(*poll_clients_, link_.current(), "POST", "/v1/agent/report",
              bj::object{{"host_id", ctx_.my_id}, {"reports", std::move(arr)}});
  own_unsent_.clear();
}

// Work addressed to this relay itself: pre-stage or drop a package in its cache.
void RelayUplink::process_own(const bj::object& item) {
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
      auto m = cache_.ensure_manifest(name, version);
      if (!m)
        throw Error(ErrorKind::not_found,
                    "package \"" + name + "\" " + version + " does not exist at the parent");
      std::vector<std::string> digests;
      for (const auto& c : m->chunks) digests.push_back(c.digest);
      const auto before = cache_.upstream()->fetches();
      cache_.upstream()->fetch_all(digests);
      ctx_.store->touch_package(name, version, fs::now_unix());
      rep.state = EntryState::succeeded;
      rep.message = "cached: " + std::to_string(cache_.upstream()->fetches() - before) + " of " +
                    std::to_string(digests.size()) + " chunk(s) fetched";
      cache_.maybe_maintain();
    } else if (type == JobType::delete_package) {
      auto m = ctx_.store->find_package(name, version);
      if (m && ctx_.store->delete_package(name, version)) {
        const auto freed = cache_.remove_package_chunks(*m);
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

// This relay's certificate, renewed over the current one when a third of its lifetime is left
// (checked at most once a minute): the parent clients and the listener take the new one.
void RelayUplink::renew_if_due() {
  auto* id = ctx_.identity.get();
  const auto now = Clock::now();
  if (!id || now < next_renewal_check_) return;
  next_renewal_check_ = now + std::chrono::minutes(1);
  if (!id->renewal_due(fs::now_unix())) return;
  const auto url = link_.current();
  try {
    HttpClient c(link_.client_settings(url));
    c.set_timeout(30);
    renew_certificate(*id, enrol_settings(ctx_), c);
    poll_clients_->renew();
    sync_clients_->renew();
    join_clients_->renew();
    if (ctx_.certificate_renewed) ctx_.certificate_renewed();
  } catch (const Error& e) {
    spdlog::warn("relay certificate renewal with {} failed ({}); trying again in a minute", url, e.what());
  }
}

// The parent's list of revoked certificates replaces this relay's copy; the relays below fetch it
// from here in turn.
void RelayUplink::adopt_revoked(const std::string& url) {
  const auto o = parent_call(*poll_clients_, url, "GET", "/v1/relay/revoked", nullptr, 30);
  std::vector<std::uint64_t> serials;
  for (const auto& s : json::get_string_array(o, "serials")) serials.push_back(std::stoull(s));
  ctx_.callers.set_revoked(serials);
  spdlog::info("{} revoked certificate(s) known from the parent", serials.size());
  dispatch_.wake_relays();
}

void RelayUplink::adopt_publishers(const std::string& url) {
  const auto o = parent_call(*poll_clients_, url, "GET", "/v1/agent/publishers", nullptr, 30);
  auto text = json::get_string(o, "signed");
  try {
    auto set = security::verify_publishers(text, ctx_.client_ca_pem(), fs::now_unix());
    const auto v = set.version;
    if (ctx_.publishers.replace(std::move(set), std::move(text)))
      spdlog::info("trusted publisher set version {} from the parent", v);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::integrity) throw;
    spdlog::error("{}; keeping version {}", e.what(), ctx_.publishers.version());
  }
}

void RelayUplink::poll_loop() {
  int backoff = 0;
  std::set<std::pair<std::int64_t, std::int64_t>> done_own;  // (entry, attempt) finished here
  while (!stopping_) {
    const auto url = link_.current();
    try {
      if (link_.maybe_return_to_primary()) {
        std::lock_guard lock(mutex_);
        registered_url_.clear();
      }
      bool registered;
      {
        std::lock_guard lock(mutex_);
        registered = registered_url_ == link_.current();
      }
      if (!registered) register_up(link_.current());
      renew_if_due();
      flush_own_reports();
      auto res = parent_call(*poll_clients_, link_.current(), "GET",
                             "/v1/agent/work?host_id=" + ctx_.my_id +
                                 "&wait=" + std::to_string(ctx_.settings.poll_timeout_seconds),
                             nullptr, ctx_.settings.poll_timeout_seconds + 15);
      backoff = 0;
      // Before the entries: work signed by a newly trusted publisher must find the set here.
      if (const auto v = json::get_int(res, "publishers_version", 0); v > ctx_.publishers.version())
        adopt_publishers(url);
      if (auto it = res.find("routed"); it != res.end() && it->value().is_array()) {
        std::vector<RoutedEntry> routed;
        for (const auto& v : it->value().as_array())
          routed.push_back(json::routed_entry_from_json(v.as_object()));
        auto vias = ctx_.store->import_entries(routed);
        dispatch_.wake(vias, true);
        std::vector<std::pair<std::int64_t, EntryState>> acks;
        for (const auto& x : routed) acks.emplace_back(x.entry.id, x.entry.state);
        sync_once(acks);
        spdlog::debug("{} entr(ies) received from the parent", routed.size());
      }
      if (auto it = res.find("revoked_count");
          it != res.end() && it->value().is_int64() &&
          static_cast<std::size_t>(it->value().as_int64()) != ctx_.callers.revoked_count())
        adopt_revoked(url);
      if (auto it = res.find("released"); it != res.end() && it->value().is_array()) {
        for (const auto& v : it->value().as_array()) {
          const std::string h(v.as_string());
          if (auto known = ctx_.store->find_host(h)) {
            if (!known->via.empty() && known->via != h) registration_.release(known->via, h);
            ctx_.store->remove_host(h);
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
      if (!fresh && !json::get_array(res, "work").empty()) sleep_ms(1000);
    } catch (const Error& e) {
      if (stopping_) break;
      {
        std::lock_guard lock(mutex_);
        registered_url_.clear();
      }
      const bool wrapped = link_.failed(url);
      if (wrapped || e.kind() != ErrorKind::unavailable) {
        backoff = std::min(backoff ? backoff * 2 : 200, 5000);
        spdlog::warn("{}; retrying in {} ms", e.what(), backoff);
        sleep_ms(backoff);
      } else {
        spdlog::warn("{}; trying the next parent", e.what());
      }
    } catch (const std::exception& e) {
      if (stopping_) break;
      backoff = std::min(backoff ? backoff * 2 : 200, 5000);
      spdlog::error("relay uplink: {}; retrying in {} ms", e.what(), backoff);
      sleep_ms(backoff);
    }
  }
}

// At start: a parent that answers and lists this relay on its way to the top is refused.
void RelayUplink::check_parents_at_start() {
  for (const auto& url : ctx_.settings.parents) {
    std::vector<std::string> parent_path;
    try {
      HttpClientSettings cs = link_.client_settings(url);
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

}  // namespace distrib::manager
