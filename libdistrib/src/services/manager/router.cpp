// The manager's route table (router.h).
#include "services/manager/router.h"

#include <distrib/error.h>

#include <algorithm>
#include <tuple>

namespace distrib::manager {

std::string_view to_string(Access access) noexcept {
  switch (access) {
    case Access::open:
      return "open";
    case Access::agent:
      return "agent";
    case Access::relay:
      return "relay";
    case Access::metrics:
      return "metrics";
    case Access::view:
      return "viewer";
    case Access::operate:
      return "operator";
    case Access::administer:
      return "administrator";
  }
  return "administrator";
}

PathSegments split_path(std::string_view path) {
  PathSegments parts;
  std::size_t start = 1;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) parts.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

namespace {

bool placeholder(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

bool matches(const PathSegments& pattern, const PathSegments& path) {
  if (pattern.size() != path.size()) return false;
  for (std::size_t i = 0; i < pattern.size(); ++i)
    if (!placeholder(pattern[i]) && pattern[i] != path[i]) return false;
  return true;
}

bool under(const PathSegments& prefix, const PathSegments& path) {
  if (path.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (!placeholder(prefix[i]) && prefix[i] != path[i]) return false;
  return true;
}

std::size_t index_of(Access access) {
  return static_cast<std::size_t>(access);
}

// Could one path match both patterns?
bool overlap(const PathSegments& a, const PathSegments& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!placeholder(a[i]) && !placeholder(b[i]) && a[i] != b[i]) return false;
  return true;
}

}  // namespace

void Router::add(Route route) {
  if (!route.pattern.starts_with('/') || !route.handler || route.method.empty())
    throw Error(ErrorKind::internal, "route " + route.method + " " + route.pattern + " is malformed");
  auto segments = split_path(route.pattern);
  // No two routes may match one request: which facility declared its routes first never matters.
  for (const auto& e : entries_)
    if (e.route.method == route.method && overlap(e.segments, segments))
      throw Error(ErrorKind::internal, "route " + route.method + " " + route.pattern + " overlaps " +
                                           e.route.method + " " + e.route.pattern);
  entries_.push_back({std::move(route), std::move(segments)});
}

void Router::realm(std::string prefix, Access access) {
  realms_.push_back({split_path(prefix), access});
}

void Router::check(Access access, Check check) {
  if (is_administrative(access))
    throw Error(ErrorKind::internal, "administrative roles are proven through Router::authenticate");
  checks_.at(index_of(access)) = std::move(check);
}

void Router::authenticate(Authenticate fn) {
  authenticate_ = std::move(fn);
}

void Router::on_admin(AdminHook hook) {
  admin_hook_ = std::move(hook);
}

void Router::on_host(AdminHook hook) {
  host_hook_ = std::move(hook);
}

void Router::admit(Access access, HttpRequest& req, Responder& r) const {
  if (!is_administrative(access)) {
    if (host_hook_ && (access == Access::agent || access == Access::relay)) host_hook_(req, r);
    if (const auto& check = checks_[index_of(access)]) check(req);
    return;
  }
  // The audit trail names who the credentials are, never what the client says it is.
  Principal who;
  try {
    if (!authenticate_)
      throw Error(ErrorKind::unauthorized, "administrative routes are closed on this server");
    who = authenticate_(req);
    req.headers["x-distrib-actor"] = who.name;
    req.headers["x-distrib-role"] = std::string(to_string(who.role));
  } catch (const Error&) {
    req.headers["x-distrib-actor"] = "(credentials refused)";
    req.headers.erase("x-distrib-role");
    if (admin_hook_) admin_hook_(req, r);
    throw;
  }
  if (admin_hook_) admin_hook_(req, r);
  if (who.role < access)
    throw Error(ErrorKind::forbidden, "this route needs the " + std::string(to_string(access)) + " role; " +
                                          who.name + " has the " + std::string(to_string(who.role)) +
                                          " role");
}

const Router::Entry* Router::find(std::string_view method, const PathSegments& p) const {
  for (const auto& e : entries_)
    if (e.route.method == method && matches(e.segments, p)) return &e;
  return nullptr;
}

void Router::dispatch(HttpRequest&& req, Responder& r) const {
  const auto p = split_path(req.path);
  if (const auto* e = find(req.method, p)) {
    admit(e->route.access, req, r);
    if (!req.withheld.empty()) {
      // The body was not read: refused for the reason found before it, with its own kind.
      if (e->route.before_body) e->route.before_body(req);
      throw Error(ErrorKind::forbidden, req.withheld);
    }
    e->route.handler(std::move(req), r, p);
    return;
  }
  // No route: the realm decides whether the caller must prove who it is before hearing so.
  for (const auto& realm : realms_) {
    if (!under(realm.prefix, p)) continue;
    admit(realm.access, req, r);
    break;
  }
  throw Error(ErrorKind::not_found, "no route " + req.method + " " + req.path);
}

std::vector<RouteInfo> Router::routes() const {
  std::vector<RouteInfo> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_)
    out.push_back({e.route.method, e.route.pattern, e.route.access, e.route.body_limit});
  std::sort(out.begin(), out.end(), [](const RouteInfo& x, const RouteInfo& y) {
    return std::tie(x.pattern, x.method) < std::tie(y.pattern, y.method);
  });
  return out;
}

std::uint64_t Router::body_limit(std::string_view method, std::string_view target) const {
  const auto* e = find(method, split_path(target.substr(0, target.find('?'))));
  return e ? e->route.body_limit : 0;
}

bool Router::spools_body(std::string_view method, std::string_view target) const {
  const auto* e = find(method, split_path(target.substr(0, target.find('?'))));
  return e && e->route.spool_body;
}

std::string Router::check_before_body(const HttpRequest& head) const {
  const auto* e = find(head.method, split_path(head.path));
  if (!e) return {};  // "no route", its body read against the default limit
  try {
    const auto access = e->route.access;
    if (is_administrative(access)) {
      // Credentials are checked (and a refusal audited) with the request; a body from a caller
      // that brings none at all is not worth reading.
      if (head.authorization.empty() && !head.peer.present())
        return "this route needs credentials (an admin bearer token or a user's certificate)";
    } else if (const auto& check = checks_[index_of(access)]) {
      check(head);
    }
    if (e->route.before_body) e->route.before_body(head);
  } catch (const std::exception& ex) {
    return ex.what();
  }
  return {};
}

}  // namespace distrib::manager
