// A relay's content cache: manifests fetched on demand, eviction by size and age.
#include "services/manager/relay_cache.h"

#include "services/manager/packages.h"

#include <filesystem>

namespace distrib::manager {

void RelayCache::start() {
  upstream_ =
      std::make_unique<UpstreamFetcher>(*ctx_.chunks, link_, ctx_.my_id, ctx_.settings.upstream_threads);
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
}

void RelayCache::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (upstream_) upstream_->stop();
  if (thread_.joinable()) thread_.join();
}

// The package's manifest, fetched from the parent and recorded here when missing.
auto RelayCache::ensure_manifest(const std::string& name, const std::string& version)
    -> std::optional<Manifest> {
  if (auto m = ctx_.store->find_package(name, version)) return m;
  std::string text;
  try {
    text = upstream_->get("/v1/content/manifests/" + url_encode(name) + "/" + url_encode(version));
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::not_found) return std::nullopt;
    throw;
  }
  Manifest m = manifest_from_json(text);
  if (m.name != name || m.version != version)
    throw Error(ErrorKind::integrity, "parent sent the manifest of another package");
  validate_manifest(m);
  ctx_.store->insert_package(m);
  ctx_.store->touch_package(name, version, fs::now_unix());
  return m;
}

void RelayCache::maybe_maintain() {
  if (ctx_.settings.cache_limit_bytes == 0) return;  // expiry alone: the periodic run
  {
    std::lock_guard lock(mutex_);
    wanted_ = true;
  }
  cv_.notify_all();
}

// Removes the package's chunks that no other cached package uses.
auto RelayCache::remove_package_chunks(const Manifest& gone) -> Freed {
  const auto keep = Packages::chunks_in_use(*ctx_.store);
  Freed freed;
  for (const auto& c : gone.chunks) {
    if (keep.count(c.digest)) continue;
    std::error_code ec;
    const auto size = std::filesystem::file_size(ctx_.chunks->path_of(c.digest), ec);
    if (ec) continue;  // not cached here
    ctx_.chunks->remove(c.digest);
    ++freed.chunks;
    freed.bytes += size;
  }
  return freed;
}

// Drops a cached package unless a job that is not over still needs it.
auto RelayCache::evict(const PackageSummary& p, const char* why) -> std::optional<Freed> {
  auto m = ctx_.store->find_package(p.name, p.version);
  try {
    if (!m || !ctx_.store->delete_package(p.name, p.version)) return std::nullopt;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::conflict) return std::nullopt;  // still needed: keep it
    throw;
  }
  const auto freed = remove_package_chunks(*m);
  spdlog::info("relay cache: package {} {} dropped ({}; {} chunk(s) freed)", p.name, p.version, why,
               freed.chunks);
  return freed;
}

auto RelayCache::cache_bytes() const -> std::uint64_t {
  std::uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(ctx_.chunks->root(), ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  return total;
}

// Expiry first, then least recently used packages until the cache fits its limit.
void RelayCache::maintain_cache() {
  auto packages = ctx_.store->list_packages();
  const auto now = fs::now_unix();
  if (ctx_.settings.package_expiry_days > 0) {
    const auto max_age = static_cast<std::int64_t>(ctx_.settings.package_expiry_days * 86400.0);
    for (const auto& p : packages)
      if (now - std::max(p.last_used, p.created_at) > max_age) evict(p, "expired");
  }
  if (ctx_.settings.cache_limit_bytes == 0) return;
  auto used = cache_bytes();
  if (used <= ctx_.settings.cache_limit_bytes) return;
  packages = ctx_.store->list_packages();
  std::sort(packages.begin(), packages.end(), [](const auto& a, const auto& b) {
    return std::max(a.last_used, a.created_at) < std::max(b.last_used, b.created_at);
  });
  for (const auto& p : packages) {
    if (used <= ctx_.settings.cache_limit_bytes) break;
    if (auto freed = evict(p, "cache over its limit")) used -= std::min(used, freed->bytes);
  }
  if (used > ctx_.settings.cache_limit_bytes)
    spdlog::warn("relay cache holds {} bytes, over its limit of {}: what is left is needed by active jobs",
                 used, ctx_.settings.cache_limit_bytes);
}

void RelayCache::loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    // Every 30 s, or more often when packages expire sooner than that.
    const double expiry_s = ctx_.settings.package_expiry_days * 86400.0;
    const auto every = std::chrono::milliseconds(
        static_cast<std::int64_t>(expiry_s > 0 ? std::clamp(expiry_s * 500.0, 1000.0, 30000.0) : 30000.0));
    cv_.wait_for(lock, every, [&] { return stopping_ || wanted_; });
    if (stopping_) break;
    wanted_ = false;
    lock.unlock();
    try {
      maintain_cache();
    } catch (const std::exception& e) {
      spdlog::error("relay cache maintenance: {}", e.what());
    }
    lock.lock();
  }
}

}  // namespace distrib::manager
