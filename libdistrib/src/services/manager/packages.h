#pragma once
// Packages as the packager uploads them: which chunks are missing, chunk uploads, registering a
// package, and the package list and details.
#include "services/manager/common.h"

namespace distrib::manager {

class Packages {
 public:
  explicit Packages(Context& ctx) : ctx_(ctx) {}
  void register_routes(Router& t);

 private:
  void chunks_missing(HttpRequest&& req, Responder& r, const PathSegments&);
  void chunk_upload(HttpRequest&& req, Responder& r, const PathSegments& p);
  void package_list(HttpRequest&&, Responder& r, const PathSegments&);
  void package_register(HttpRequest&& req, Responder& r, const PathSegments&);
  void package_show(HttpRequest&&, Responder& r, const PathSegments& p);

  Context& ctx_;
};

}  // namespace distrib::manager
