#pragma once
// Host groups and ID groups: joins asked by hosts (forwarded up to the server that keeps the group),
// and the administration of both kinds of group.
#include "services/manager/common.h"

#include <optional>

namespace distrib::manager {

class Dispatch;
class Inventory;
class Registration;
class Uplink;

class Groups {
 public:
  Groups(Context& ctx, Registration& registration, Inventory& inventory, Dispatch& dispatch, Uplink& uplink)
      : ctx_(ctx), registration_(registration), inventory_(inventory), dispatch_(dispatch), uplink_(uplink) {}
  void register_routes(Router& t);

 private:
  // ID group membership asked by hosts (agent configuration or a command on the host).
  struct JoinRequest {
    std::string host_id, group, password, relay;
    bool leave = false;
    JoinMethod how = JoinMethod::command;
    std::optional<Host> record;  // forwarded by a relay: the host as it knows it
  };
  void agent_join(HttpRequest&& req, Responder& r, const PathSegments&);
  bj::object join(const JoinRequest& j);
  bj::array host_refs(const std::vector<std::string>& ids);
  void delete_group(Responder& r, const char* what, const std::string& name, std::function<bool()> erase);
  void group_list(HttpRequest&&, Responder& r, const PathSegments&);
  void group_create(HttpRequest&& req, Responder& r, const PathSegments&);
  void group_show(HttpRequest&&, Responder& r, const PathSegments& p);
  void group_delete(HttpRequest&&, Responder& r, const PathSegments& p);
  void group_members(HttpRequest&& req, Responder& r, const PathSegments& p);
  void id_group_list(HttpRequest&&, Responder& r, const PathSegments&);
  void id_group_create(HttpRequest&& req, Responder& r, const PathSegments&);
  void id_group_show(HttpRequest&&, Responder& r, const PathSegments& p);
  void id_group_delete(HttpRequest&&, Responder& r, const PathSegments& p);
  void id_group_members(HttpRequest&& req, Responder& r, const PathSegments& p);

  Context& ctx_;
  Registration& registration_;
  Inventory& inventory_;
  Dispatch& dispatch_;
  Uplink& uplink_;
};

}  // namespace distrib::manager
