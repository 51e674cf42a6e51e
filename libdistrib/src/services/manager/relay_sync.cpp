// At a parent: the sync route relays below call (hosts, last contacts and entry states of their
// subtree; acknowledgements of routed entries).
#include "services/manager/relay_sync.h"

#include "services/manager/dispatch.h"
#include "services/manager/registration.h"
#include "services/manager/scheduler.h"
#include "services/manager/uplink.h"

namespace distrib::manager {

void RelaySync::register_routes(Router& t) {
  t.add(Route{"POST", "/v1/relay/sync", Access::relay, bind(this, &RelaySync::relay_sync)});
}

// A relay reported a host that neither is below it nor enrolled through it: not recorded.
void RelaySync::refused_claim(const Host& relay, const Host& h) {
  Event e;
  e.type = "host.refused";
  e.severity = Severity::warning;
  e.host_id = h.host_id;
  e.subject = h.name;
  e.message = "relay " + relay.name + " (" + relay.host_id + ") reported host " + h.name + " (" + h.host_id +
              ") below it, but that host did not enrol through it; ignored";
  spdlog::warn("{}", e.message);
  ctx_.store->record_events({e});
}

void RelaySync::relay_sync(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  const auto relay = json::get_string(body, "host_id");
  if (!is_valid_host_id(relay)) throw Error(ErrorKind::invalid_argument, "host_id must be a host UUID");
  ctx_.callers.require_self(req, relay);
  std::vector<Host> hosts;
  std::map<std::string, Placement> proofs;  // hosts' own statements of where they registered
  for (const auto& v : bounded_objects(body, "hosts", kMaxHosts)) {
    auto h = json::host_from_json(v.as_object());
    validate_host_fields(h);
    if (!is_valid_host_id(h.parent))
      throw Error(ErrorKind::invalid_argument,
                  "host \"" + h.name.substr(0, 64) + "\": parent must be a host UUID");
    if (auto it = v.as_object().find("proof"); it != v.as_object().end() && it->value().is_object())
      proofs[h.host_id] = placement_from_json(it->value().as_object());
    hosts.push_back(std::move(h));
  }
  std::vector<std::pair<std::string, std::int64_t>> seen;
  for (const auto& v : bounded_objects(body, "seen", kMaxSeen)) {
    seen.emplace_back(json::get_string(v.as_object(), "host_id"), json::get_int(v.as_object(), "last_seen"));
  }
  std::vector<EntryReport> reports;
  for (const auto& v : bounded_objects(body, "reports", kMaxReports)) {
    reports.push_back(json::report_from_json(v.as_object()));
  }
  std::vector<std::pair<std::int64_t, EntryState>> acks;
  for (const auto& v : bounded_objects(body, "acks", kMaxAcks)) {
    acks.emplace_back(json::get_int(v.as_object(), "entry_id"),
                      parse_entry_state(json::get_string(v.as_object(), "state")));
  }
  return ctx_.blocking(std::move(r), [this, relay, hosts, proofs, seen, reports, acks] {
    auto me = ctx_.store->find_host(relay);
    if (!me || me->role != HostRole::relay || me->via != relay)
      throw Error(
          ErrorKind::forbidden,
          "host " + relay + " is not a relay registered directly with this manager; it must register first");
    dispatch_.note_contact(relay);
    const auto gen = ctx_.work_cache.generation(relay);
    ctx_.store->mark_pushed(relay, acks);
    for (const auto& h : hosts) {
      if (h.host_id == ctx_.my_id || h.host_id == relay) continue;
      const auto proof = proofs.find(h.host_id);
      if (ctx_.callers.may_claim(relay, h.host_id, *ctx_.store)) {
        if (proof != proofs.end())
          ctx_.callers.accept_placement(h.host_id, proof->second, ctx_.client_ca_pem());
      } else if (proof == proofs.end() ||
                 !ctx_.callers.may_claim_moved(relay, h, proof->second, ctx_.client_ca_pem(), *ctx_.store)) {
        refused_claim(*me, h);
        continue;
      }
      const auto change = registration_.record_host(h, relay);
      if (change.changed)
        spdlog::info("{} {} ({}) registered below relay {}", to_string(h.role), h.name, h.host_id, me->name);
    }
    ctx_.store->touch_hosts(seen);
    uplink_.note_contacts(seen);
    bj::array results;
    for (const auto& rep : reports) {
      const auto outcome = ctx_.store->apply_report(relay, rep, true);
      if (outcome.kind == ReportOutcome::Kind::applied && is_final(rep.state)) {
        spdlog::info("entry {} below relay {}: {}", rep.entry_id, me->name, to_string(rep.state));
        scheduler_.poke();
      }
      results.push_back(bj::object{{"entry_id", rep.entry_id},
                                   {"outcome", std::string(to_string(outcome.kind))},
                                   {"state", std::string(to_string(outcome.current))}});
    }
    if (!reports.empty()) uplink_.notify_sync();
    dispatch_.settle(relay, gen, dispatch_.has_work(relay));
    return json_response(200, bj::object{{"results", std::move(results)}, {"hosts", hosts.size()}});
  });
}

}  // namespace distrib::manager
