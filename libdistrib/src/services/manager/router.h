#pragma once
// The manager's route table: every route is declared with its method, path pattern and access
// level, and the router alone enforces access (one place; no handler checks a token).
//
// Patterns are paths whose segments are literals or {placeholders} ("/v1/jobs/{id}/cancel"); a
// handler gets the request's path segments (p[0] == "v1"...). A request that matches no route
// belongs to the first declared realm whose prefix it falls under: in the admin realm it is
// authenticated (and audited) before it hears "no route", so an unknown path tells an
// unauthenticated caller nothing.
#include <distrib/net/http.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace distrib::manager {

/// Who may call a route. The last three are administrative roles, in rising order: a caller
/// whose credentials carry a role may call routes of that role and below; every administrative
/// request is audited.
enum class Access {
  open,        ///< anyone (status, metrics)
  agent,       ///< agents and relays below this manager (not authenticated yet: agent identities)
  relay,       ///< relays below this manager (not authenticated yet: agent identities)
  metrics,     ///< "metrics": a scraper's token reads /metrics and nothing else
  view,        ///< "viewer": reads hosts, jobs, packages, groups, inventory, events
  operate,     ///< "operator": jobs, packages, groups, approvals, transfers
  administer,  ///< "administrator": configuration (inventory fields), the audit trail
};
/// "open", "agent", "relay", "metrics", "viewer", "operator", "administrator".
std::string_view to_string(Access access) noexcept;
/// Is `access` an administrative role?
constexpr bool is_administrative(Access access) noexcept {
  return access >= Access::metrics;
}

/// Who an administrative request is from: the role its credentials carry and a name for the audit
/// trail (a user's name, "admin-token", "metrics-token").
struct Principal {
  Access role = Access::view;
  std::string name;
};

using PathSegments = std::vector<std::string>;
/// A route's handler. It may answer through `r` now or hand it on; it may throw Error, which the
/// router's caller answers (when `r` was not handed on).
using RouteHandler = std::function<void(HttpRequest&& req, Responder& r, const PathSegments& p)>;

/// A check of a request on its head alone (no body yet): throws Error when the request is refused.
using HeadCheck = std::function<void(const HttpRequest&)>;

struct Route {
  std::string method;                  ///< "GET", "POST", "PUT", "DELETE", "HEAD"
  std::string pattern;                 ///< "/v1/jobs/{id}"
  Access access = Access::administer;  // the strictest unless declared
  RouteHandler handler;
  /// Largest request body accepted, checked while the request is read (413 above it); 0: the
  /// server's default (4 MiB at the manager).
  std::uint64_t body_limit = 0;
  /// Checked before the body is read, after the access check (for routes with large bodies:
  /// whether the caller may send it at all, from the query). Must not block: no store.
  HeadCheck before_body;
  /// The body is written to a file as it arrives (HttpRequest::body_file), not held in memory.
  bool spool_body = false;
};

/// One row of the table as listed (GET /v1/routes, the pinned test).
struct RouteInfo {
  std::string method, pattern;
  Access access;
  std::uint64_t body_limit;  ///< 0: the server's default
};

class Router {
 public:
  /// How a caller proves an access level: throws Error(unauthorized/forbidden) when it cannot.
  using Check = std::function<void(const HttpRequest&)>;
  /// Who a request's credentials name; throws Error(unauthorized) when they are missing or not
  /// valid (or Error(forbidden): too many failed attempts from its address).
  using Authenticate = std::function<Principal(const HttpRequest&)>;
  /// Called for every request in the admin realm before its credentials are checked (the audit
  /// trail: it hooks the responder to record the answer, a refusal included).
  using AdminHook = std::function<void(const HttpRequest&, Responder&)>;

  /// Declares a route. Throws Error(internal) for a malformed pattern or a method and pattern
  /// declared twice (a programming error, found at start).
  void add(Route route);
  /// Requests under `prefix` ("/v1/agent", "/v1/{area}") that match no route are of `access` for
  /// the answer. The first declared realm that holds a path is its realm.
  void realm(std::string prefix, Access access);
  /// How agents or relays prove who they are (not for administrative roles: see authenticate).
  void check(Access access, Check check);
  /// How administrative callers are authenticated; a role below the route's is refused with
  /// Error(forbidden) naming both.
  void authenticate(Authenticate fn);
  void on_admin(AdminHook hook);
  /// Called for every request to an agent or relay route (and the unknown paths of their realms)
  /// before the caller's certificate is checked.
  void on_host(AdminHook hook);

  /// Finds the route, runs the realm's hook and access check, then the handler; throws
  /// Error(not_found) "no route METHOD PATH" when none matches (after the check of its realm).
  void dispatch(HttpRequest&& req, Responder& r) const;

  /// Every route, by path and then method (not by the order facilities declared them in).
  std::vector<RouteInfo> routes() const;
  /// The body limit of the route `method` `target` (path and query) matches; 0 when none or the
  /// route takes the default. Called on network threads before the body is read: the table does
  /// not change once the server runs.
  std::uint64_t body_limit(std::string_view method, std::string_view target) const;
  /// Why the body of this request is not worth reading (empty when it is): an administrative
  /// route called with no credentials at all, a host route whose caller fails its check, or the
  /// route's before_body check. On network threads, before the body is read; the request then
  /// comes to dispatch() without its body and is refused there (audited like any refusal).
  std::string check_before_body(const HttpRequest& head) const;
  /// Does the route of (method, target) take its body as a file (Route::spool_body)?
  bool spools_body(std::string_view method, std::string_view target) const;

 private:
  struct Entry {
    Route route;
    PathSegments segments;
  };
  struct Realm {
    PathSegments prefix;
    Access access;
  };
  const Entry* find(std::string_view method, const PathSegments& p) const;
  void admit(Access access, HttpRequest& req, Responder& r) const;

  std::vector<Entry> entries_;
  std::vector<Realm> realms_;
  std::vector<Check> checks_ = std::vector<Check>(3);
  Authenticate authenticate_;
  AdminHook admin_hook_, host_hook_;
};

/// A route handler calling member function `fn` of `self` (a facility's register_routes).
template <class T>
RouteHandler bind(T* self, void (T::*fn)(HttpRequest&&, Responder&, const PathSegments&)) {
  return [self, fn](HttpRequest&& req, Responder& r, const PathSegments& p) {
    (self->*fn)(std::move(req), r, p);
  };
}

/// "/a/b/c" → {"a", "b", "c"} (empty segments dropped).
PathSegments split_path(std::string_view path);

}  // namespace distrib::manager
