#pragma once
// Administrators' accounts: a name, a role (viewer, operator, administrator) and a token of their
// own and optionally a client certificate (its serial kept), kept in STATE_DIR/users.json (mode 0600) next to
// admin.token, so that both nodes of a cluster (which share the state directory) know them. Only the SHA-256
// of a token is kept; the token is shown once when the account is made or its token replaced. Thread-safe.
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace distrib::security {

struct User {
  std::string name;
  std::string role;        ///< "viewer", "operator" or "administrator"
  std::string token_hash;  ///< SHA-256 hex of the token
  std::int64_t created_at = 0;
  std::string created_by;
  /// The serial of the account's client certificate (0: none); a new one replaces it.
  std::uint64_t certificate_serial = 0;
};

class UserBook {
 public:
  /// Reads the file when it exists. Throws Error naming the file when it cannot be read or parsed.
  explicit UserBook(std::filesystem::path file);

  /// The account whose token this is (compared by its hash).
  std::optional<User> find_by_token(const std::string& token) const;
  /// The account a client certificate names, while that certificate is its current one.
  std::optional<User> find_by_certificate(const std::string& name, std::uint64_t serial) const;
  /// Error(not_found) when there is no such account.
  User find(const std::string& name);
  std::vector<User> list() const;
  /// A new account; returns its token (shown once). Error(invalid_argument) for a bad name or
  /// role, Error(conflict) when the name is taken.
  std::string add(const std::string& name, const std::string& role, const std::string& by, std::int64_t now);
  /// Error(not_found) when there is no such account.
  void remove(const std::string& name);
  /// A new token for an account (the old one stops working); returns it.
  std::string replace_token(const std::string& name);
  /// Records the account's new client certificate (the one it had stops working).
  void set_certificate(const std::string& name, std::uint64_t serial);

  static constexpr std::size_t kMaxUsers = 1000;

 private:
  void save() const;
  std::vector<User>::iterator named(const std::string& name);  // Error(not_found) when none; locked

  std::filesystem::path file_;
  mutable std::mutex mutex_;
  std::vector<User> users_;
};

}  // namespace distrib::security
