#pragma once
// Hosts placing themselves in the tree: registration, conflicts of host keys, join policies applied at
// registration, approval, the host list, and host keys resolved to host ids.
#include "services/manager/common.h"

namespace distrib::manager {

class Dispatch;
class Uplink;

/// Is `host` somewhere below `ancestor` (following parents, guarding against cycles)?
bool is_below(const std::map<std::string, const Host*>& by_id, const Host& host, const std::string& ancestor);

class Registration {
 public:
  Registration(Context& ctx, Dispatch& dispatch, Uplink& uplink)
      : ctx_(ctx), dispatch_(dispatch), uplink_(uplink) {}
  void register_routes(Router& t);

  /// `host` now lives elsewhere: the relay `via` it was reached through forgets it.
  void release(const std::string& via, const std::string& host);
  /// Registers or updates a host reached through the direct child `via`; releases it from the
  /// relay it was reached through before.
  HostChange record_host(Host host, const std::string& via);
  /// ID groups whose join policy the host matches take it in.
  void apply_join_policies(const std::string& host_id);
  /// Host ids for keys by the manager's key mode (or host ids); throws naming every unknown
  /// key, ending with `what` (what was not done).
  std::vector<std::string> resolve_host_keys(const std::vector<std::string>& keys, const std::string& what);
  std::vector<std::string> resolve_host_keys(const std::vector<std::string>& keys, const std::string& what,
                                             const std::vector<Host>& all);

 private:
  void report_conflicts(const Host& host);
  void join_token_group(const std::string& host_id);
  void agent_register(HttpRequest&& req, Responder& r, const PathSegments&);
  void approve_hosts(HttpRequest&& req, Responder& r, const PathSegments&);
  void list_hosts(HttpRequest&&, Responder& r, const PathSegments&);

  Context& ctx_;
  Dispatch& dispatch_;
  Uplink& uplink_;
};

}  // namespace distrib::manager
