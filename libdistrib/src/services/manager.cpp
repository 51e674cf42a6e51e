// The manager service, the composition root of its facilities (services/manager/, one class per
// file): builds them, declares the route table's realms and admin check, and starts and stops
// them in one explicit order.
#include "services/manager/administrators.h"
#include "services/manager/audit_trail.h"
#include "services/manager/collection.h"
#include "services/manager/common.h"
#include "services/manager/content.h"
#include "services/manager/content_health.h"
#include "services/manager/dispatch.h"
#include "services/manager/enrolment.h"
#include "services/manager/groups.h"
#include "services/manager/inventory.h"
#include "services/manager/jobs.h"
#include "services/manager/observe_api.h"
#include "services/manager/packages.h"
#include "services/manager/publishers.h"
#include "services/manager/registration.h"
#include "services/manager/relay_sync.h"
#include "services/manager/relay_uplink.h"
#include "services/manager/scheduler.h"
#include "services/manager/uplink.h"

namespace distrib {

using namespace manager;

namespace {
EventSinkRegistry builtin_sinks() {
  EventSinkRegistry r;
  register_builtin_event_sinks(r);
  return r;
}

// The top of the tree, or a relay's link to its parent.
std::unique_ptr<Uplink> make_uplink(Context& ctx, Dispatch& dispatch, Registration& registration) {
  if (ctx.is_relay()) return std::make_unique<RelayUplink>(ctx, dispatch, registration);
  return std::make_unique<TopOfTree>(ctx);
}
}  // namespace

// The facilities, in construction order. A facility may hold a reference to one declared after
// it (the cycles: dispatch and the scheduler wake each other; the relay uplink hands routed work
// to dispatch, which reports contacts to it); none calls another before Manager::start.
struct Manager::Impl {
  Impl(ManagerSettings settings, const StoreRegistry& stores, const EventSinkRegistry& sinks)
      : ctx(std::move(settings), stores, sinks),
        admins(ctx),
        uplink(make_uplink(ctx, dispatch, registration)),
        dispatch(ctx, *uplink, scheduler, content),
        scheduler(ctx, dispatch),
        health(ctx, *uplink),
        content(ctx, *uplink, health),
        registration(ctx, dispatch, *uplink),
        relay_sync(ctx, dispatch, registration, scheduler, *uplink),
        packages(ctx, health),
        inventory(ctx, registration, *uplink),
        jobs(ctx, registration, inventory, dispatch, scheduler, *uplink),
        groups(ctx, registration, inventory, dispatch, *uplink),
        collection(ctx, *uplink),
        enrolment(ctx, *uplink, dispatch),
        publishers(ctx),
        audit(ctx),
        observe(ctx, router, content, health, *uplink, audit) {
    declare_routes();
  }

  Context ctx;
  Administrators admins;
  Router router;
  std::unique_ptr<HttpServer> server;
  bool started = false;

  std::unique_ptr<Uplink> uplink;
  Dispatch dispatch;
  Scheduler scheduler;
  ContentHealth health;
  Content content;
  Registration registration;
  RelaySync relay_sync;
  Packages packages;
  Inventory inventory;
  Jobs jobs;
  Groups groups;
  Collection collection;
  Enrolments enrolment;
  Publishers publishers;
  AuditTrail audit;
  ObserveApi observe;

  void declare_routes();
  void handle(HttpRequest&& req, Responder r);
};

// The route table: each facility declares its routes with their access levels; the router
// checks access in one place and audits every admin request. GET /v1/routes lists the table and
// a test pins it.
void Manager::Impl::declare_routes() {
  // The admin token carries the administrator role, the metrics token (when configured) the
  // metrics role, a user's token the user's role.
  router.authenticate([this](const HttpRequest& req) { return admins.authenticate(req); });
  router.on_admin([this](const HttpRequest& req, Responder& r) { observe.audit_answer(req, r); });
  router.on_host([this](const HttpRequest& req, Responder& r) { observe.audit_answer(req, r, true); });
  // Hosts prove who they are with certificates of this tree's CA (checked in the TLS handshake;
  // revocation and the role here; each handler binds the host ids it acts on to the caller).
  router.check(Access::agent, [this](const HttpRequest& req) { ctx.callers.require_host(req); });
  router.check(Access::relay, [this](const HttpRequest& req) { ctx.callers.require_relay(req); });
  // Requests that match no route: under /v1/agent, /v1/relay and /v1/content anyone hears
  // "no route"; anywhere else under /v1 only an administrator does.
  router.realm("/v1/agent", Access::agent);
  router.realm("/v1/content", Access::agent);
  router.realm("/v1/relay", Access::relay);
  router.realm("/v1/{area}", Access::view);
  observe.register_routes(router);
  registration.register_routes(router);
  dispatch.register_routes(router);
  relay_sync.register_routes(router);
  content.register_routes(router);
  health.register_routes(router);
  packages.register_routes(router);
  jobs.register_routes(router);
  groups.register_routes(router);
  inventory.register_routes(router);
  collection.register_routes(router);
  enrolment.register_routes(router);
  publishers.register_routes(router);
  admins.register_routes(router);
}

void Manager::Impl::handle(HttpRequest&& req, Responder r) {
  ctx.request_bytes += req.body.size();
  try {
    router.dispatch(std::move(req), r);
  } catch (const Error& e) {
    // `r` was not moved when the route threw before handing it on.
    if (e.kind() == ErrorKind::internal) spdlog::error("{}", e.what());
    r(error_response(e));
  } catch (const std::exception& e) {
    spdlog::error("request failed: {}", e.what());
    r(error_response(Error(ErrorKind::internal, e.what())));
  }
}

Manager::Manager(ManagerSettings settings, const StoreRegistry& stores)
    : Manager(std::move(settings), stores, builtin_sinks()) {}

Manager::Manager(ManagerSettings settings, const StoreRegistry& stores, const EventSinkRegistry& sinks)
    : impl_(std::make_unique<Impl>(std::move(settings), stores, sinks)) {}

Manager::~Manager() {
  stop();
}

void Manager::start() {
  auto& i = *impl_;
  auto& ctx = i.ctx;
  if (i.started) return;
  ctx.work_cache.mark(ctx.store->children_with_work());
  ctx.pool = std::make_unique<BlockingPool>(ctx.settings.store_threads);
  i.audit.start();
  i.uplink->prepare();
  HttpServerSettings hs;
  hs.address = ctx.settings.listen_address;
  hs.port = ctx.settings.port;
  hs.threads = ctx.settings.network_threads;
  hs.max_connections = ctx.settings.max_connections;
  hs.max_connections_per_address = ctx.settings.max_connections_per_address;
  hs.tls_cert_file = ctx.settings.tls_cert_file;
  hs.tls_key_file = ctx.settings.tls_key_file;
  if (!ctx.settings.insecure_http) hs.tls_client_ca_file = ctx.client_ca_file;
  hs.body_limit = ObserveApi::kDefaultBodyLimit;
  // Each route declares its own limit; the router answers before the body is read.
  hs.body_limit_for = [this](std::string_view method, std::string_view target) {
    return impl_->router.body_limit(method, target);
  };
  // And whether the caller may send it at all, and whether there is room for it.
  hs.check_before_body = [this](const HttpRequest& head) { return impl_->router.check_before_body(head); };
  hs.max_body_bytes_in_flight = ctx.settings.max_body_bytes_in_flight;
  // Large files (collected files) go to disk as they arrive; what a crash left there goes.
  const auto spool = ctx.settings.state_dir / "spool";
  std::error_code spool_ec;
  std::filesystem::remove_all(spool, spool_ec);
  fs::ensure_writable_dir(spool, "the spool directory for received files");
  hs.spool_dir_for = [this, spool = spool.string()](std::string_view method, std::string_view target) {
    return impl_->router.spools_body(method, target) ? spool : std::string();
  };
  hs.take_over_address = ctx.settings.take_over_address;
  i.server = std::make_unique<HttpServer>(
      hs, [this](HttpRequest&& req, Responder r) { impl_->handle(std::move(req), std::move(r)); });
  i.server->start();
  ctx.certificate_renewed = [this] { impl_->server->reload_certificate(); };
  i.content.start();
  i.packages.start();
  ctx.started_unix = fs::now_unix();
  ctx.store->set_event_listener([d = ctx.events.get()] { d->notify(); });
  ctx.events->start();
  ctx.work_cache.start();
  i.scheduler.start();
  i.inventory.start();
  i.started = true;
  try {
    i.uplink->start();
  } catch (...) {
    stop();
    throw;
  }
  fs::write_file_atomic(ctx.settings.state_dir / "endpoint", url() + "\n");
  spdlog::info("{} {} listening on {} (database: {}, key mode: {}, {} host(s) with open work)", ctx.role(),
               ctx.my_id, url(), ctx.settings.store.backend, to_string(ctx.settings.key_mode),
               ctx.work_cache.hosts_with_work());
}

void Manager::stop() {
  auto& i = *impl_;
  auto& ctx = i.ctx;
  if (!i.started) return;
  i.started = false;
  i.uplink->stop();
  i.health.stop();  // a scrub under way ends (its fetches from the parent were aborted just now)
  i.scheduler.stop();
  i.inventory.stop();
  // Agents in a long poll get an empty answer and come back to whoever serves next.
  for (auto& r : ctx.work_cache.stop()) (*r)(json_response(200, bj::object{{"work", bj::array{}}}));
  i.content.stop();
  i.packages.stop();
  ctx.events->stop();  // closes event streams
  ctx.pool->stop();
  i.server->stop();
  i.audit.stop();  // after the last answer: what it could not write yet is tried once more
  ctx.store->set_event_listener(nullptr);
}

std::uint16_t Manager::port() const noexcept {
  return impl_->server ? impl_->server->port() : impl_->ctx.settings.port;
}

std::string Manager::url() const {
  const auto& s = impl_->ctx.settings;
  const bool tls = !s.tls_cert_file.empty();
  const bool v6 = s.listen_address.find(':') != std::string::npos;
  return std::string(tls ? "https://" : "http://") + (v6 ? "[" + s.listen_address + "]" : s.listen_address) +
         ":" + std::to_string(port());
}

std::filesystem::path Manager::admin_token_file() const {
  return impl_->ctx.settings.state_dir / "admin.token";
}
Store& Manager::store() noexcept {
  return *impl_->ctx.store;
}
const std::string& Manager::host_id() const noexcept {
  return impl_->ctx.my_id;
}

}  // namespace distrib
