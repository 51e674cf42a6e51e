// The route table: every route with its access level, and the request entry point.
#include "services/manager/impl.h"

namespace distrib {

void Manager::Impl::handle(HttpRequest&& req, Responder r) {
  request_bytes += req.body.size();
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

// The route table: every route with its access level. The router checks access; a test pins
// this list (GET /v1/routes shows it).
void Manager::Impl::register_routes() {
  using R = manager::Route;
  auto& t = router;
  const auto on = [this](void (Impl::*fn)(HttpRequest&&, Responder&, const PathSegments&)) {
    return [this, fn](HttpRequest&& req, Responder& r, const PathSegments& p) {
      (this->*fn)(std::move(req), r, p);
    };
  };
  t.check(Access::admin, [this](const HttpRequest& req) { require_admin(req); });
  t.on_admin([this](const HttpRequest& req, Responder& r) { audit_answer(req, r); });
  // Requests that match no route: under /v1/agent, /v1/relay and /v1/content anyone hears
  // "no route"; anywhere else under /v1 only an administrator does.
  t.realm("/v1/agent", Access::agent);
  t.realm("/v1/content", Access::agent);
  t.realm("/v1/relay", Access::relay);
  t.realm("/v1/{area}", Access::admin);

  // observability (open)
  if (settings.metrics) {
    t.add(R{"GET", "/metrics", Access::open, on(&Impl::get_metrics)});
    t.add(R{"HEAD", "/metrics", Access::open, on(&Impl::get_metrics)});
  }
  t.add(R{"GET", "/v1/status", Access::open, on(&Impl::get_status)});
  // agents and relays below: registration, work, reports, joins, inventory, collection, content
  t.add(R{"POST", "/v1/agent/register", Access::agent, on(&Impl::agent_register)});
  t.add(R{"GET", "/v1/agent/work", Access::agent, on(&Impl::agent_work)});
  t.add(R{"POST", "/v1/agent/join", Access::agent, on(&Impl::agent_join)});
  t.add(R{"GET", "/v1/agent/transfer", Access::agent, on(&Impl::agent_transfer)});
  // Inventory reports are large JSON; collected files carry up to the largest per-file limit.
  t.add(R{"POST", "/v1/agent/inventory", Access::agent, on(&Impl::agent_inventory), 64ull << 20});
  t.add(R{"GET", "/v1/agent/inventory-fields", Access::agent, on(&Impl::agent_inventory_fields)});
  t.add(R{"POST", "/v1/agent/collect", Access::agent, on(&Impl::agent_collect), kMaxCollectFile});
  t.add(R{"POST", "/v1/agent/report", Access::agent, on(&Impl::agent_report)});
  t.add(R{"POST", "/v1/content/chunks", Access::agent, on(&Impl::content_chunk_batch)});
  t.add(R{"GET", "/v1/content/chunks/{digest}", Access::agent, on(&Impl::content_chunk)});
  t.add(R{"GET", "/v1/content/manifests/{name}/{version}", Access::agent, on(&Impl::content_manifest)});
  t.add(R{"POST", "/v1/relay/sync", Access::relay, on(&Impl::relay_sync)});
  // administration
  t.add(R{"GET", "/v1/routes", Access::admin, on(&Impl::get_routes)});
  t.add(R{"GET", "/v1/cluster/status", Access::admin, on(&Impl::get_cluster_status)});
  t.add(R{"GET", "/v1/hosts", Access::admin, on(&Impl::list_hosts)});
  t.add(R{"POST", "/v1/hosts/approve", Access::admin, on(&Impl::approve_hosts)});
  t.add(R{"GET", "/v1/stats", Access::admin, on(&Impl::stats)});
  t.add(R{"POST", "/v1/chunks/missing", Access::admin, on(&Impl::chunks_missing)});
  // One compressed chunk (zstd never grows data by more than a little).
  t.add(R{"PUT", "/v1/chunks/{digest}", Access::admin, on(&Impl::chunk_upload), kMaxChunkSize + 64 * 1024});
  t.add(R{"GET", "/v1/packages", Access::admin, on(&Impl::package_list)});
  t.add(R{"POST", "/v1/packages", Access::admin, on(&Impl::package_register)});
  t.add(R{"GET", "/v1/packages/{name}/{version}", Access::admin, on(&Impl::package_show)});
  t.add(R{"POST", "/v1/jobs", Access::admin, on(&Impl::job_create)});
  t.add(R{"GET", "/v1/jobs", Access::admin, on(&Impl::job_list)});
  t.add(R{"GET", "/v1/jobs/{id}", Access::admin, on(&Impl::job_show)});
  t.add(R{"GET", "/v1/jobs/{id}/files", Access::admin, on(&Impl::job_files)});
  t.add(R{"GET", "/v1/jobs/{id}/files/{host}", Access::admin, on(&Impl::job_file)});
  t.add(R{"POST", "/v1/jobs/{id}/retry", Access::admin, on(&Impl::job_retry)});
  t.add(R{"POST", "/v1/jobs/{id}/complete-now", Access::admin, on(&Impl::job_complete_now)});
  t.add(R{"POST", "/v1/jobs/{id}/cancel", Access::admin, on(&Impl::job_cancel)});
  t.add(R{"POST", "/v1/transfers/suspend", Access::admin, on(&Impl::transfers_suspend_resume)});
  t.add(R{"POST", "/v1/transfers/resume", Access::admin, on(&Impl::transfers_suspend_resume)});
  t.add(R{"GET", "/v1/groups", Access::admin, on(&Impl::group_list)});
  t.add(R{"POST", "/v1/groups", Access::admin, on(&Impl::group_create)});
  t.add(R{"GET", "/v1/groups/{name}", Access::admin, on(&Impl::group_show)});
  t.add(R{"DELETE", "/v1/groups/{name}", Access::admin, on(&Impl::group_delete)});
  t.add(R{"POST", "/v1/groups/{name}/members", Access::admin, on(&Impl::group_members)});
  t.add(R{"GET", "/v1/id-groups", Access::admin, on(&Impl::id_group_list)});
  t.add(R{"POST", "/v1/id-groups", Access::admin, on(&Impl::id_group_create)});
  t.add(R{"GET", "/v1/id-groups/{name}", Access::admin, on(&Impl::id_group_show)});
  t.add(R{"DELETE", "/v1/id-groups/{name}", Access::admin, on(&Impl::id_group_delete)});
  t.add(R{"POST", "/v1/id-groups/{name}/members", Access::admin, on(&Impl::id_group_members)});
  t.add(R{"GET", "/v1/inventory", Access::admin, on(&Impl::inventory_query)});
  t.add(R{"GET", "/v1/inventory/fields", Access::admin, on(&Impl::inventory_fields_list)});
  t.add(R{"POST", "/v1/inventory/fields", Access::admin, on(&Impl::inventory_field_define)});
  t.add(R{"DELETE", "/v1/inventory/fields/{name}", Access::admin, on(&Impl::inventory_field_delete)});
  t.add(R{"GET", "/v1/inventory/hosts/{key}", Access::admin, on(&Impl::inventory_host)});
  t.add(R{"GET", "/v1/inventory/hosts/{key}/history", Access::admin, on(&Impl::inventory_host)});
  t.add(R{"GET", "/v1/events", Access::admin, on(&Impl::events_page)});
  t.add(R{"GET", "/v1/events/stream", Access::admin, on(&Impl::events_stream)});
  t.add(R{"GET", "/v1/events/sinks", Access::admin, on(&Impl::events_sinks)});
  t.add(R{"GET", "/v1/audit", Access::admin, on(&Impl::audit_route)});
}

}  // namespace distrib
