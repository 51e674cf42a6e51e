#pragma once
// Enrolment of hosts with approval: certificate signing requests of agents and relays, the
// administrators' (or a token's) decisions, the certificates issued, their renewal and
// revocation, and the enrolment tokens.
// Part of the Store interface (store.h), whose contract every call follows: blocking,
// thread-safe, one transaction per call, failures thrown as distrib::Error.
#include <distrib/model/enrolment.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace distrib {

/// Hosts' enrolments, the serials of revoked certificates, and enrolment tokens.
class EnrolmentStore {
 public:
  virtual ~EnrolmentStore() = default;

  // --- enrolments (one per host id)
  /// Records the request `e` (host id, name, role, address, via, fingerprint, request, and
  /// requested_at: 0 is now; its state and decision fields are ignored). With no enrolment for
  /// the host it is inserted as pending; a pending one is replaced (a host may retry with a new
  /// key). An accepted, rejected or revoked enrolment with the same fingerprint is left as it is
  /// (the host asking again for its outcome). A rejected or revoked one with another fingerprint
  /// becomes a new pending request; an accepted one with another fingerprint is refused with
  /// Error(conflict) ("host ... is enrolled with another key; revoke it first"). Returns the
  /// enrolment as stored after the call.
  virtual Enrolment request_enrolment(const Enrolment& e) = 0;
  virtual std::optional<Enrolment> find_enrolment(const std::string& host_id) = 0;
  /// The enrolments in `state` (all when nullopt), by requested_at then host id.
  virtual std::vector<Enrolment> list_enrolments(std::optional<EnrolmentState> state) = 0;
  /// Decides the pending request of `decision.host_id`: `decision.state` accepted (with its
  /// certificate_pem, serial and not_after) or rejected (the certificate fields are cleared),
  /// with decided_at, decided_by and token_id. Applied only when the stored enrolment is
  /// pending with `decision.fingerprint` (the request the decision was made on); false
  /// otherwise, and nothing changed. Throws Error(invalid_argument) when `decision.state` is
  /// neither accepted nor rejected.
  virtual bool decide_enrolment(const Enrolment& decision) = 0;
  /// Replaces the certificate of an accepted enrolment (the host renews it, possibly with a new
  /// key): fingerprint, request, certificate, serial and not_after. The certificate replaced is
  /// not revoked (it expires). False, nothing changed, when the host's enrolment is not accepted.
  virtual bool renew_certificate(const std::string& host_id, const std::string& fingerprint,
                                 const std::string& request_pem, const std::string& certificate_pem,
                                 std::uint64_t serial, std::int64_t not_after) = 0;
  /// Revokes an accepted enrolment: it becomes revoked (keeping its serial, decided_at = `at`,
  /// decided_by = `by`) and its certificate's serial is listed by revoked_serials() from then
  /// on, also after the host enrols again. False, nothing changed, when it is not accepted.
  virtual bool revoke_enrolment(const std::string& host_id, std::int64_t at, const std::string& by) = 0;
  /// Serials of every certificate revoked (ascending as unsigned numbers).
  virtual std::vector<std::uint64_t> revoked_serials() = 0;

  // --- enrolment tokens
  /// Stores a new token (created_at 0 is now). Error(conflict) when a token with the same id or
  /// the same secret hash exists.
  virtual void create_enrol_token(const EnrolToken& t) = 0;
  /// Uses the token whose secret hashes to `secret_hash`, in one transaction: when it is not
  /// revoked, not expired (expires_at 0 or after `now`) and has uses left (-1: unlimited, or
  /// more than 0), one use is taken (uses_left decremented when it counts) and the token is
  /// returned as it was before the use. nullopt, nothing changed, otherwise (also for an
  /// unknown hash).
  virtual std::optional<EnrolToken> use_enrol_token(const std::string& secret_hash, std::int64_t now) = 0;
  /// Every token, revoked and expired ones too, by created_at then id.
  virtual std::vector<EnrolToken> list_enrol_tokens() = 0;
  /// Revokes token `id`: it accepts nothing more. False when there is no such token or it was
  /// revoked already.
  virtual bool revoke_enrol_token(const std::string& id) = 0;
};

}  // namespace distrib
