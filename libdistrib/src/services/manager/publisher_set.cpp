// The trusted publisher set a manager serves (publisher_set.h).
#include "services/manager/publisher_set.h"

#include <distrib/error.h>

#include "model/json_codec.h"
#include "security/orders.h"
#include "util/fs.h"

#include <spdlog/spdlog.h>

namespace distrib::manager {

void PublisherSetHolder::load(const std::filesystem::path& state_dir) {
  std::lock_guard lock(mutex_);
  file_ = state_dir / "publishers.json";
  std::error_code ec;
  if (!std::filesystem::exists(file_, ec)) return;
  try {
    // Written here after it was signed or verified; the state directory is this manager's own.
    signed_ = fs::read_file(file_);
    const auto statement = json::get_string(json::parse_object(signed_), "statement");
    const auto body = statement.find('\n');
    set_ = security::publisher_set_from_json(statement.substr(body == std::string::npos ? 0 : body + 1));
  } catch (const Error& e) {
    spdlog::warn("{} cannot be read ({}); no publisher key is trusted until it is replaced", file_.string(),
                 e.what());
    signed_.clear();
    set_ = {};
  }
}

std::int64_t PublisherSetHolder::version() const {
  std::lock_guard lock(mutex_);
  return set_.version;
}

security::PublisherSet PublisherSetHolder::set() const {
  std::lock_guard lock(mutex_);
  return set_;
}

std::string PublisherSetHolder::signed_text() const {
  std::lock_guard lock(mutex_);
  return signed_;
}

bool PublisherSetHolder::replace(security::PublisherSet set, std::string signed_text) {
  std::lock_guard lock(mutex_);
  if (set.version <= set_.version) return false;
  fs::write_file_atomic(file_, signed_text);
  set_ = std::move(set);
  signed_ = std::move(signed_text);
  return true;
}

security::PublisherSet PublisherSetHolder::change(const std::function<void(security::PublisherSet&)>& edit,
                                                  const std::string& signer_key,
                                                  const std::string& signer_cert) {
  std::lock_guard lock(mutex_);
  auto next = set_;
  edit(next);
  next.version = set_.version + 1;
  auto text = security::sign_publishers(next, pki::SigningKey(signer_key), signer_cert);
  fs::write_file_atomic(file_, text);
  set_ = next;
  signed_ = std::move(text);
  return next;
}

}  // namespace distrib::manager
