// Status, route list, cluster status, events, audit trail, metrics and content counters.
#include "services/manager/observe_api.h"

#include "services/manager/audit_trail.h"
#include "services/manager/content.h"
#include "services/manager/content_health.h"
#include "services/manager/uplink.h"
#include "services/observe.h"
#include "services/upstream.h"

#include <limits>

namespace distrib::manager {

void ObserveApi::register_routes(Router& t) {
  if (ctx_.settings.metrics) {
    t.add(Route{"GET", "/metrics", Access::metrics, bind(this, &ObserveApi::get_metrics)});
    t.add(Route{"HEAD", "/metrics", Access::metrics, bind(this, &ObserveApi::get_metrics)});
  }
  t.add(Route{"GET", "/v1/status", Access::open, bind(this, &ObserveApi::get_status)});
  t.add(Route{"GET", "/v1/routes", Access::view, bind(this, &ObserveApi::get_routes)});
  t.add(Route{"GET", "/v1/cluster/status", Access::view, bind(this, &ObserveApi::get_cluster_status)});
  t.add(Route{"GET", "/v1/stats", Access::view, bind(this, &ObserveApi::stats)});
  t.add(Route{"GET", "/v1/events", Access::view, bind(this, &ObserveApi::events_page)});
  t.add(Route{"GET", "/v1/events/stream", Access::view, bind(this, &ObserveApi::events_stream)});
  t.add(Route{"GET", "/v1/events/sinks", Access::view, bind(this, &ObserveApi::events_sinks)});
  t.add(Route{"GET", "/v1/audit", Access::administer, bind(this, &ObserveApi::audit_route)});
}

namespace {
EventFilter filter_of(const HttpRequest& req) {
  EventFilter f;
  if (auto it = req.query.find("type"); it != req.query.end() && !it->second.empty())
    f.types = parse_event_type_patterns(it->second);
  if (auto it = req.query.find("severity"); it != req.query.end() && !it->second.empty())
    f.min_severity = parse_severity(it->second);
  return f;
}
}  // namespace

void ObserveApi::audit_answer(const HttpRequest& req, Responder& r, bool host_route) {
  auto head = std::make_shared<HttpRequest>();
  head->method = req.method;
  head->path = req.path;
  head->remote_address = req.remote_address;
  if (host_route) {
    // A host's request is recorded when refused, naming the certificate it came with.
    const auto id = ctx_.callers.of(req);
    head->headers["x-distrib-actor"] = id ? id->role + " " + id->host_id
                                       : req.peer.present()
                                           ? "certificate " + req.peer.fingerprint.substr(0, 23)
                                           : "no certificate";
  } else if (auto it = req.headers.find("x-distrib-actor"); it != req.headers.end()) {
    head->headers.insert(*it);
  }
  r.on_answer([this, head, host_route](const HttpResponse& res) {
    const bool refused = res.status == 401 || res.status == 403;
    if ((host_route ? !refused : !audited(*head, res.status)) || !ctx_.pool) return;
    auto rec = audit_record(*head, res, fs::now_unix_ms());
    if (res.status == 401 || res.status == 403) {
      // Refused credentials: at most one record per address and actor every 10 s, counting the rest,
      // so that anyone who can reach the port cannot flood the trail and the store.
      std::lock_guard lock(audit_mutex_);
      if (refused_by_.size() > 10000) refused_by_.clear();
      // Per address and credentials: one host's refusals do not hide another's.
      auto& seen = refused_by_[rec.remote + " " + rec.actor];
      if (rec.at_ms - seen.first < 10000) {
        ++seen.second;
        return;
      }
      if (seen.second > 0)
        rec.result += " (and " + std::to_string(seen.second) + " more refused from here before)";
      seen = {rec.at_ms, 0};
    }
    audit_.record(std::move(rec));
  });
}

void ObserveApi::get_status(HttpRequest&&, Responder& r, const PathSegments&) {
  bj::array up;
  for (const auto& h : ctx_.path()) up.emplace_back(h);
  r(json_response(200, bj::object{{"status", "active"},
                                  {"version", distrib::version()},
                                  {"protocol", kProtocolVersion},
                                  {"role", ctx_.role()},
                                  {"host_id", ctx_.my_id},
                                  {"path", std::move(up)},
                                  {"key_mode", std::string(to_string(ctx_.settings.key_mode))}}));
}

void ObserveApi::get_routes(HttpRequest&&, Responder& r, const PathSegments&) {
  bj::array out;
  for (const auto& route : router_.routes())
    out.push_back(bj::object{{"method", route.method},
                             {"path", route.pattern},
                             {"access", std::string(to_string(route.access))},
                             {"body_limit", route.body_limit ? route.body_limit : kDefaultBodyLimit}});
  r(json_response(200, bj::object{{"routes", std::move(out)}}));
}

void ObserveApi::get_cluster_status(HttpRequest&&, Responder& r, const PathSegments&) {
  if (!ctx_.settings.cluster_status)
    throw Error(ErrorKind::not_found, "this manager is not clustered (distribd --failover is not set)");
  return ctx_.blocking(std::move(r), [this] {
    HttpResponse res;
    res.body = ctx_.settings.cluster_status();
    return res;
  });
}

void ObserveApi::events_page(HttpRequest&& req, Responder& r, const PathSegments&) {
  const auto filter = filter_of(req);
  {
    // A page of the outbox: after an id, or the newest `limit` events.
    const long limit = query_number(req, "limit", 100, 1, 10000);
    const bool tail = req.query.find("after") == req.query.end();
    const long after = query_number(req, "after", 0, 0, std::numeric_limits<long>::max());
    return ctx_.blocking(std::move(r), [this, filter, limit, tail, after] {
      const auto last = ctx_.store->last_event_id();
      std::vector<Event> page;
      // Newest `limit` that match: read backwards; else forwards from `after`. Either way
      // at most 100,000 events are looked at for one page.
      std::int64_t bound = tail ? 0 : after;
      for (int read = 0; static_cast<long>(page.size()) < limit && read < 100000;) {
        const auto batch =
            tail ? ctx_.store->events_before(bound, 500) : ctx_.store->events_after(bound, 500);
        for (const auto& e : batch) {
          bound = e.id;
          if (filter.matches(e) && static_cast<long>(page.size()) < limit) page.push_back(e);
        }
        read += static_cast<int>(batch.size());
        if (batch.size() < 500) break;
      }
      if (tail) std::reverse(page.begin(), page.end());
      std::string body = "{\"events\":[";
      for (std::size_t k = 0; k < page.size(); ++k) body += (k ? "," : "") + event_to_json(page[k]);
      body += "],\"last_id\":" + std::to_string(last) + "}";
      HttpResponse res;
      res.body = std::move(body);
      return res;
    });
  }
}

void ObserveApi::events_stream(HttpRequest&& req, Responder& r, const PathSegments&) {
  const auto filter = filter_of(req);
  {
    // Server-sent events: from Last-Event-ID or ?after=, else from now on.
    std::int64_t after = -1;
    if (auto it = req.headers.find("last-event-id"); it != req.headers.end() && !it->second.empty()) {
      try {
        after = std::stoll(it->second);
      } catch (const std::exception&) {
        throw Error(ErrorKind::invalid_argument,
                    "Last-Event-ID must be an event id, not \"" + it->second + "\"");
      }
    } else if (req.query.count("after")) {
      after = query_number(req, "after", 0, 0, std::numeric_limits<long>::max());
    }
    return ctx_.blocking(std::move(r), [this, filter, after] {
      HttpResponse res;
      res.content_type = "text/event-stream";
      res.stream = std::make_shared<HttpStream>();
      const auto from = after >= 0 ? after : ctx_.store->last_event_id();
      // The position first (an "id:" without data), so a client that reconnects before any
      // event arrives resumes from here.
      res.stream->write("retry: 2000\nid: " + std::to_string(from) + "\n\n");
      ctx_.events->subscribe(res.stream, from, filter);
      return res;
    });
  }
}

void ObserveApi::events_sinks(HttpRequest&& req, Responder& r, const PathSegments&) {
  filter_of(req);  // a malformed filter is refused here too
  {
    return ctx_.blocking(std::move(r), [this] {
      bj::array sinks;
      for (const auto& s : ctx_.events->status())
        sinks.push_back(bj::object{{"name", s.name},
                                   {"type", s.type},
                                   {"target", s.target},
                                   {"cursor", s.cursor},
                                   {"pending", s.pending},
                                   {"delivered", s.delivered},
                                   {"failures", s.failures},
                                   {"dropped", s.dropped},
                                   {"last_error", s.last_error},
                                   {"last_error_ms", s.last_error_ms}});
      return json_response(200, bj::object{{"sinks", std::move(sinks)}});
    });
  }
}

void ObserveApi::audit_route(HttpRequest&& req, Responder& r, const PathSegments&) {
  const long limit = query_number(req, "limit", 50, 1, 10000);
  const long before = query_number(req, "before", 0, 0, std::numeric_limits<long>::max());
  return ctx_.blocking(std::move(r), [this, limit, before] {
    bj::array out;
    for (const auto& a : ctx_.store->audit_records(static_cast<int>(limit), before))
      out.push_back(bj::object{{"id", a.id},
                               {"at_ms", a.at_ms},
                               {"time", format_rfc3339_ms(a.at_ms)},
                               {"actor", a.actor},
                               {"remote", a.remote},
                               {"action", a.action},
                               {"target", a.target},
                               {"status", a.status},
                               {"result", a.result}});
    return json_response(200, bj::object{{"audit", std::move(out)}});
  });
}

void ObserveApi::get_metrics(HttpRequest&&, Responder& r, const PathSegments&) {
  MetricsSnapshot m;
  m.version = distrib::version();
  m.role = ctx_.role();
  m.host_id = ctx_.my_id;
  const auto load = ctx_.work_cache.load(
      fs::now_unix() - 2 * std::max(ctx_.settings.poll_timeout_seconds, ctx_.settings.poll_interval_seconds));
  m.agents_connected = load.connected;
  m.polls_waiting = load.waiting;
  m.polls = ctx_.polls.load();
  const auto c = content_.counters();
  for (const auto& [h, sv] : c.served_by) m.sent_to[h] = {sv.chunks, sv.bytes};
  if (const auto* upstream = uplink_.chunk_source()) m.received_from_parent = upstream->bytes();
  m.request_bytes_received = ctx_.request_bytes.load();
  m.cache_hits = c.cache_hits;
  m.cache_misses = c.cache_misses;
  m.busy_answers = c.busy_answers;
  m.active_transfers = c.active_transfers;
  m.event_streams = ctx_.events->subscribers();
  m.audit_pending = audit_.pending();
  m.audit_lost = audit_.lost();
  m.verification_failures = health_.failures();
  m.chunks_quarantined = health_.quarantined();
  ctx_.blocking(std::move(r), [this, m]() mutable {
    m.counts = ctx_.store->counts();
    if (!m.sent_to.empty()) m.sent_to = peers_by_name(m.sent_to, ctx_.store->list_hosts());
    m.store = ctx_.store->stats();
    m.sinks = ctx_.events->status();
    m.last_event_id = ctx_.store->last_event_id();
    HttpResponse res;
    res.content_type = "text/plain; version=0.0.4";
    res.body = render_metrics(m);
    if (ctx_.settings.cluster_metrics) res.body += ctx_.settings.cluster_metrics();
    return res;
  });
}

void ObserveApi::stats(HttpRequest&&, Responder& r, const PathSegments&) {
  bj::array by;
  std::uint64_t chunks_total = 0, bytes_total = 0;
  const auto c = content_.counters();
  for (const auto& [h, s] : c.served_by) {
    by.push_back(bj::object{{"host_id", h}, {"chunks", s.chunks}, {"bytes", s.bytes}});
    chunks_total += s.chunks;
    bytes_total += s.bytes;
  }
  bj::object content{{"chunks_served", chunks_total},  {"bytes_served", bytes_total},
                     {"by_requester", std::move(by)},  {"cache_hits", c.cache_hits},
                     {"cache_misses", c.cache_misses}, {"busy_answers", c.busy_answers}};
  content["active_transfers"] = c.active_transfers;
  content["max_transfers"] = ctx_.settings.max_transfers;
  content["rate_limit_per_host"] = ctx_.settings.rate_limit_per_host;
  if (const auto* upstream = uplink_.chunk_source()) {
    content["upstream_fetches"] = upstream->fetches();
    content["upstream_bytes"] = upstream->bytes();
    content["upstream_joined"] = upstream->joined();
  }
  r(json_response(
      200, bj::object{{"host_id", ctx_.my_id}, {"role", ctx_.role()}, {"content", std::move(content)}}));
}

}  // namespace distrib::manager
