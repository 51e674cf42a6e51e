#pragma once
// At a parent: the sync route relays below call with the hosts, last contacts and entry states of
// their subtree and their acknowledgements of routed entries.
#include "services/manager/common.h"

namespace distrib::manager {

class Dispatch;
class Registration;
class Scheduler;
class Uplink;

class RelaySync {
 public:
  RelaySync(Context& ctx, Dispatch& dispatch, Registration& registration, Scheduler& scheduler,
            Uplink& uplink)
      : ctx_(ctx), dispatch_(dispatch), registration_(registration), scheduler_(scheduler), uplink_(uplink) {}
  void register_routes(Router& t);

  /// Items in one sync (a relay sends at most 500 hosts and reports at a time).
  static constexpr std::size_t kMaxHosts = 1000, kMaxReports = 1000, kMaxAcks = 10000, kMaxSeen = 200000;

 private:
  void refused_claim(const Host& relay, const Host& h);
  void relay_sync(HttpRequest&& req, Responder& r, const PathSegments&);

  Context& ctx_;
  Dispatch& dispatch_;
  Registration& registration_;
  Scheduler& scheduler_;
  Uplink& uplink_;
};

}  // namespace distrib::manager
