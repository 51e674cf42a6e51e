#pragma once
// What the manager tells about itself: the Prometheus exposition of its metrics and the audit
// record of an administrative request. Pure functions over plain data (unit-tested).
#include <distrib/model/event.h>
#include <distrib/net/http.h>
#include <distrib/services/events.h>
#include <distrib/store/store.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace distrib {

struct MetricsSnapshot {
  std::string version, role, host_id;
  std::int64_t agents_connected = 0;  ///< hosts heard from within two poll timeouts
  std::int64_t polls_waiting = 0;     ///< long polls held open now
  std::uint64_t polls = 0;            ///< polls answered since start
  Store::Counts counts;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> sent_to;  ///< peer → (chunks, bytes)
  std::uint64_t received_from_parent = 0;                                  ///< bytes (relays)
  std::uint64_t request_bytes_received = 0;                                ///< request bodies, all routes
  std::uint64_t cache_hits = 0, cache_misses = 0, busy_answers = 0;
  std::int64_t active_transfers = 0;
  Store::Stats store;
  std::vector<EventSinkStatus> sinks;
  std::int64_t last_event_id = 0;
  std::int64_t event_streams = 0;
  std::uint64_t audit_pending = 0;  ///< audit records waiting to be written (the store refused them)
  std::uint64_t audit_lost = 0;     ///< audit records given up (logged in full instead)
  /// Chunks that failed verification: (where found: manager, relay, agent; whose copy: "store" or
  /// a host's name) → count.
  std::map<std::pair<std::string, std::string>, std::uint64_t> verification_failures;
  std::uint64_t chunks_quarantined = 0;
};

/// Prometheus text format 0.0.4 (HELP and TYPE for every family; counters end in _total).
std::string render_metrics(const MetricsSnapshot& m);

/// Content counters (peer → chunks, bytes) keyed by the peer's host name rather than its host id
/// (a host id is what an agent proves itself with; /metrics must not publish it). A name several
/// hosts share gets the first 8 characters of the host id after it ("web/3b2a77bf"); requesters no
/// registered host answers to count as "(unregistered)". At most kMaxPeerLabels labels: beyond,
/// the peers that took the most bytes keep theirs and the rest add up in "(others)".
constexpr std::size_t kMaxPeerLabels = 1000;
std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> peers_by_name(
    const std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>& by_id,
    const std::vector<Host>& hosts);

/// Whether a request is recorded in the audit trail: everything that changes something on the
/// admin API, and every refused credential.
bool audited(const HttpRequest& req, int status);
/// Who the client says it is (X-Distrib-Actor, printable, at most 128 characters), else "admin".
std::string audit_actor(const HttpRequest& req);
/// The record for an answered admin request: actor from X-Distrib-Actor (else "admin"), the
/// route as action, the object it names as target, "ok" or the error message as result.
AuditRecord audit_record(const HttpRequest& req, const HttpResponse& res, std::int64_t at_ms);

}  // namespace distrib
