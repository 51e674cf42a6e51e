#pragma once
// Signed orders: what an agent is told to do, signed by the top manager's order-signing key
// (a certificate of the tree's CA naming "urn:distrib:signer:orders") and carried untouched by
// every relay on the way. An agent that trusts a CA carries out only orders that verify: for
// itself, of the type, package, payload, manifest and collect paths the order names, not expired,
// and not already carried out (the agent keeps a journal of the orders it carried out).
// A relay can therefore delay or drop work, but not invent, alter or replay it.
//
// The signed text is line-based and canonical ("distrib-order/1", then "key value" lines in a
// fixed order), so that no JSON re-serialisation on the way can change what was signed.
#include <distrib/model/job.h>
#include <distrib/model/package.h>

#include "security/pki.h"

#include <cstdint>
#include <string>

namespace distrib::security {

struct Order {
  std::string host_id;
  std::int64_t entry = 0;  ///< the top manager's entry id (unique in the tree)
  std::int32_t attempt = 1;
  std::string type;  ///< job type
  std::string package, version;
  std::string payload;                   ///< payload digest ("-": none)
  std::string manifest;                  ///< manifest_digest ("-": none)
  std::string collect;                   ///< collect_digest ("-": none)
  std::int64_t issued = 0, expires = 0;  ///< Unix seconds
};

/// How long an order stays valid after it is signed.
constexpr std::int64_t kOrderLifetime = 30 * 86400;
/// The largest signed order accepted (statement, signature and signer certificate).
constexpr std::size_t kMaxSignedOrder = 8192;

/// SHA-256 hex of a manifest's canonical JSON (manifest_to_json), and of a collect spec's.
std::string manifest_digest(const Manifest& m);
std::string collect_digest(const CollectSpec& c);

std::string order_statement(const Order& o);
/// Throws Error(invalid_argument) naming what is malformed.
Order parse_order_statement(const std::string& text);

/// A signed statement as JSON text: {"statement", "signature", "signer"} (the signer certificate
/// PEM travels with it, so that relays forward one opaque string). Orders and the publishers'
/// trusted set (publishers.h) travel so.
std::string sign_statement(const std::string& statement, const pki::SigningKey& key,
                           const std::string& cert_pem);
struct OpenedStatement {
  std::string statement;
  pki::CertificateInfo signer;
};
/// The statement of a signed one (at most `max_size` bytes) whose signer certificate chains to
/// `ca_pem` at `now` and signed it. Throws Error(integrity) starting with `what` and naming why
/// not; who the signer may be is the caller's to check.
OpenedStatement open_statement(const std::string& signed_text, const std::string& ca_pem, std::int64_t now,
                               std::size_t max_size, const std::string& what);

/// The signed order as JSON text: {"statement", "signature", "signer"} (the signer certificate
/// PEM travels with it, so that relays forward one opaque string).
std::string sign_order(const Order& o, const pki::SigningKey& signer_key, const std::string& signer_cert_pem);

/// The order a signed order states, when its signer certificate chains to `ca_pem`, names the
/// order signer (or is the host certificate of relay `trusted_relay`, when not empty: the orders
/// of a relay's own jobs), and signed it, and it has not expired at `now`. Throws
/// Error(integrity) naming why not.
Order verify_order(const std::string& signed_order, const std::string& ca_pem, std::int64_t now,
                   const std::string& trusted_relay = {});

}  // namespace distrib::security
