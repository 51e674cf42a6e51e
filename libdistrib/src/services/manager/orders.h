#pragma once
// The top manager's signature on every order it gives (security/orders.h): each work item for an
// agent directly below, and each entry pushed to a relay for an agent below it, carries an order
// signed with the order-signing key in STATE_DIR/pki. A relay passes on the signed orders it
// received with its entries; the jobs created at a relay itself (its own ID groups) carry orders
// signed with the relay's host key, which only agents directly below it that were told to accept
// them (--accept-relay-orders) carry out.
#include "security/pki.h"
#include "services/manager/common.h"

#include <map>
#include <optional>
#include <utility>

namespace distrib::manager {

class OrderSigner {
 public:
  /// Reads the signing key when this manager is the top of its tree (it has its own CA).
  explicit OrderSigner(Context& ctx);
  bool enabled() const noexcept { return key_.has_value(); }

  /// The signed order for attempt `e.attempt` of entry `e` of `job`; the package's manifest is
  /// looked up in the store once per package for one `Batch`. Call off the network threads.
  class Batch {
   public:
    explicit Batch(const OrderSigner& signer) : signer_(signer) {}
    /// The order of a work item for a host directly below.
    std::string sign(const JobEntry& e, const Job& job);
    /// The order of an entry pushed to a relay below (`job` as entries_to_push reads it).
    std::string pass_on(const JobEntry& e, const Job& job);
    /// A package's payload digest ("" when unknown here), looked up once per batch.
    const std::string& payload_digest(const std::string& name, const std::string& version);

   private:
    std::string signed_with(const JobEntry& e, const Job& job, const pki::SigningKey& key,
                            const std::string& cert_pem);

    const OrderSigner& signer_;
    std::optional<pki::SigningKey> relay_key_;  // read once per batch: the certificate is renewed
    std::string relay_cert_;
    struct Package {
      std::optional<Manifest> manifest;
      std::string payload, manifest_digest;  // the manifest's only once an order needs it
    };
    Package& package(const std::string& name, const std::string& version);
    std::map<std::pair<std::string, std::string>, Package> packages_;
  };

 private:
  Context& ctx_;
  std::optional<pki::SigningKey> key_;
  std::string cert_pem_;
};

}  // namespace distrib::manager
