#pragma once
// Who administers this manager: the bootstrap admin token (STATE_DIR/admin.token, made at the
// first start; it can be turned off once administrators have accounts), the metrics token, and
// user accounts with roles (security/users.h), managed at /v1/users. It authenticates every
// administrative request for the router and refuses an address that keeps sending wrong
// credentials for a while.
#include "security/users.h"
#include "services/manager/common.h"

#include <unordered_map>

namespace distrib::manager {

class Administrators {
 public:
  /// Reads or makes the admin token, reads the metrics token and the accounts. Throws Error
  /// naming a file that is not usable.
  explicit Administrators(Context& ctx);
  void register_routes(Router& t);
  /// The router's authenticator: the admin token (administrator, unless turned off), the metrics
  /// token (metrics), a user's token or current client certificate (the user's role).
  Principal authenticate(const HttpRequest& req);

  /// Wrong credentials from one address: after kMaxFailures within kWindow seconds, its requests
  /// are refused for kWindow seconds without looking at them.
  static constexpr int kMaxFailures = 20;
  static constexpr std::int64_t kWindow = 60;
  /// The longest life of a user's client certificate.
  static constexpr std::int64_t kMaxCertificateDays = 397;

 private:
  void list(HttpRequest&&, Responder& r, const PathSegments&);
  void add(HttpRequest&& req, Responder& r, const PathSegments&);
  void remove(HttpRequest&& req, Responder& r, const PathSegments& p);
  void new_token(HttpRequest&& req, Responder& r, const PathSegments& p);
  void certificate(HttpRequest&& req, Responder& r, const PathSegments& p);
  void failed(const std::string& address);

  Context& ctx_;
  std::string admin_token_;    // empty: turned off
  std::string metrics_token_;  // empty: none configured
  security::UserBook users_;
  std::mutex failures_mutex_;
  struct Failures {
    int count = 0;
    std::int64_t since = 0, blocked_until = 0;
  };
  std::unordered_map<std::string, Failures> failures_;
};

}  // namespace distrib::manager
