#pragma once
// Enrolment of hosts with approval: an agent or relay sends a certificate signing request, an
// administrator accepts or rejects it (or an enrolment token accepts it at once), the manager's
// CA issues the certificate, and a certificate can later be revoked.
#include <cstdint>
#include <string>
#include <string_view>

namespace distrib {

/// Where a host's enrolment stands. pending -> accepted | rejected; accepted -> revoked. A new
/// request (another key) makes a rejected or revoked enrolment pending again.
enum class EnrolmentState { pending, accepted, rejected, revoked };
std::string_view to_string(EnrolmentState state) noexcept;
/// Throws Error(invalid_argument) naming the text when it is not a state.
EnrolmentState parse_enrolment_state(std::string_view text);

/// One host's enrolment: its latest request and what was decided about it.
struct Enrolment {
  std::string host_id;
  std::string name;
  std::string role;         ///< "agent" or "relay"
  std::string address;      ///< where the request came from
  std::string via;          ///< the relay it came through; empty: directly
  std::string fingerprint;  ///< "sha256:HEX" of the request's public key
  std::string request_pem;  ///< the certificate signing request
  EnrolmentState state = EnrolmentState::pending;
  std::string certificate_pem;  ///< issued when accepted
  std::uint64_t serial = 0;     ///< of the certificate
  std::int64_t not_after = 0;   ///< the certificate's expiry (unix seconds)
  std::int64_t requested_at = 0;
  std::int64_t decided_at = 0;  ///< accepted, rejected or revoked at (0: pending)
  std::string decided_by;       ///< the administrator; "" when a token accepted it
  std::string token_id;         ///< the enrolment token that accepted it, if any
};

/// A secret that accepts enrolments without an administrator. Only its hash is stored.
struct EnrolToken {
  std::string id;           ///< public id, shown in lists
  std::string secret_hash;  ///< SHA-256 hex of the secret; the secret itself is never stored
  std::int64_t created_at = 0;
  std::int64_t expires_at = 0;  ///< unix seconds; 0: never
  int uses_left = -1;           ///< -1: unlimited
  std::string group;            ///< ID group a host enrolled with it joins; may be empty
  std::string created_by;
  bool revoked = false;
};

}  // namespace distrib
