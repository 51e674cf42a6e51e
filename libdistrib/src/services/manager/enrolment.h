#pragma once
// Enrolment of hosts (agents and relays) with approval: a host sends a certificate signing request
// (POST /v1/agent/enrol, through its relays); it waits as pending until an administrator accepts or
// rejects it, or a valid enrolment token accepts it at once; on acceptance the CA of the top
// manager issues its certificate, which the host renews over its current one. Administrators list
// requests, decide them and revoke certificates; tokens are created, listed and revoked here too.
// A relay has no CA: it passes requests and renewals up, adding itself to the request's path, and
// records the outcome so that it knows which hosts enrolled through it.
#include "services/manager/common.h"
#include "services/manager/dispatch.h"
#include "services/manager/uplink.h"

#include <distrib/model/enrolment.h>

namespace distrib::manager {

class Enrolments {
 public:
  Enrolments(Context& ctx, Uplink& uplink, Dispatch& dispatch)
      : ctx_(ctx), uplink_(uplink), dispatch_(dispatch) {}
  void register_routes(Router& t);

  /// Limits on a token: it lives 1 minute to 1 year and serves 1 to 1,000,000 enrolments (or
  /// any number).
  static constexpr std::int64_t kMinLifetime = 60, kMaxLifetime = 365LL * 86400;
  static constexpr int kMaxUses = 1000000;
  /// Limits on an enrolment request: the request's PEM, the name, the relays it passed.
  static constexpr std::size_t kMaxRequest = 8192, kMaxName = 255, kMaxVia = 16;

 private:
  void ca(HttpRequest&&, Responder& r, const PathSegments&);
  void enrol(HttpRequest&& req, Responder& r, const PathSegments&);
  void renew(HttpRequest&& req, Responder& r, const PathSegments&);
  void list(HttpRequest&& req, Responder& r, const PathSegments&);
  void decide(HttpRequest&& req, Responder& r, const PathSegments& p);
  void revoke(HttpRequest&& req, Responder& r, const PathSegments& p);
  void revoked(HttpRequest&&, Responder& r, const PathSegments&);
  void token_create(HttpRequest&& req, Responder& r, const PathSegments&);
  void token_list(HttpRequest&&, Responder& r, const PathSegments&);
  void token_revoke(HttpRequest&&, Responder& r, const PathSegments& p);
  void bundle(HttpRequest&& req, Responder& r, const PathSegments&);

  HttpResponse enrol_here(Enrolment e, const std::string& token);
  HttpResponse pass_enrolment_up(Enrolment e, const bj::object& body);
  HttpResponse issued(const Enrolment& e) const;
  std::string issue(const std::string& request_pem) const;
  void record_event(const char* type, Severity severity, const Enrolment& e, std::string message);

  Context& ctx_;
  Uplink& uplink_;
  Dispatch& dispatch_;
};

}  // namespace distrib::manager
