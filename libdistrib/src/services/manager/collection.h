#pragma once
// Remote collection: files agents send back for collect-files jobs (passed up by relays), and the
// files of a job as administrators fetch them.
#include "services/manager/common.h"

namespace distrib::manager {

class Uplink;

class Collection {
 public:
  Collection(Context& ctx, Uplink& uplink) : ctx_(ctx), uplink_(uplink) {}
  void register_routes(Router& t);

 private:
  std::filesystem::path collected_path(std::int64_t job, const std::string& host,
                                       const std::string& path) const;
  void check_sender(const HttpRequest& head) const;
  void agent_collect(HttpRequest&& req, Responder& r, const PathSegments&);
  void job_files(HttpRequest&&, Responder& r, const PathSegments& p);
  void job_file(HttpRequest&& req, Responder& r, const PathSegments& p);

  Context& ctx_;
  Uplink& uplink_;
};

}  // namespace distrib::manager
