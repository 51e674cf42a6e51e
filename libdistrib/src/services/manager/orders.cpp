// Signing the orders of the top manager (orders.h).
#include "services/manager/orders.h"

#include "security/orders.h"

namespace distrib::manager {

OrderSigner::OrderSigner(Context& ctx) : ctx_(ctx) {
  if (!ctx.pki) return;
  key_pem_ = fs::read_file(ctx.pki->signer_key);
  cert_pem_ = fs::read_file(ctx.pki->signer_cert);
}

std::string OrderSigner::Batch::sign(const JobEntry& e, const Job& job) {
  if (!signer_.enabled()) return e.signed_order;  // a relay passes on what it received
  security::Order o;
  o.host_id = e.host_id;
  o.entry = e.id;
  o.attempt = e.attempt;
  o.type = std::string(to_string(job.type));
  if (needs_package(job.type)) {
    o.package = job.package_name;
    o.version = job.package_version;
    auto key = std::make_pair(job.package_name, job.package_version);
    auto it = digests_.find(key);
    if (it == digests_.end()) {
      const auto m = signer_.ctx_.store->find_package(job.package_name, job.package_version);
      it = digests_
               .emplace(key, m ? std::make_pair(m->payload_digest, security::manifest_digest(*m))
                               : std::make_pair(std::string(), std::string()))
               .first;
    }
    o.payload = it->second.first;
    o.manifest = it->second.second;
  }
  if (job.type == JobType::collect_files) o.collect = security::collect_digest(job.collect);
  o.issued = fs::now_unix();
  o.expires = o.issued + security::kOrderLifetime;
  return security::sign_order(o, signer_.key_pem_, signer_.cert_pem_);
}

}  // namespace distrib::manager
