// Administrators: tokens, accounts and the authentication of administrative requests
// (administrators.h).
#include "services/manager/administrators.h"

#include "security/authority.h"
#include "services/observe.h"
#include "util/random.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

namespace distrib::manager {

namespace {

// The admin bearer token: read from the state directory, made there on first start.
std::string load_admin_token(const std::filesystem::path& state_dir) {
  const auto token_file = state_dir / "admin.token";
  std::error_code ec;
  if (std::filesystem::exists(token_file, ec)) {
    auto token = trim(fs::read_file(token_file));
    if (token.size() < 32)
      throw Error(ErrorKind::invalid_argument,
                  "admin token in " + token_file.string() +
                      " is too short (32+ characters); delete it to have a new one made");
    return token;
  }
  auto token = util::random_hex(32, "admin token");
  fs::write_file_atomic(token_file, token + "\n");
  ::chmod(token_file.c_str(), 0600);
  return token;
}

// The metrics token from its file (none when no file is set).
std::string load_metrics_token(const std::filesystem::path& file) {
  if (file.empty()) return {};
  auto token = trim(fs::read_file(file));
  if (token.size() < 32)
    throw Error(ErrorKind::invalid_argument, "metrics token in " + file.string() +
                                                 " is too short (32+ characters; e.g. openssl rand -hex 32)");
  return token;
}

constexpr std::string_view kBearer = "Bearer ";

bool same(std::string_view given, const std::string& token) {
  return !token.empty() && given.size() == token.size() &&
         CRYPTO_memcmp(given.data(), token.data(), token.size()) == 0;
}

Access role_of(const std::string& role) {
  return role == "administrator" ? Access::administer : role == "operator" ? Access::operate : Access::view;
}

}  // namespace

Administrators::Administrators(Context& ctx)
    : ctx_(ctx),
      admin_token_(ctx.settings.admin_token ? load_admin_token(ctx.settings.state_dir) : std::string()),
      metrics_token_(load_metrics_token(ctx.settings.metrics_token_file)),
      users_(ctx.settings.state_dir / "users.json") {
  if (!ctx.settings.admin_token)
    spdlog::info("the admin token is turned off: administrators sign in with their own accounts");
}

void Administrators::register_routes(Router& t) {
  t.add(Route{"GET", "/v1/users", Access::administer, bind(this, &Administrators::list)});
  t.add(Route{"POST", "/v1/users", Access::administer, bind(this, &Administrators::add)});
  t.add(Route{"DELETE", "/v1/users/{name}", Access::administer, bind(this, &Administrators::remove)});
  t.add(Route{"POST", "/v1/users/{name}/token", Access::administer, bind(this, &Administrators::new_token)});
  // An administrator for anyone, any user for themself.
  t.add(
      Route{"POST", "/v1/users/{name}/certificate", Access::view, bind(this, &Administrators::certificate)});
}

void Administrators::failed(const std::string& address) {
  const auto now = fs::now_unix();
  std::lock_guard lock(failures_mutex_);
  if (failures_.size() > 100000) failures_.clear();
  auto& f = failures_[address];
  if (now - f.since > kWindow) f = Failures{0, now, 0};
  if (++f.count >= kMaxFailures) {
    f.blocked_until = now + kWindow;
    spdlog::warn("{} wrong credentials from {} within {} s: its administrative requests are refused for {} s",
                 f.count, address, kWindow, kWindow);
  }
}

Principal Administrators::authenticate(const HttpRequest& req) {
  {
    std::lock_guard lock(failures_mutex_);
    const auto it = failures_.find(req.remote_address);
    if (it != failures_.end() && it->second.blocked_until > fs::now_unix())
      throw Error(ErrorKind::forbidden, "too many wrong credentials from " + req.remote_address +
                                            "; try again in " +
                                            std::to_string(it->second.blocked_until - fs::now_unix()) + " s");
  }
  const std::string_view auth = req.authorization;
  if (auth.empty() && req.peer.present())
    for (const auto& uri : req.peer.uris) {
      const auto name = pki::parse_user(uri);
      if (!name) continue;
      if (auto u = users_.find_by_certificate(*name, req.peer.serial)) return {role_of(u->role), u->name};
      failed(req.remote_address);
      throw Error(ErrorKind::unauthorized, "the certificate of user " + *name +
                                               " is not its current one (replaced by a newer one, or the "
                                               "account was removed)");
    }
  if (!auth.starts_with(kBearer))
    throw Error(ErrorKind::unauthorized,
                "this route needs the admin bearer token (see the manager's admin.token "
                "file), a user's token (distribctl user add) or a user's client certificate "
                "(distribctl user certificate)");
  const auto given = auth.substr(kBearer.size());
  if (same(given, admin_token_)) return {Access::administer, "admin-token"};
  if (same(given, metrics_token_)) return {Access::metrics, "metrics-token"};
  if (auto u = users_.find_by_token(std::string(given))) return {role_of(u->role), u->name};
  failed(req.remote_address);
  throw Error(ErrorKind::unauthorized, "the admin bearer token is not valid");
}

namespace {
bj::object user_json(const security::User& u) {
  return bj::object{{"name", u.name},
                    {"role", u.role},
                    {"created_at", u.created_at},
                    {"created_by", u.created_by},
                    {"certificate", u.certificate_serial != 0}};
}
}  // namespace

void Administrators::list(HttpRequest&&, Responder& r, const PathSegments&) {
  bj::array arr;
  for (const auto& u : users_.list()) arr.push_back(user_json(u));
  r(json_response(200, bj::object{{"users", std::move(arr)}, {"admin_token", !admin_token_.empty()}}));
}

// POST /v1/users {"name": NAME, "role": ROLE} → the account and its token (shown once)
void Administrators::add(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  const auto body = json::parse_object(req.body);
  const auto name = json::get_string(body, "name");
  const auto role = json::get_string(body, "role");
  const auto by = audit_actor(req);
  const auto token = users_.add(name.substr(0, 100), role.substr(0, 40), by, fs::now_unix());
  spdlog::info("user {} ({}) added by {}", name, role, by);
  r(json_response(201, bj::object{{"name", name}, {"role", role}, {"token", token}}));
}

void Administrators::remove(HttpRequest&& req, Responder& r, const PathSegments& p) {
  users_.remove(p[2]);
  spdlog::info("user {} removed by {}", p[2], audit_actor(req));
  r(json_response(200, bj::object{{"removed", p[2]}}));
}

void Administrators::new_token(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto token = users_.replace_token(p[2]);
  spdlog::info("user {} has a new token (by {})", p[2], audit_actor(req));
  r(json_response(200, bj::object{{"name", p[2]}, {"token", token}}));
}

// POST /v1/users/{name}/certificate {"csr": PEM, "days": N} → the account's client certificate
// (it replaces the one it had) and the CA certificate that verifies this manager.
void Administrators::certificate(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto& name = p[2];
  const auto role = req.headers.find("x-distrib-role");
  const auto who = audit_actor(req);
  if ((role == req.headers.end() || role->second != "administrator") && who != name)
    throw Error(ErrorKind::forbidden,
                who + " may ask for a certificate of its own account only; an administrator issues others'");
  require_json(req);
  const auto body = json::parse_object(req.body);
  const auto csr = json::get_string(body, "csr");
  const auto days = json::get_int(body, "days", 90);
  if (days < 1 || days > kMaxCertificateDays)
    throw Error(ErrorKind::invalid_argument,
                "days is 1 to " + std::to_string(kMaxCertificateDays) + ", not " + std::to_string(days));
  const auto user = users_.find(name);
  if (!ctx_.pki)
    throw Error(ErrorKind::conflict,
                "this manager has no CA of its own (it runs with --insecure-http or on a relay): "
                "its users sign in with tokens");
  const auto serial = security::random_serial();
  const auto cert =
      pki::issue_user(security::load_authority(*ctx_.pki), csr, user.name, days * 86400, serial);
  users_.set_certificate(user.name, serial);
  const auto info = pki::inspect_certificate(cert);
  spdlog::info("user {} has a new client certificate (serial {}, {} days) issued by {}", user.name, serial,
               days, who);
  r(json_response(200, bj::object{{"name", user.name},
                                  {"role", user.role},
                                  {"certificate", cert},
                                  {"serial", std::to_string(serial)},
                                  {"not_after", info.not_after},
                                  {"ca", ctx_.client_ca_pem()}}));
}

}  // namespace distrib::manager
