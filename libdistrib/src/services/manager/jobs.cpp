// Jobs: creation with destination expansion, listing, details, retry, complete-now, cancel, and
// suspending or resuming transfers.
#include "services/manager/jobs.h"

#include "services/manager/dispatch.h"
#include "services/manager/inventory.h"
#include "services/manager/registration.h"
#include "services/manager/scheduler.h"
#include "services/manager/uplink.h"
#include "services/observe.h"

namespace distrib::manager {

void Jobs::register_routes(Router& t) {
  t.add(Route{"POST", "/v1/jobs", Access::operate, bind(this, &Jobs::job_create)});
  t.add(Route{"GET", "/v1/jobs", Access::view, bind(this, &Jobs::job_list)});
  t.add(Route{"GET", "/v1/jobs/{id}", Access::view, bind(this, &Jobs::job_show)});
  t.add(Route{"POST", "/v1/jobs/{id}/retry", Access::operate, bind(this, &Jobs::job_retry)});
  t.add(Route{"POST", "/v1/jobs/{id}/complete-now", Access::operate, bind(this, &Jobs::job_complete_now)});
  t.add(Route{"POST", "/v1/jobs/{id}/cancel", Access::operate, bind(this, &Jobs::job_cancel)});
  t.add(Route{"POST", "/v1/transfers/suspend", Access::operate, bind(this, &Jobs::transfers_suspend_resume)});
  t.add(Route{"POST", "/v1/transfers/resume", Access::operate, bind(this, &Jobs::transfers_suspend_resume)});
}

auto Jobs::expand_destinations(const Job& job) -> Expansion {
  const auto all = ctx_.store->list_hosts();
  std::map<std::string, const Host*> by_id;
  for (const auto& h : all) by_id[h.host_id] = &h;
  const bool install = targets_agents(job.type);
  auto fits = [&](const Host& h) { return h.approved && (h.role == HostRole::relay) != install; };
  Expansion out;
  std::set<std::string> seen;
  std::vector<std::string> unknown, plain;
  auto add = [&](const std::string& id) {
    if (seen.insert(id).second) out.host_ids.push_back(id);
  };
  for (const auto& d : job.destinations) {
    if (d.starts_with("group:")) {
      const auto name = d.substr(6);
      auto g = ctx_.store->find_host_group(name);
      if (!g) {
        unknown.push_back(d + " (no such host group)");
        continue;
      }
      if (!g->query.empty()) g->members = inventory_.hosts_matching(parse_inventory_query(g->query));
      for (const auto& id : g->members) {
        auto it = by_id.find(id);
        if (it != by_id.end() && fits(*it->second))
          add(id);
        else
          ++out.skipped;
      }
    } else if (d.starts_with("id:")) {
      const auto name = d.substr(3);
      if (!ctx_.store->find_id_group(name)) {
        unknown.push_back(d + " (no such ID group here)");
        continue;
      }
      if (std::find(out.id_groups.begin(), out.id_groups.end(), name) == out.id_groups.end())
        out.id_groups.push_back(name);
    } else if (d.starts_with("relay:")) {
      const auto key = d.substr(6);
      const Host* relay = nullptr;
      for (const auto& h : all)
        if (h.role == HostRole::relay && (h.host_id == key || host_matches(h, ctx_.settings.key_mode, key)))
          relay = &h;
      if (!relay) {
        unknown.push_back(d + " (no such relay)");
        continue;
      }
      for (const auto& h : all) {
        if (!is_below(by_id, h, relay->host_id)) continue;
        if (fits(h))
          add(h.host_id);
        else
          ++out.skipped;
      }
    } else {
      plain.push_back(d);
    }
  }
  if (!plain.empty()) {
    std::vector<Host> approved;
    for (const auto& h : all)
      if (h.approved) approved.push_back(h);
    auto res = resolve_destinations(approved, ctx_.settings.key_mode, plain);
    // A key only a host waiting for approval answers to gets its own message.
    std::vector<std::string> pending;
    std::erase_if(res.unknown, [&](const std::string& k) {
      for (const auto& h : all)
        if (!h.approved && host_matches(h, ctx_.settings.key_mode, k)) {
          pending.push_back(k);
          return true;
        }
      return false;
    });
    if (!pending.empty())
      throw Error(ErrorKind::invalid_argument, "host(s) waiting for approval: " + join_list(pending) +
                                                   " (distribctl hosts approve ...); no job was created");
    for (const auto& k : res.unknown)
      unknown.push_back(k + " (no host answers to it by " + std::string(to_string(ctx_.settings.key_mode)) +
                        ")");
    if (!res.ambiguous.empty())
      throw Error(ErrorKind::invalid_argument, "ambiguous destination(s), claimed by several hosts: " +
                                                   join_list(res.ambiguous) + "; no job was created");
    // Installs go to agents; cache jobs to relays.
    for (const auto& id : res.host_ids) {
      const auto& h = *by_id.at(id);
      const bool relay = h.role == HostRole::relay;
      if (install && relay)
        throw Error(ErrorKind::invalid_argument, "\"" + h.name + "\" is a relay; " +
                                                     std::string(to_string(job.type)) +
                                                     " jobs go to agents (use transfer-to-relay to pre-stage "
                                                     "a package on a relay); no job was created");
      if (!install && !relay)
        throw Error(ErrorKind::invalid_argument, "\"" + h.name + "\" is not a relay; " +
                                                     std::string(to_string(job.type)) +
                                                     " jobs go to relays; no job was created");
      add(id);
    }
  }
  if (!unknown.empty())
    throw Error(ErrorKind::invalid_argument,
                "unknown destination(s): " + join_list(unknown) + "; no job was created");
  if (out.host_ids.empty() && out.id_groups.empty())
    throw Error(ErrorKind::invalid_argument,
                "the destinations name no " + std::string(install ? "agent" : "relay") +
                    " (groups empty, or members of another role or awaiting approval); no job was created");
  return out;
}

// POST /v1/transfers/suspend|resume {"job": ID} or {"relay": KEY}
void Jobs::transfers_suspend_resume(HttpRequest&& req, Responder& r, const PathSegments& p) {
  require_json(req);
  auto body = json::parse_object(req.body);
  const bool suspend = p[2] == "suspend";
  const auto job_id = json::get_int(body, "job", 0);
  const auto relay = json::get_string(body, "relay", false);
  if ((job_id != 0) == !relay.empty())
    throw Error(ErrorKind::invalid_argument, "name either a job (\"job\": ID) or a relay (\"relay\": KEY)");
  return ctx_.blocking(std::move(r), [this, suspend, job_id, relay] {
    std::vector<std::string> hosts;
    std::string relay_id;
    if (!relay.empty()) {
      const auto all = ctx_.store->list_hosts();
      relay_id = registration_
                     .resolve_host_keys({relay},
                                        "nothing was " + std::string(suspend ? "suspended" : "resumed"), all)
                     .front();
      std::map<std::string, const Host*> by_id;
      for (const auto& h : all) by_id[h.host_id] = &h;
      if (by_id.at(relay_id)->role != HostRole::relay)
        throw Error(ErrorKind::invalid_argument, "\"" + relay + "\" is not a relay; name a relay or a job");
      hosts.push_back(relay_id);
      for (const auto& h : all)
        if (is_below(by_id, h, relay_id)) hosts.push_back(h.host_id);
    }
    auto change = ctx_.store->suspend_transfers(job_id, hosts, suspend);
    dispatch_.wake(change.vias, true);
    const auto scope = job_id ? "job " + std::to_string(job_id) : "relay " + relay;
    spdlog::info("transfers of {} {}: {} entr(ies)", scope, suspend ? "suspended" : "resumed",
                 change.entries);
    bj::object out{{suspend ? "suspended" : "resumed", change.entries}};
    if (job_id)
      out["job_id"] = job_id;
    else
      out["relay"] = relay_id;
    return json_response(200, out);
  });
}

void Jobs::job_create(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  Job job = json::job_from_json(body);
  if (job.destinations.empty())
    throw Error(ErrorKind::invalid_argument, "a job needs at least one destination; no job was created");
  validate_schedule(job.schedule, fs::now_unix());
  validate_rollout(job.rollout);
  if (!targets_agents(job.type) &&
      (job.schedule.timing == InstallTiming::at_start || job.schedule.timing == InstallTiming::at_stop))
    throw Error(ErrorKind::invalid_argument, "timing " + std::string(to_string(job.schedule.timing)) +
                                                 " applies to jobs for agents only; no job was created");
  if (!needs_package(job.type)) {
    job.package_name.clear();
    job.package_version.clear();
    job.split = {};
  }
  if (job.type == JobType::collect_files) validate_collect(job.collect);
  if (job.force && job.type != JobType::install)
    throw Error(ErrorKind::invalid_argument, "force applies to install jobs only (this one is " +
                                                 std::string(to_string(job.type)) + "); no job was created");
  if (job.type == JobType::uninstall) job.split = {};  // nothing is transferred
  job.key_mode = std::string(to_string(ctx_.settings.key_mode));
  // Who, as the audit trail has it: the client's word for its user, and its address.
  job.created_by = req.remote_address;
  if (auto it = req.headers.find("x-distrib-actor"); it != req.headers.end() && !it->second.empty())
    job.created_by = audit_actor(req) + " from " + req.remote_address;
  job.id = 0;
  job.upstream_id = 0;
  job.id_groups.clear();
  return ctx_.blocking(std::move(r), [this, job]() mutable {
    // A relay's own jobs use packages of its parent: the manifest is fetched on demand.
    const bool wants_package = needs_package(job.type);
    const auto package = wants_package ? uplink_.manifest(job.package_name, job.package_version, false)
                                       : std::optional<Manifest>(Manifest{});
    if (!package)
      throw Error(ErrorKind::not_found, "package \"" + job.package_name + "\" " + job.package_version +
                                            " does not exist; no job was created");
    auto ex = expand_destinations(job);
    job.id_groups = ex.id_groups;
    auto created = ctx_.store->create_job(job, ex.host_ids);
    spdlog::info(
        "job {} created: {} {} {} on {} host(s){}{}", created.job.id, to_string(job.type), job.package_name,
        job.package_version, created.entries,
        job.id_groups.empty() ? "" : ", standing for ID group(s) " + join_list(job.id_groups),
        job.rollout.waves.empty() ? "" : " in " + std::to_string(job.rollout.waves.size()) + " waves");
    dispatch_.wake(created.vias, true);
    scheduler_.poke();
    return json_response(
        201, bj::object{
                 {"job", json::to_json(created.job)}, {"entries", created.entries}, {"skipped", ex.skipped}});
  });
}

void Jobs::job_list(HttpRequest&& req, Responder& r, const PathSegments&) {
  const int limit = static_cast<int>(manager::query_number(req, "limit", 100, 1, 10000));
  return ctx_.blocking(std::move(r), [this, limit] {
    bj::array arr;
    for (const auto& l : ctx_.store->list_jobs(limit)) {
      auto o = json::to_json(l.job);
      o["progress"] = json::to_json(l.progress);
      arr.push_back(std::move(o));
    }
    return json_response(200, bj::object{{"jobs", std::move(arr)}});
  });
}

// The job id in /v1/jobs/{id}/...: a positive whole number.
std::int64_t job_id_of(const PathSegments& p) {
  std::int64_t id = 0;
  try {
    std::size_t used = 0;
    id = std::stoll(p[2], &used);
    if (used != p[2].size() || id <= 0) throw std::invalid_argument("id");
  } catch (const std::exception&) {
    throw Error(ErrorKind::invalid_argument, "\"" + p[2] + "\" is not a job id");
  }
  return id;
}

void Jobs::job_show(HttpRequest&&, Responder& r, const PathSegments& p) {
  const auto id = job_id_of(p);
  return ctx_.blocking(std::move(r), [this, id] {
    auto job = ctx_.store->find_job(id);
    if (!job) throw Error(ErrorKind::not_found, "job " + std::to_string(id) + " does not exist");
    auto entries = ctx_.store->job_entries(id);
    bj::array arr;
    for (const auto& e : entries) arr.push_back(json::to_json(e));
    bj::object out{{"job", json::to_json(*job)},
                   {"progress", json::to_json(summarize(entries))},
                   {"entries", std::move(arr)}};
    if (!job->rollout.waves.empty()) {
      bj::array waves;
      const auto counts = ctx_.store->wave_counts(id);
      for (std::size_t w = 1; w <= job->rollout.waves.size(); ++w) {
        WaveCounts c;
        for (const auto& x : counts)
          if (x.wave == static_cast<int>(w)) c = x;
        c.wave = static_cast<int>(w);
        waves.push_back(bj::object{{"wave", c.wave},
                                   {"percent", job->rollout.waves[w - 1]},
                                   {"state", wave_state(*job, c)},
                                   {"total", c.total},
                                   {"succeeded", c.succeeded},
                                   {"failed", c.failed},
                                   {"final", c.final_count}});
      }
      out["waves"] = std::move(waves);
    }
    return json_response(200, out);
  });
}

void Jobs::job_retry(HttpRequest&&, Responder& r, const PathSegments& p) {
  const auto id = job_id_of(p);
  return ctx_.blocking(std::move(r), [this, id] {
    auto job = ctx_.store->find_job(id);
    if (!job) throw Error(ErrorKind::not_found, "job " + std::to_string(id) + " does not exist");
    if (job->schedule.expires_at && job->schedule.expires_at <= fs::now_unix())
      throw Error(ErrorKind::conflict,
                  "job " + std::to_string(id) + " has expired; create a new job instead");
    auto [n, vias] = ctx_.store->retry_failed(id);
    dispatch_.wake(vias, true);
    spdlog::info("job {}: {} failed entr(ies) retried", id, n);
    return json_response(200, bj::object{{"job_id", id}, {"retried", n}});
  });
}

void Jobs::job_complete_now(HttpRequest&&, Responder& r, const PathSegments& p) {
  const auto id = job_id_of(p);
  return ctx_.blocking(std::move(r), [this, id] {
    auto change = ctx_.store->clear_split(id);
    dispatch_.wake(change.vias, true);
    spdlog::info("job {}: split distribution ended; the rest travels unsplit ({} open entries)", id,
                 change.entries);
    return json_response(200, bj::object{{"job_id", id}, {"entries", change.entries}});
  });
}

void Jobs::job_cancel(HttpRequest&&, Responder& r, const PathSegments& p) {
  const auto id = job_id_of(p);
  return ctx_.blocking(std::move(r), [this, id] {
    // Relays below hear of it in their next work answer and cancel down their subtree.
    const auto cancel = ctx_.store->cancel_job_entries(id);
    dispatch_.wake(cancel.vias, true);
    spdlog::info("job {} cancelled ({} entries)", id, cancel.cancelled);
    return json_response(200, bj::object{{"job_id", id}, {"cancelled", cancel.cancelled}});
  });
}

}  // namespace distrib::manager
