#pragma once
// Jobs: creation with destination expansion (hosts, host groups, ID groups, everything below a relay),
// listing, details with rollout waves, retry, complete-now, cancel, and suspending or resuming
// transfers.
#include "services/manager/common.h"

namespace distrib::manager {

class Dispatch;
class Inventory;
class Registration;
class Scheduler;
class Uplink;

/// The job id in /v1/jobs/{id}/...: a positive whole number; throws invalid_argument.
std::int64_t job_id_of(const PathSegments& p);

class Jobs {
 public:
  Jobs(Context& ctx, Registration& registration, Inventory& inventory, Dispatch& dispatch,
       Scheduler& scheduler, Uplink& uplink)
      : ctx_(ctx),
        registration_(registration),
        inventory_(inventory),
        dispatch_(dispatch),
        scheduler_(scheduler),
        uplink_(uplink) {}
  void register_routes(Router& t);

 private:
  // Destinations of a job: host keys, "group:NAME" (host group), "id:NAME" (ID group, standing)
  // and "relay:KEY" (every host below that relay). Everything is checked before anything is
  // created; the answer names every destination that is wrong.
  struct Expansion {
    std::vector<std::string> host_ids;
    std::vector<std::string> id_groups;
    std::size_t skipped = 0;  // group members of the wrong role or awaiting approval
  };
  Expansion expand_destinations(const Job& job);
  void transfers_suspend_resume(HttpRequest&& req, Responder& r, const PathSegments& p);
  void job_create(HttpRequest&& req, Responder& r, const PathSegments&);
  void job_list(HttpRequest&& req, Responder& r, const PathSegments&);
  void job_show(HttpRequest&&, Responder& r, const PathSegments& p);
  void job_retry(HttpRequest&&, Responder& r, const PathSegments& p);
  void job_complete_now(HttpRequest&&, Responder& r, const PathSegments& p);
  void job_cancel(HttpRequest&&, Responder& r, const PathSegments& p);

  Context& ctx_;
  Registration& registration_;
  Inventory& inventory_;
  Dispatch& dispatch_;
  Scheduler& scheduler_;
  Uplink& uplink_;
};

}  // namespace distrib::manager
