// Administrators' accounts on disk (users.h).
#include "security/users.h"

#include <distrib/content/digest.h>
#include <distrib/error.h>

#include "util/fs.h"
#include "util/random.h"

#include <boost/json.hpp>

#include <sys/stat.h>
#include <algorithm>

namespace distrib::security {

namespace bj = boost::json;

namespace {
void check_name(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_' || c == '@';
  });
  if (!ok)
    throw Error(
        ErrorKind::invalid_argument,
        "a user name is 1 to 64 letters, digits, '.', '-', '_' or '@', not \"" + name.substr(0, 64) + "\"");
}
void check_role(const std::string& role) {
  if (role != "viewer" && role != "operator" && role != "administrator")
    throw Error(ErrorKind::invalid_argument,
                "a role is viewer, operator or administrator, not \"" + role.substr(0, 32) + "\"");
}
std::string new_token() {
  return "distrib-user-" + util::random_hex(32, "user token");
}
}  // namespace

UserBook::UserBook(std::filesystem::path file) : file_(std::move(file)) {
  std::error_code ec;
  if (!std::filesystem::exists(file_, ec)) return;
  try {
    const auto doc = bj::parse(fs::read_file(file_));
    for (const auto& v : doc.at("users").as_array()) {
      const auto& o = v.as_object();
      users_.push_back(User{std::string(o.at("name").as_string()), std::string(o.at("role").as_string()),
                            std::string(o.at("token_hash").as_string()),
                            o.at("created_at").to_number<std::int64_t>(),
                            std::string(o.at("created_by").as_string())});
      if (const auto* serial = o.if_contains("certificate_serial"))
        users_.back().certificate_serial = std::stoull(std::string(serial->as_string()));
    }
  } catch (const std::exception& e) {
    throw Error(ErrorKind::invalid_argument,
                "cannot read the user accounts in " + file_.string() + ": " + e.what());
  }
}

void UserBook::save() const {
  bj::array arr;
  for (const auto& u : users_)
    arr.push_back(bj::object{{"name", u.name},
                             {"role", u.role},
                             {"token_hash", u.token_hash},
                             {"created_at", u.created_at},
                             {"created_by", u.created_by},
                             {"certificate_serial", std::to_string(u.certificate_serial)}});
  fs::write_file_atomic(file_, bj::serialize(bj::object{{"users", std::move(arr)}}) + "\n");
  ::chmod(file_.c_str(), 0600);
}

std::optional<User> UserBook::find_by_token(const std::string& token) const {
  if (token.size() > 256) return std::nullopt;
  const auto hash = sha256_hex(token);
  std::lock_guard lock(mutex_);
  for (const auto& u : users_)
    if (u.token_hash == hash) return u;
  return std::nullopt;
}

std::vector<User> UserBook::list() const {
  std::lock_guard lock(mutex_);
  return users_;
}

std::string UserBook::add(const std::string& name, const std::string& role, const std::string& by,
                          std::int64_t now) {
  check_name(name);
  check_role(role);
  std::lock_guard lock(mutex_);
  if (std::any_of(users_.begin(), users_.end(), [&](const User& u) { return u.name == name; }))
    throw Error(ErrorKind::conflict,
                "user " + name + " exists already (distribctl user token " + name + " gives it a new token)");
  if (users_.size() >= kMaxUsers)
    throw Error(ErrorKind::invalid_argument, "at most " + std::to_string(kMaxUsers) + " user accounts");
  auto token = new_token();
  users_.push_back(User{name, role, sha256_hex(token), now, by});
  save();
  return token;
}

void UserBook::remove(const std::string& name) {
  std::lock_guard lock(mutex_);
  users_.erase(named(name));
  save();
}

std::vector<User>::iterator UserBook::named(const std::string& name) {
  const auto it = std::find_if(users_.begin(), users_.end(), [&](const User& u) { return u.name == name; });
  if (it == users_.end())
    throw Error(ErrorKind::not_found, "no user " + name.substr(0, 64) + " (distribctl user list)");
  return it;
}

std::optional<User> UserBook::find_by_certificate(const std::string& name, std::uint64_t serial) const {
  std::lock_guard lock(mutex_);
  for (const auto& u : users_)
    if (u.name == name && u.certificate_serial != 0 && u.certificate_serial == serial) return u;
  return std::nullopt;
}

User UserBook::find(const std::string& name) {
  std::lock_guard lock(mutex_);
  return *named(name);
}

void UserBook::set_certificate(const std::string& name, std::uint64_t serial) {
  std::lock_guard lock(mutex_);
  named(name)->certificate_serial = serial;
  save();
}

std::string UserBook::replace_token(const std::string& name) {
  std::lock_guard lock(mutex_);
  const auto it = named(name);
  auto token = new_token();
  it->token_hash = sha256_hex(token);
  save();
  return token;
}

}  // namespace distrib::security
