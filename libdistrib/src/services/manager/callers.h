#pragma once
// Who is calling: the host identity (agent or relay, host id) of the client certificate a request
// came with, the revoked certificates, and the checks every host route makes with them. With
// identities off (a manager run with --insecure-http) nobody proves anything and every check
// passes: the manager then trusts its network, as the warning at its start says.
#include <distrib/net/http.h>

#include <distrib/store/store.h>
#include <boost/json/object.hpp>

#include "security/pki.h"

#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace distrib::manager {

/// A host's own statement that it registered below `parent` at `at`, signed with its key and
/// carried with its certificate: the relays above pass it up with the host, so that a relay may
/// report a host that moved to it from elsewhere (its word alone is not enough).
struct Placement {
  std::string parent;
  std::int64_t at = 0;
  std::string certificate;  ///< PEM
  std::string signature;    ///< hex, over security::placement_statement(host, parent, at)
};

boost::json::object to_json(const Placement& p);
/// Throws Error(invalid_argument) naming a missing or malformed field.
Placement placement_from_json(const boost::json::object& o);

class Callers {
 public:
  /// On: hosts present certificates of this tree's CA (the TLS handshake checked the chain).
  void enable(bool on) noexcept { enabled_ = on; }
  bool enabled() const noexcept { return enabled_; }

  /// The identity of the request's certificate; nullopt without one (or identities off).
  std::optional<pki::Identity> of(const HttpRequest& req) const;

  /// Who a request is accounted to (transfer slots, rate limits): the caller's host id, or with
  /// identities off the host id the request claims.
  std::string requester(const HttpRequest& req, std::string claimed) const;

  /// Route checks: an enrolled host of any role / a relay, whose certificate is not revoked.
  /// Throw Error(unauthorized) without a certificate, Error(forbidden) for a revoked one or the
  /// wrong role.
  void require_host(const HttpRequest& req) const;
  void require_relay(const HttpRequest& req) const;

  /// May the caller act for `host_id`? It may when it is that host, or a relay through which
  /// this manager reaches the host (the host's `via`, looked up in `store`: call off the network
  /// threads). Throws Error(forbidden) naming both otherwise.
  void require_for(const HttpRequest& req, const std::string& host_id, Store& store) const;
  /// May relay `relay` report `host_id` below it? When this manager already reaches the host
  /// through it, or the host enrolled through it (its enrolment here passed that relay last).
  /// A host moving from elsewhere comes with its own registration (not through a relay's word).
  bool may_claim(const std::string& relay, const std::string& host_id, Store& store) const;
  /// The same for a host that moved: its placement names `parent`, which is `relay` or below it,
  /// is signed by the host's certificate of `ca_pem` (not revoked), made within the last day and
  /// newer than any placement of it seen before. Remembered (passed further up) when it holds.
  bool may_claim_moved(const std::string& relay, const Host& host, const Placement& p,
                       const std::string& ca_pem, Store& store);
  /// Checks and remembers a host's placement given at its own registration here.
  bool accept_placement(const std::string& host_id, const Placement& p, const std::string& ca_pem);
  /// The placement remembered for a host (passed up with it).
  std::optional<Placement> placement_of(const std::string& host_id) const;
  /// The caller must be `host_id` itself (its own registration, enrolment renewal).
  void require_self(const HttpRequest& req, const std::string& host_id) const;

  /// Revoked certificate serials: loaded at start, added to on revocation.
  void set_revoked(const std::vector<std::uint64_t>& serials);
  void revoke(std::uint64_t serial);
  bool revoked(std::uint64_t serial) const;
  /// How many serials are revoked (they are never un-revoked: the count says whether a relay's
  /// copy is current), and which.
  std::size_t revoked_count() const;
  std::vector<std::uint64_t> revoked_list() const;

 private:
  bool valid(const std::string& host_id, const Placement& p, const std::string& ca_pem) const;

  bool enabled_ = false;
  mutable std::shared_mutex mutex_;
  std::unordered_set<std::uint64_t> revoked_;
  std::unordered_map<std::string, Placement> placements_;
};

}  // namespace distrib::manager
