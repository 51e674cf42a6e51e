// Status, route list, cluster status, events, audit trail, metrics and content counters.
#include "services/manager/impl.h"

namespace distrib {

// The audit trail of an admin request: the request (without its body) and its answer,
// written off the network thread once the answer is given (a refused token included).
void Manager::Impl::audit_answer(const HttpRequest& req, Responder& r) {
  auto head = std::make_shared<HttpRequest>();
  head->method = req.method;
  head->path = req.path;
  head->remote_address = req.remote_address;
  if (auto it = req.headers.find("x-distrib-actor"); it != req.headers.end()) head->headers.insert(*it);
  r.on_answer([this, head](const HttpResponse& res) {
    if (!audited(*head, res.status) || !pool) return;
    auto rec = audit_record(*head, res, fs::now_unix_ms());
    if (res.status == 401 || res.status == 403) {
      // Refused credentials: at most one record per address every 10 s, counting the rest,
      // so that anyone who can reach the port cannot flood the trail and the store.
      std::lock_guard lock(audit_mutex);
      if (refused_by.size() > 10000) refused_by.clear();
      auto& seen = refused_by[rec.remote];
      if (rec.at_ms - seen.first < 10000) {
        ++seen.second;
        return;
      }
      if (seen.second > 0)
        rec.result += " (and " + std::to_string(seen.second) + " more refused from here before)";
      seen = {rec.at_ms, 0};
    }
    pool->submit([this, rec = std::move(rec)] {
      try {
        store->append_audit({rec});
      } catch (const std::exception& e) {
        spdlog::error("audit trail: cannot record {} by {} ({}): {}", rec.action, rec.actor, rec.result,
                      e.what());
      }
    });
  });
}

void Manager::Impl::get_status(HttpRequest&&, Responder& r, const PathSegments&) {
  bj::array up;
  {
    std::lock_guard lock(relay_mutex);
    for (const auto& h : tree_path) up.emplace_back(h);
  }
  r(json_response(200, bj::object{{"status", "active"},
                                  {"version", distrib::version()},
                                  {"protocol", kProtocolVersion},
                                  {"role", is_relay() ? "relay" : "manager"},
                                  {"host_id", my_id},
                                  {"path", std::move(up)},
                                  {"key_mode", std::string(to_string(settings.key_mode))}}));
}

void Manager::Impl::get_routes(HttpRequest&&, Responder& r, const PathSegments&) {
  bj::array out;
  for (const auto& route : router.routes())
    out.push_back(bj::object{{"method", route.method},
                             {"path", route.pattern},
                             {"access", std::string(to_string(route.access))},
                             {"body_limit", route.body_limit ? route.body_limit : kDefaultBodyLimit}});
  r(json_response(200, bj::object{{"routes", std::move(out)}}));
}

void Manager::Impl::get_cluster_status(HttpRequest&&, Responder& r, const PathSegments&) {
  if (!settings.cluster_status)
    throw Error(ErrorKind::not_found, "this manager is not clustered (distribd --failover is not set)");
  return blocking(std::move(r), [this] {
    HttpResponse res;
    res.body = settings.cluster_status();
    return res;
  });
}

auto Manager::Impl::filter_of(const HttpRequest& req) -> EventFilter {
  EventFilter f;
  if (auto it = req.query.find("type"); it != req.query.end() && !it->second.empty())
    f.types = parse_event_type_patterns(it->second);
  if (auto it = req.query.find("severity"); it != req.query.end() && !it->second.empty())
    f.min_severity = parse_severity(it->second);
  return f;
}

void Manager::Impl::events_page(HttpRequest&& req, Responder& r, const PathSegments&) {
  const auto filter = filter_of(req);
  {
    // A page of the outbox: after an id, or the newest `limit` events.
    const long limit = query_number(req, "limit", 100, 1, 10000);
    const bool tail = req.query.find("after") == req.query.end();
    const long after = query_number(req, "after", 0, 0, std::numeric_limits<long>::max());
    return blocking(std::move(r), [this, filter, limit, tail, after] {
      const auto last = store->last_event_id();
      std::vector<Event> page;
      // Newest `limit` that match: read backwards; else forwards from `after`. Either way
      // at most 100,000 events are looked at for one page.
      std::int64_t bound = tail ? 0 : after;
      for (int read = 0; static_cast<long>(page.size()) < limit && read < 100000;) {
        const auto batch = tail ? store->events_before(bound, 500) : store->events_after(bound, 500);
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

void Manager::Impl::events_stream(HttpRequest&& req, Responder& r, const PathSegments&) {
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
    return blocking(std::move(r), [this, filter, after] {
      HttpResponse res;
      res.content_type = "text/event-stream";
      res.stream = std::make_shared<HttpStream>();
      const auto from = after >= 0 ? after : store->last_event_id();
      // The position first (an "id:" without data), so a client that reconnects before any
      // event arrives resumes from here.
      res.stream->write("retry: 2000\nid: " + std::to_string(from) + "\n\n");
      events->subscribe(res.stream, from, filter);
      return res;
    });
  }
}

void Manager::Impl::events_sinks(HttpRequest&& req, Responder& r, const PathSegments&) {
  filter_of(req);  // a malformed filter is refused here too
  {
    return blocking(std::move(r), [this] {
      bj::array sinks;
      for (const auto& s : events->status())
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

void Manager::Impl::audit_route(HttpRequest&& req, Responder& r, const PathSegments&) {
  const long limit = query_number(req, "limit", 50, 1, 10000);
  const long before = query_number(req, "before", 0, 0, std::numeric_limits<long>::max());
  return blocking(std::move(r), [this, limit, before] {
    bj::array out;
    for (const auto& a : store->audit_records(static_cast<int>(limit), before))
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

void Manager::Impl::get_metrics(HttpRequest&&, Responder& r, const PathSegments&) {
  MetricsSnapshot m;
  m.version = distrib::version();
  m.role = is_relay() ? "relay" : "manager";
  m.host_id = my_id;
  const auto load = work_cache.load(
      fs::now_unix() - 2 * std::max(settings.poll_timeout_seconds, settings.poll_interval_seconds));
  m.agents_connected = load.connected;
  m.polls_waiting = load.waiting;
  m.polls = polls.load();
  {
    std::lock_guard lock(stats_mutex);
    for (const auto& [h, sv] : served_by) m.sent_to[h] = {sv.chunks, sv.bytes};
  }
  if (upstream) m.received_from_parent = upstream->bytes();
  m.request_bytes_received = request_bytes.load();
  m.cache_hits = cache_hits.load();
  m.cache_misses = cache_misses.load();
  m.busy_answers = busy_answers.load();
  {
    std::lock_guard lock(transfer_mutex);
    m.active_transfers = static_cast<std::int64_t>(active_transfers.size());
  }
  m.event_streams = events->subscribers();
  blocking(std::move(r), [this, m]() mutable {
    m.counts = store->counts();
    m.store = store->stats();
    m.sinks = events->status();
    m.last_event_id = store->last_event_id();
    HttpResponse res;
    res.content_type = "text/plain; version=0.0.4";
    res.body = render_metrics(m);
    return res;
  });
}

void Manager::Impl::stats(HttpRequest&&, Responder& r, const PathSegments&) {
  bj::array by;
  std::uint64_t chunks_total = 0, bytes_total = 0;
  {
    std::lock_guard lock(stats_mutex);
    for (const auto& [h, s] : served_by) {
      by.push_back(bj::object{{"host_id", h}, {"chunks", s.chunks}, {"bytes", s.bytes}});
      chunks_total += s.chunks;
      bytes_total += s.bytes;
    }
  }
  bj::object content{{"chunks_served", chunks_total},       {"bytes_served", bytes_total},
                     {"by_requester", std::move(by)},       {"cache_hits", cache_hits.load()},
                     {"cache_misses", cache_misses.load()}, {"busy_answers", busy_answers.load()}};
  {
    std::lock_guard lock(transfer_mutex);
    content["active_transfers"] = active_transfers.size();
  }
  content["max_transfers"] = settings.max_transfers;
  content["rate_limit_per_host"] = settings.rate_limit_per_host;
  if (upstream) {
    content["upstream_fetches"] = upstream->fetches();
    content["upstream_bytes"] = upstream->bytes();
    content["upstream_joined"] = upstream->joined();
  }
  r(json_response(200, bj::object{{"host_id", my_id},
                                  {"role", is_relay() ? "relay" : "manager"},
                                  {"content", std::move(content)}}));
}

}  // namespace distrib
