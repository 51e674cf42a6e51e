// The manager service: builds its facilities (services/manager/) and starts and stops them in order.
#include "services/manager/impl.h"

namespace distrib {

namespace {
EventSinkRegistry builtin_sinks() {
  EventSinkRegistry r;
  register_builtin_event_sinks(r);
  return r;
}
}  // namespace

Manager::Manager(ManagerSettings settings, const StoreRegistry& stores)
    : Manager(std::move(settings), stores, builtin_sinks()) {}

Manager::Manager(ManagerSettings settings, const StoreRegistry& stores, const EventSinkRegistry& sinks)
    : impl_(std::make_unique<Impl>()) {
  auto& s = impl_->settings;
  s = std::move(settings);
  fs::ensure_writable_dir(s.state_dir, "state directory");
  if (s.store.backend == "sqlite" && s.store.path.empty())
    s.store.path = (s.state_dir / "distrib.db").string();
  if (s.store.pool_size < s.store_threads + 1) s.store.pool_size = s.store_threads + 1;
  if (s.poll_timeout_seconds < 1)
    throw Error(ErrorKind::invalid_argument, "poll timeout must be at least 1 second");

  const auto token_file = s.state_dir / "admin.token";
  std::error_code ec;
  if (std::filesystem::exists(token_file, ec)) {
    impl_->admin_token = trim(fs::read_file(token_file));
    if (impl_->admin_token.size() < 32)
      throw Error(ErrorKind::invalid_argument,
                  "admin token in " + token_file.string() +
                      " is too short (32+ characters); delete it to have a new one made");
  } else {
    impl_->admin_token = random_token();
    fs::write_file_atomic(token_file, impl_->admin_token + "\n");
    ::chmod(token_file.c_str(), 0600);
  }
  impl_->chunks = std::make_unique<ChunkStore>(s.state_dir / "chunks");
  impl_->my_id = fs::load_or_create_host_id(s.state_dir / "host-id");
  impl_->tree_path = {impl_->my_id};
  if (!s.parents.empty()) {
    ParentLink::Settings ls;
    ls.urls = s.parents;
    ls.ca_file = s.ca_file;
    ls.bind_address = s.bind_address;
    ls.recheck_seconds = s.parent_recheck_seconds;
    impl_->link = std::make_unique<ParentLink>(ls);
    if (s.sync_interval_ms < 10)
      throw Error(ErrorKind::invalid_argument, "sync interval must be at least 10 ms");
    try {
      impl_->own_seq = std::stoll(fs::read_file(s.state_dir / "seq"));
    } catch (...) {
      impl_->own_seq = 1;
    }
  }
  if (s.silent_after_seconds < 0)
    throw Error(ErrorKind::invalid_argument, "silent-after must be 0 (never) or more seconds");
  if (s.event_retention_days < 0)
    throw Error(ErrorKind::invalid_argument, "event retention must be 0 (keep) or more days");
  impl_->store = stores.open(s.store);
  impl_->events = std::make_unique<EventDispatcher>(*impl_->store, sinks, s.event_sinks);
  impl_->register_routes();
}

Manager::~Manager() {
  stop();
}

void Manager::start() {
  auto& i = *impl_;
  if (i.started) return;
  i.work_cache.mark(i.store->children_with_work());
  i.pool = std::make_unique<BlockingPool>(i.settings.store_threads);
  HttpServerSettings hs;
  hs.address = i.settings.listen_address;
  hs.port = i.settings.port;
  hs.threads = i.settings.network_threads;
  hs.tls_cert_file = i.settings.tls_cert_file;
  hs.tls_key_file = i.settings.tls_key_file;
  hs.body_limit = Impl::kDefaultBodyLimit;
  // Each route declares its own limit (routes.cpp); the router answers before the body is read.
  hs.body_limit_for = [this](std::string_view method, std::string_view target) {
    return impl_->router.body_limit(method, target);
  };
  i.server = std::make_unique<HttpServer>(
      hs, [this](HttpRequest&& req, Responder r) { impl_->handle(std::move(req), std::move(r)); });
  i.server->start();
  i.timers = std::make_unique<TimerQueue>();
  i.hot_chunks = std::make_unique<ByteCache>(i.settings.memory_cache_bytes);
  if (const char* fault = std::getenv("DISTRIB_FAULT_CORRUPT_CHUNKS"); fault && *fault) {
    i.corrupt_left = std::atoll(fault);
    spdlog::warn("fault injection: the next {} chunk(s) served in batches are corrupted on purpose",
                 i.corrupt_left.load());
  }
  i.started_unix = fs::now_unix();
  i.store->set_event_listener([d = i.events.get()] { d->notify(); });
  i.events->start();
  i.work_cache.start();
  i.scheduler = std::thread([this] { impl_->schedule_loop(); });
  i.ingest_stopping = false;
  i.ingester = std::thread([this] { impl_->ingest_loop(); });
  i.started = true;
  if (i.is_relay()) {
    i.poll_clients = std::make_unique<ClientSet>(*i.link);
    i.sync_clients = std::make_unique<ClientSet>(*i.link);
    i.join_clients = std::make_unique<ClientPool>(*i.link);
    i.upstream = std::make_unique<UpstreamFetcher>(*i.chunks, *i.link, i.my_id, i.settings.upstream_threads);
    try {
      i.check_parents_at_start();
    } catch (...) {
      stop();
      throw;
    }
    i.poller = std::thread([this] { impl_->poll_loop(); });
    i.syncer = std::thread([this] { impl_->sync_loop(); });
    i.maintainer = std::thread([this] { impl_->maintain_loop(); });
    i.maybe_maintain();
  }
  fs::write_file_atomic(i.settings.state_dir / "endpoint", url() + "\n");
  spdlog::info("{} {} listening on {} (database: {}, key mode: {}, {} host(s) with open work)",
               i.is_relay() ? "relay" : "manager", i.my_id, url(), i.settings.store.backend,
               to_string(i.settings.key_mode), i.work_cache.hosts_with_work());
}

void Manager::stop() {
  auto& i = *impl_;
  if (!i.started) return;
  i.started = false;
  if (i.is_relay() && i.poll_clients) {
    {
      std::lock_guard lock(i.relay_mutex);
      i.relay_stopping_flag = true;
    }
    i.relay_cv.notify_all();
    i.poll_clients->abort();
    i.sync_clients->abort();
    i.join_clients->abort();
    i.upstream->stop();
    for (auto* t : {&i.poller, &i.syncer, &i.maintainer})
      if (t->joinable()) t->join();
  }
  {
    std::lock_guard lock(i.sched_mutex);
    i.sched_stopping = true;
  }
  i.sched_cv.notify_all();
  if (i.scheduler.joinable()) i.scheduler.join();
  {
    std::lock_guard lock(i.ingest_mutex);
    i.ingest_stopping = true;
  }
  i.ingest_cv.notify_all();
  if (i.ingester.joinable()) i.ingester.join();
  // Agents in a long poll get an empty answer and come back to whoever serves next.
  for (auto& r : i.work_cache.stop()) (*r)(json_response(200, bj::object{{"work", bj::array{}}}));
  if (i.timers) i.timers->stop();
  i.events->stop();  // closes event streams
  i.pool->stop();
  i.server->stop();
  i.store->set_event_listener(nullptr);
}

std::uint16_t Manager::port() const noexcept {
  return impl_->server ? impl_->server->port() : impl_->settings.port;
}

std::string Manager::url() const {
  const auto& s = impl_->settings;
  const bool tls = !s.tls_cert_file.empty();
  const bool v6 = s.listen_address.find(':') != std::string::npos;
  return std::string(tls ? "https://" : "http://") + (v6 ? "[" + s.listen_address + "]" : s.listen_address) +
         ":" + std::to_string(port());
}

std::filesystem::path Manager::admin_token_file() const {
  return impl_->settings.state_dir / "admin.token";
}
Store& Manager::store() noexcept {
  return *impl_->store;
}
const std::string& Manager::host_id() const noexcept {
  return impl_->my_id;
}

}  // namespace distrib
