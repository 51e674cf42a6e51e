#pragma once
// What the manager tells about itself: status, the route table, cluster status, events (pages and a
// stream), event sinks, the audit trail (and the hook that writes it), metrics and content counters.
#include "services/manager/common.h"

#include <unordered_map>

namespace distrib::manager {

class AuditTrail;
class Content;
class ContentHealth;
class Uplink;

class ObserveApi {
 public:
  ObserveApi(Context& ctx, const Router& router, Content& content, ContentHealth& health, Uplink& uplink,
             AuditTrail& audit)
      : ctx_(ctx), router_(router), content_(content), health_(health), uplink_(uplink), audit_(audit) {}
  void register_routes(Router& t);
  /// The audit trail of an admin request: the request (without its body) and its answer,
  /// written off the network thread once the answer is given (a refused token included).
  /// Records the answer to an administrative request in the audit trail; for a host's request
  /// (`host_route`) only a refusal, naming the certificate it came with.
  void audit_answer(const HttpRequest& req, Responder& r, bool host_route = false);

  /// The body limit of a route that declares none.
  static constexpr std::uint64_t kDefaultBodyLimit = 4 * 1024 * 1024;

 private:
  void get_status(HttpRequest&&, Responder& r, const PathSegments&);
  void get_routes(HttpRequest&&, Responder& r, const PathSegments&);
  void get_cluster_status(HttpRequest&&, Responder& r, const PathSegments&);
  void events_page(HttpRequest&& req, Responder& r, const PathSegments&);
  void events_stream(HttpRequest&& req, Responder& r, const PathSegments&);
  void events_sinks(HttpRequest&& req, Responder& r, const PathSegments&);
  void audit_route(HttpRequest&& req, Responder& r, const PathSegments&);
  void get_metrics(HttpRequest&&, Responder& r, const PathSegments&);
  void stats(HttpRequest&&, Responder& r, const PathSegments&);

  Context& ctx_;
  const Router& router_;
  Content& content_;
  ContentHealth& health_;
  Uplink& uplink_;
  AuditTrail& audit_;
  std::mutex audit_mutex_;
  std::unordered_map<std::string, std::pair<std::int64_t, int>>
      refused_by_;  // address → (last record, since)
};

}  // namespace distrib::manager
