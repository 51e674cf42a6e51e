#pragma once
// Enrolment of hosts (agents and relays) with approval. Today: enrolment tokens, which an
// administrator creates (shown once), lists and revokes; a host that presents a valid token will
// be accepted at once. The enrolment requests themselves, their approval and the certificates the
// manager's CA issues come next (docs/API.md, issue "Identities for every tier").
#include "services/manager/common.h"

namespace distrib::manager {

class Enrolments {
 public:
  explicit Enrolments(Context& ctx) : ctx_(ctx) {}
  void register_routes(Router& t);

  /// Limits on a token: it lives 1 minute to 1 year and serves 1 to 1,000,000 enrolments (or
  /// any number).
  static constexpr std::int64_t kMinLifetime = 60, kMaxLifetime = 365LL * 86400;
  static constexpr int kMaxUses = 1000000;

 private:
  void token_create(HttpRequest&& req, Responder& r, const PathSegments&);
  void token_list(HttpRequest&&, Responder& r, const PathSegments&);
  void token_revoke(HttpRequest&&, Responder& r, const PathSegments& p);

  Context& ctx_;
};

}  // namespace distrib::manager
