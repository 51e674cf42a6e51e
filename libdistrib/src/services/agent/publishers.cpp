// The keys an agent trusts to say what runs, and the check of every manifest (publishers.h).
#include "services/agent/publishers.h"

#include "security/enrolment.h"

namespace distrib::agent {

PublisherTrust::PublisherTrust(Context& ctx, Link& link) : ctx_(ctx), link_(link) {
  for (const auto& f : ctx.settings.publisher_keys) {
    security::PublisherKey k;
    try {
      k.public_pem = fs::read_file(f);
      k.id = security::publisher_key_id(k.public_pem);
    } catch (const Error& e) {
      throw Error(ErrorKind::invalid_argument, "publisher key " + f.string() + ": " + e.what());
    }
    k.name = f.stem().string();
    configured_.push_back(std::move(k));
  }
  std::error_code ec;
  if (stdfs::exists(file(), ec)) {
    try {
      // Checked again: the file may have been changed since it was taken.
      if (auto set = verified(fs::read_file(file()))) set_ = std::move(*set);
    } catch (const Error& e) {
      spdlog::warn("{}: {}; waiting for the parent's trusted publisher set", file().string(), e.what());
    }
  }
  if (!ctx.settings.enrol_bundle.empty()) {
    try {
      const auto b = security::read_bundle(fs::read_file(ctx.settings.enrol_bundle));
      if (!b.publishers.empty()) adopt(b.publishers, "the enrolment bundle");
    } catch (const Error& e) {
      spdlog::warn("trusted publisher set of the enrolment bundle: {}", e.what());
    }
  }
}

std::int64_t PublisherTrust::version() const {
  std::lock_guard lock(mutex_);
  return set_.version;
}

auto PublisherTrust::verified(const std::string& signed_set) const -> std::optional<security::PublisherSet> {
  const auto* id = ctx_.identity.get();
  if (!id || !id->trusts()) return std::nullopt;  // no CA: only configured keys count
  std::error_code ec;
  const auto ca = fs::read_file(stdfs::exists(id->issuer_file(), ec) ? id->issuer_file() : id->ca_file());
  return security::verify_publishers(signed_set, ca, fs::now_unix());
}

bool PublisherTrust::adopt(const std::string& signed_set, const char* from) {
  auto checked = verified(signed_set);
  if (!checked) return false;
  auto set = std::move(*checked);
  std::lock_guard lock(mutex_);
  if (set.version <= set_.version) return false;  // never rolled back
  fs::write_file_atomic(file(), signed_set);
  spdlog::info("trusted publisher set version {} from {}: {} key(s), {} revoked", set.version, from,
               set.keys.size(), set.revoked.size());
  set_ = std::move(set);
  return true;
}

void PublisherTrust::announced(std::int64_t v) {
  if (v <= version() || v == refused_version_) return;
  try {
    const auto res = link_.call("GET", "/v1/agent/publishers", nullptr);
    if (!adopt(json::get_string(res, "signed"), "the parent")) refused_version_ = v;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::unavailable) throw;
    refused_version_ = v;
    spdlog::error("{}; keeping trusted publisher set version {}", e.what(), version());
  }
}

void PublisherTrust::check(const Manifest& m) const {
  std::vector<security::PublisherKey> trusted;
  std::vector<std::string> revoked;
  {
    std::lock_guard lock(mutex_);
    trusted = set_.keys;
    revoked = set_.revoked;
  }
  for (const auto& k : configured_)
    if (std::find(revoked.begin(), revoked.end(), k.id) == revoked.end()) trusted.push_back(k);
  security::check_publisher(m, trusted, revoked, ctx_.settings.require_signed_packages);
}

}  // namespace distrib::agent
