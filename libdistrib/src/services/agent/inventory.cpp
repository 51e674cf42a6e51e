// The agent's inventory: collection, user items and fields, when to report, the inventory thread.
#include "services/agent/inventory.h"

#include "services/agent/install.h"

namespace distrib::agent {

InventoryReporter::InventoryReporter(Context& ctx, Link& link)
    : ctx_(ctx), link_(link), platform_(platform_collectors()) {
  for (const auto& c : platform_) collectors_.push_back(c.get());
  for (const auto& c : ctx_.settings.collectors)
    if (c) collectors_.push_back(c.get());
}

void InventoryReporter::start() {
  if (ctx_.settings.inventory_check_seconds > 0) thread_ = std::thread([this] { inventory_loop(); });
}

void InventoryReporter::abort() {
  std::lock_guard lock(mutex_);
  cv_.notify_all();
  if (client_) client_->abort();
}

void InventoryReporter::join() {
  if (thread_.joinable()) thread_.join();
}

// User inventory values: the configured file, then what `set_user_inventory` stored. Values
// that do not fit the definitions last received are left out (and logged).
void InventoryReporter::add_user_items(InventoryItems& items) {
  std::map<std::string, std::string> values;
  auto read = [&](const stdfs::path& file) {
    try {
      for (auto& [k, v] : parse_assignments(fs::read_file(file), file.string())) values[k] = v;
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::not_found) spdlog::warn("user inventory: {}", e.what());
    }
  };
  if (!ctx_.settings.user_inventory_file.empty()) read(ctx_.settings.user_inventory_file);
  read(ctx_.settings.state_dir / "user-inventory");
  const auto fields = cached_fields(ctx_.settings.state_dir);
  for (const auto& [k, v] : values) {
    if (v.empty()) continue;
    if (fields) {
      try {
        check_user_value(*fields, k, v);
      } catch (const Error& e) {
        spdlog::warn("user inventory value left out: {}", e.what());
        continue;
      }
    }
    items["user." + k] = v;
  }
}

// Field definitions the agent last received; nullopt when it never did.
auto InventoryReporter::cached_fields(const stdfs::path& state_dir)
    -> std::optional<std::vector<InventoryField>> {
  try {
    auto o = json::parse_object(fs::read_file(state_dir / "inventory-fields.json"));
    std::vector<InventoryField> out;
    for (const auto& v : json::get_array(o, "fields")) {
      const auto& f = v.as_object();
      out.push_back({json::get_string(f, "name"), parse_inventory_field_type(json::get_string(f, "type")),
                     json::get_string_array(f, "values", false), json::get_string(f, "description", false)});
    }
    return out;
  } catch (const Error&) {
    return std::nullopt;
  }
}

auto InventoryReporter::collect_inventory(InventoryScope scope) -> InventoryItems {
  std::vector<std::string> errors;
  auto items = run_collectors(collectors_, scope, errors);
  for (const auto& e : errors) spdlog::warn("inventory collector {}", e);
  if (scope != InventoryScope::system) {
    // Packages distrib installed: the newest install of each name.
    std::map<std::string, std::pair<std::int64_t, std::string>> newest;
    const auto installed = InstalledSet::load(ctx_.settings.state_dir);
    for (const auto& p : installed.all())
      if (!newest.count(p.name) || newest[p.name].first <= p.installed_at)
        newest[p.name] = {p.installed_at, p.version};
    for (const auto& [name, v] : newest) items["software.distrib." + name] = v.second;
  }
  if (scope != InventoryScope::software) add_user_items(items);
  std::erase_if(items, [](const auto& kv) {
    try {
      validate_inventory_key(kv.first);
      return false;
    } catch (const Error& e) {
      spdlog::warn("inventory item left out: {}", e.what());
      return true;
    }
  });
  return items;
}

auto InventoryReporter::send_inventory(HttpClient& client, InventoryScope scope, const InventoryItems& items,
                                       const bj::object* digests) -> bj::object {
  bj::object o;
  for (const auto& [k, v] : items)
    if (!digests || is_volatile_key(k)) o[k] = v;
  bj::object body{{"host_id", ctx_.host_id},
                  {"scope", std::string(to_string(scope))},
                  {"collected_at", fs::now_unix()},
                  {"items", std::move(o)}};
  if (digests) body["digests"] = *digests;
  auto res = call_parent(client, "POST", "/v1/agent/inventory", body);
  if (auto it = res.find("rejected"); it != res.end() && it->value().is_array())
    for (const auto& v : it->value().as_array())
      if (v.is_string())
        spdlog::warn("inventory value refused by the manager: {}", std::string(v.as_string()));
  return res;
}

void InventoryReporter::report_inventory_now(InventoryScope scope, std::int64_t entry_id,
                                             std::int32_t attempt) {
  const auto items = collect_inventory(scope);
  const auto res = send_inventory(*ctx_.http, scope, items);
  const auto changes = json::get_int(res, "changes", 0);
  link_.report(entry_id, attempt, EntryState::succeeded,
               std::to_string(items.size()) + " " + std::string(to_string(scope)) + " item(s) reported" +
                   (json::get_bool(res, "first") ? " (first inventory)"
                                                 : ", " + std::to_string(changes) + " changed"));
}

void InventoryReporter::poke_inventory() {
  std::lock_guard lock(mutex_);
  poked_ = true;
  cv_.notify_all();
}

// One periodic check: fetch the field definitions, collect everything, send when something
// changed since the last report the parent stored, or when the periodic report is due. A
// report owed (a failed send) survives restarts in the state file.
void InventoryReporter::inventory_check() {
  auto cs = ctx_.parents->client_settings(ctx_.parents->current());
  auto client = std::make_shared<HttpClient>(cs);
  client->set_timeout(60);
  {
    std::lock_guard lock(mutex_);
    client_ = client;
  }
  try {
    auto fields = call_parent(*client, "GET", "/v1/agent/inventory-fields", nullptr);
    fs::write_file_atomic(fields_file(), bj::serialize(fields));
  } catch (const Error& e) {
    spdlog::debug("inventory field definitions not refreshed: {}", e.what());
  }
  const auto items = collect_inventory(InventoryScope::full);
  const auto digest = inventory_digest(items);
  const bj::object digests{{"system", inventory_digest(items, InventoryScope::system)},
                           {"software", inventory_digest(items, InventoryScope::software)}};
  bj::object st;
  try {
    st = json::parse_object(fs::read_file(inventory_state_file()));
  } catch (const Error&) {
  }
  const auto now = fs::now_unix();
  const bool owed = json::get_bool(st, "owed");
  const bool changed = json::get_string(st, "digest", false) != digest;
  const bool periodic = ctx_.settings.inventory_interval_seconds > 0 &&
                        now - json::get_int(st, "sent_at", 0) >= ctx_.settings.inventory_interval_seconds;
  if (!owed && !changed && !periodic) return;
  // The digest handshake: when the stable items are what the parent acknowledged last, the
  // periodic report names their digests and carries only the volatile values.
  const auto acked = st.find("acknowledged");
  const bool elide = !owed && !changed && acked != st.end() && acked->value() == bj::value(digests);
  st["owed"] = true;
  fs::write_file_atomic(inventory_state_file(), bj::serialize(st));
  bj::object res;
  bool elided = false;
  if (elide) {
    try {
      res = send_inventory(*client, InventoryScope::full, items, &digests);
      elided = true;
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::conflict) throw;
      spdlog::info("inventory: the manager asked for the full report ({})", e.what());
    }
  }
  if (!elided) res = send_inventory(*client, InventoryScope::full, items);
  bj::object next{{"digest", digest}, {"sent_at", now}, {"owed", false}};
  // Acknowledged: the manager holds exactly these items (it answers with the digests it stored).
  if (auto d = res.find("digests"); d != res.end() && d->value() == bj::value(digests))
    next["acknowledged"] = digests;
  fs::write_file_atomic(inventory_state_file(), bj::serialize(next));
  spdlog::info("inventory reported: {} items ({}{}), {} change(s) at the manager", items.size(),
               changed ? "changed" : (owed ? "owed" : "periodic"), elided ? ", digests only" : "",
               json::get_int(res, "changes", 0));
}

void InventoryReporter::inventory_loop() {
  bool failed = false;
  bool first = true;
  while (!ctx_.stopping) {
    {
      std::unique_lock lock(mutex_);
      const int wait = first    ? 0
                       : failed ? std::min(ctx_.settings.inventory_check_seconds, 10)
                                : ctx_.settings.inventory_check_seconds;
      cv_.wait_for(lock, std::chrono::seconds(wait), [&] { return ctx_.stopping.load() || poked_; });
      poked_ = false;
    }
    if (ctx_.stopping) break;
    if (!ctx_.registered_once) {
      ctx_.sleep_ms(500);
      continue;
    }
    first = false;
    try {
      inventory_check();
      failed = false;
    } catch (const std::exception& e) {
      if (ctx_.stopping) break;
      failed = true;
      spdlog::warn("inventory report kept for later: {}", e.what());
    }
  }
}

}  // namespace distrib::agent
