// Signing the orders of the top manager (orders.h).
#include "services/manager/orders.h"

#include "security/orders.h"

namespace distrib::manager {

OrderSigner::OrderSigner(Context& ctx) : ctx_(ctx) {
  if (!ctx.pki) return;
  key_.emplace(fs::read_file(ctx.pki->signer_key));
  cert_pem_ = fs::read_file(ctx.pki->signer_cert);
}

std::string OrderSigner::Batch::sign(const JobEntry& e, const Job& job) {
  if (signer_.enabled()) return signed_with(e, job, *signer_.key_, signer_.cert_pem_);
  const auto* id = signer_.ctx_.identity.get();
  // A relay passes on what it received; it signs the orders of its own jobs with its host key.
  if (job.upstream_id != 0 || !id || !id->certified(fs::now_unix())) return e.signed_order;
  if (!relay_key_) {
    relay_key_.emplace(fs::read_file(id->key_file()));
    relay_cert_ = fs::read_file(id->cert_file());
  }
  return signed_with(e, job, *relay_key_, relay_cert_);
}

std::string OrderSigner::Batch::pass_on(const JobEntry& e, const Job& job) {
  return signer_.enabled() ? signed_with(e, job, *signer_.key_, signer_.cert_pem_) : e.signed_order;
}

auto OrderSigner::Batch::package(const std::string& name, const std::string& version) -> Package& {
  auto [it, fresh] = packages_.try_emplace({name, version});
  if (fresh) {
    it->second.manifest = signer_.ctx_.store->find_package(name, version);
    if (it->second.manifest) it->second.payload = it->second.manifest->payload_digest;
  }
  return it->second;
}

const std::string& OrderSigner::Batch::payload_digest(const std::string& name, const std::string& version) {
  return package(name, version).payload;
}

std::string OrderSigner::Batch::signed_with(const JobEntry& e, const Job& job, const pki::SigningKey& key,
                                            const std::string& cert_pem) {
  security::Order o;
  o.host_id = e.host_id;
  o.entry = e.id;
  o.attempt = e.attempt;
  o.type = order_type(job);
  if (needs_package(job.type)) {
    o.package = job.package_name;
    o.version = job.package_version;
    auto& p = package(job.package_name, job.package_version);
    if (p.manifest && p.manifest_digest.empty()) p.manifest_digest = security::manifest_digest(*p.manifest);
    o.payload = p.payload;
    o.manifest = p.manifest_digest;
  }
  if (job.type == JobType::collect_files) o.collect = security::collect_digest(job.collect);
  o.issued = fs::now_unix();
  o.expires = o.issued + security::kOrderLifetime;
  return security::sign_order(o, key, cert_pem);
}

}  // namespace distrib::manager
