#include "services/observe.h"

#include <algorithm>

#include <boost/json.hpp>

namespace distrib {

namespace {

// Label values escape backslash, double quote and newline.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

class Exposition {
 public:
  void family(const std::string& name, const char* type, const char* help) {
    out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  template <class T>
  void sample(const std::string& name, T value, const std::string& labels = {}) {
    raw(name, std::to_string(value), labels);
  }
  void raw(const std::string& name, const std::string& value, const std::string& labels = {}) {
    out_ += name;
    if (!labels.empty()) out_ += "{" + labels + "}";
    out_ += " " + value + "\n";
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string render_metrics(const MetricsSnapshot& m) {
  Exposition x;
  x.family("distrib_info", "gauge", "This server: version, role and host identifier.");
  x.sample("distrib_info", 1,
           "version=\"" + label(m.version) + "\",role=\"" + label(m.role) + "\",host_id=\"" +
               label(m.host_id) + "\"");
  x.family("distrib_agents_connected", "gauge",
           "Hosts below this server heard from within two poll timeouts.");
  x.sample("distrib_agents_connected", m.agents_connected);
  x.family("distrib_polls_waiting", "gauge", "Long polls held open now.");
  x.sample("distrib_polls_waiting", m.polls_waiting);
  x.family("distrib_polls_total", "counter", "Work polls received since start.");
  x.sample("distrib_polls_total", m.polls);
  x.family("distrib_hosts", "gauge", "Hosts registered in this server's database.");
  x.sample("distrib_hosts", m.counts.hosts);
  x.family("distrib_jobs", "gauge", "Jobs by state: open (an entry is not final) or finished.");
  x.sample("distrib_jobs", m.counts.open_jobs, "state=\"open\"");
  x.sample("distrib_jobs", m.counts.jobs - m.counts.open_jobs, "state=\"finished\"");
  x.family("distrib_job_entries", "gauge", "Job entries by state.");
  for (const char* state : {"waiting", "transferring", "transferred", "installing", "suspended", "succeeded",
                            "failed", "cancelled", "expired", "not_applicable"}) {
    auto it = m.counts.entries_by_state.find(state);
    x.sample("distrib_job_entries", it == m.counts.entries_by_state.end() ? 0 : it->second,
             std::string("state=\"") + state + "\"");
  }
  x.family("distrib_link_sent_bytes_total", "counter",
           "Content bytes sent to each requesting host (agent or relay).");
  for (const auto& [peer, v] : m.sent_to)
    x.sample("distrib_link_sent_bytes_total", v.second, "peer=\"" + label(peer) + "\"");
  x.family("distrib_link_sent_chunks_total", "counter", "Content chunks sent to each requesting host.");
  for (const auto& [peer, v] : m.sent_to)
    x.sample("distrib_link_sent_chunks_total", v.first, "peer=\"" + label(peer) + "\"");
  x.family("distrib_link_received_bytes_total", "counter", "Content bytes fetched from the parent (relays).");
  x.sample("distrib_link_received_bytes_total", m.received_from_parent, "peer=\"parent\"");
  x.family("distrib_request_received_bytes_total", "counter", "Request body bytes received on every route.");
  x.sample("distrib_request_received_bytes_total", m.request_bytes_received);
  x.family("distrib_chunk_cache_hits_total", "counter", "Chunks served from the content cache.");
  x.sample("distrib_chunk_cache_hits_total", m.cache_hits);
  x.family("distrib_chunk_cache_misses_total", "counter",
           "Chunks that had to be fetched from the parent first.");
  x.sample("distrib_chunk_cache_misses_total", m.cache_misses);
  x.family("distrib_content_verification_failures_total", "counter",
           "Chunks that failed verification, by the tier that found it (manager, relay, agent) and whose "
           "copy it was (store: this server's own; otherwise the host below that received it).");
  for (const auto& [key, n] : m.verification_failures)
    x.sample("distrib_content_verification_failures_total", n,
             "tier=\"" + label(key.first) + "\",peer=\"" + label(key.second) + "\"");
  x.family("distrib_content_quarantined_total", "counter",
           "Chunks of this server's store found corrupt and moved aside (then fetched or uploaded again).");
  x.sample("distrib_content_quarantined_total", m.chunks_quarantined);
  x.family("distrib_transfers_active", "gauge", "Hosts fetching content now.");
  x.sample("distrib_transfers_active", m.active_transfers);
  x.family("distrib_transfers_busy_total", "counter", "Requests told to come back later (transfer limits).");
  x.sample("distrib_transfers_busy_total", m.busy_answers);

  x.family("distrib_database_call_duration_seconds", "histogram",
           "Duration of database calls (reads and transactions).");
  static constexpr const char* kLe[] = {"0.001", "0.005", "0.025", "0.1", "0.5", "+Inf"};
  std::uint64_t cumulative = 0;
  for (int i = 0; i < 6; ++i) {
    cumulative += m.store.buckets[i];
    x.sample("distrib_database_call_duration_seconds_bucket", cumulative,
             std::string("le=\"") + kLe[i] + "\"");
  }
  const auto us = m.store.total_micros;
  x.raw("distrib_database_call_duration_seconds_sum",
        std::to_string(us / 1000000) + "." + std::to_string(1000000 + us % 1000000).substr(1));
  x.sample("distrib_database_call_duration_seconds_count", cumulative);
  x.family("distrib_database_outages_total", "counter", "Database connections lost and re-established.");
  x.sample("distrib_database_outages_total", m.store.outages);

  x.family("distrib_events_last_id", "gauge", "Identifier of the newest event in the outbox.");
  x.sample("distrib_events_last_id", m.last_event_id);
  x.family("distrib_event_streams", "gauge", "Clients following GET /v1/events/stream.");
  x.sample("distrib_event_streams", m.event_streams);
  x.family("distrib_audit_records_pending", "gauge",
           "Audit records the store could not take yet (retried every 5 s).");
  x.sample("distrib_audit_records_pending", m.audit_pending);
  x.family("distrib_audit_records_lost_total", "counter",
           "Audit records given up (too many waiting, or still waiting at stop); each is logged in full.");
  x.sample("distrib_audit_records_lost_total", m.audit_lost);
  auto per_sink = [&](const std::string& name, const char* type, const char* help, auto value) {
    x.family(name, type, help);
    for (const auto& s : m.sinks) x.sample(name, value(s), "sink=\"" + label(s.name) + "\"");
  };
  per_sink("distrib_event_outbox_pending", "gauge", "Events in the outbox a sink has not taken yet.",
           [](const EventSinkStatus& s) { return s.pending; });
  per_sink("distrib_events_delivered_total", "counter", "Events delivered by each sink since start.",
           [](const EventSinkStatus& s) { return s.delivered; });
  per_sink("distrib_event_delivery_failures_total", "counter", "Failed deliveries by each sink since start.",
           [](const EventSinkStatus& s) { return s.failures; });
  per_sink("distrib_events_dropped_total", "counter", "Events a sink gave up after its max-attempts.",
           [](const EventSinkStatus& s) { return s.dropped; });
  return x.take();
}

bool audited(const HttpRequest& req, int status) {
  if (status == 401 || status == 403) return true;
  // Chunk uploads are the transport of a package upload, which is recorded itself.
  if (req.path.starts_with("/v1/chunks/")) return false;
  return req.method != "GET" && req.method != "HEAD";
}

std::string audit_actor(const HttpRequest& req) {
  std::string actor;
  if (auto it = req.headers.find("x-distrib-actor"); it != req.headers.end())
    for (char c : it->second.substr(0, 128))
      if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) actor += c;
  return actor.empty() ? "admin" : actor;
}

AuditRecord audit_record(const HttpRequest& req, const HttpResponse& res, std::int64_t at_ms) {
  AuditRecord a;
  a.at_ms = at_ms;
  a.actor = audit_actor(req);
  a.remote = req.remote_address;
  a.action = req.method + " " + req.path.substr(0, 240);
  // The object: what the path names after its area ("jobs/12/cancel" → "12/cancel"), else the
  // id a creation answered with.
  const auto area_end = req.path.find('/', 4);
  if (req.path.rfind("/v1/", 0) == 0 && area_end != std::string::npos)
    a.target = req.path.substr(area_end + 1, 240);
  a.status = res.status;
  boost::system::error_code ec;
  const auto body = res.content_type == "application/json" && res.body.size() < (1u << 20)
                        ? boost::json::parse(res.body, ec)
                        : boost::json::value();
  const auto* obj = !ec && body.is_object() ? &body.as_object() : nullptr;
  if (res.status >= 200 && res.status < 300) {
    a.result = "ok";
    if (a.target.empty() && obj)
      for (const char* key : {"id", "job_id"})
        if (auto* v = obj->if_contains(key); v && v->is_int64()) {
          a.target = std::string(key) + " " + std::to_string(v->as_int64());
          break;
        }
    if (a.target.empty() && obj)
      if (auto* pkg = obj->if_contains("package"); pkg && pkg->is_object()) {
        auto* n = pkg->as_object().if_contains("name");
        auto* v = pkg->as_object().if_contains("version");
        if (n && v && n->is_string() && v->is_string())
          a.target = "package " + std::string(n->as_string()) + " " + std::string(v->as_string());
      }
    if (a.target.empty() && obj)
      if (auto* n = obj->if_contains("name"); n && n->is_string()) a.target = std::string(n->as_string());
    if (a.target.empty() && obj)
      if (auto* j = obj->if_contains("job"); j && j->is_object())
        if (auto* v = j->as_object().if_contains("id"); v && v->is_int64())
          a.target = "job " + std::to_string(v->as_int64());
  } else {
    a.result = "HTTP " + std::to_string(res.status);
    if (obj)
      if (auto* e = obj->if_contains("error"); e && e->is_object())
        if (auto* msg = e->as_object().if_contains("message"); msg && msg->is_string())
          a.result = std::string(msg->as_string()).substr(0, 1000);
  }
  return a;
}

std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> peers_by_name(
    const std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>& by_id,
    const std::vector<Host>& hosts) {
  std::map<std::string, std::string> name_of;
  std::map<std::string, int> uses;
  for (const auto& h : hosts) {
    name_of[h.host_id] = h.name;
    ++uses[h.name];
  }
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> out;
  for (const auto& [id, v] : by_id) {
    auto it = name_of.find(id);
    const auto label = it == name_of.end()     ? std::string("(unregistered)")
                       : uses[it->second] == 1 ? it->second
                                               : it->second + "/" + id.substr(0, 8);
    auto& slot = out[label];
    slot.first += v.first;
    slot.second += v.second;
  }
  if (out.size() <= kMaxPeerLabels) return out;
  // Too many series for a scraper: the peers that took the most bytes keep their label.
  std::vector<std::pair<std::string, std::pair<std::uint64_t, std::uint64_t>>> ranked(out.begin(), out.end());
  std::nth_element(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(kMaxPeerLabels - 1),
                   ranked.end(),
                   [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> capped(ranked.begin(),
                                                                        ranked.begin() + kMaxPeerLabels - 1);
  auto& rest = capped["(others)"];
  for (auto it = ranked.begin() + kMaxPeerLabels - 1; it != ranked.end(); ++it) {
    rest.first += it->second.first;
    rest.second += it->second.second;
  }
  return capped;
}

}  // namespace distrib
