#pragma once
// The routes of trusted publishers (publisher_set.h): the administrators' list, trust and revoke
// at the top manager; the signed set for hosts below, at every manager.
#include "services/manager/common.h"

namespace distrib::manager {

class Publishers {
 public:
  explicit Publishers(Context& ctx) : ctx_(ctx) {}
  void register_routes(Router& t);
  /// Refuses (Error invalid_argument) a manifest the agents would refuse: signed by a key not
  /// trusted or revoked, a signature that does not verify, or unsigned once a key is trusted.
  static void check_upload(const Context& ctx, const Manifest& m);

 private:
  void list(HttpRequest&&, Responder& r, const PathSegments&);
  void trust(HttpRequest&& req, Responder& r, const PathSegments&);
  void revoke(HttpRequest&&, Responder& r, const PathSegments& p);
  void signed_set(HttpRequest&&, Responder& r, const PathSegments&);
  void require_top() const;

  Context& ctx_;
};

}  // namespace distrib::manager
