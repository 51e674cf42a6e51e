#pragma once
// The top manager's signature on every order it gives (security/orders.h): each work item for an
// agent directly below, and each entry pushed to a relay for an agent below it, carries an order
// signed with the order-signing key in STATE_DIR/pki. A relay signs nothing: it passes on the
// signed orders it received with its entries.
#include "services/manager/common.h"

#include <map>
#include <utility>

namespace distrib::manager {

class OrderSigner {
 public:
  /// Reads the signing key when this manager is the top of its tree (it has its own CA).
  explicit OrderSigner(Context& ctx);
  bool enabled() const noexcept { return !key_pem_.empty(); }

  /// The signed order for attempt `e.attempt` of entry `e` of `job`; the package's manifest is
  /// looked up in the store once per package for one `Batch`. Call off the network threads.
  class Batch {
   public:
    explicit Batch(const OrderSigner& signer) : signer_(signer) {}
    std::string sign(const JobEntry& e, const Job& job);

   private:
    const OrderSigner& signer_;
    std::map<std::pair<std::string, std::string>, std::pair<std::string, std::string>> digests_;
  };

 private:
  Context& ctx_;
  std::string key_pem_, cert_pem_;
};

}  // namespace distrib::manager
