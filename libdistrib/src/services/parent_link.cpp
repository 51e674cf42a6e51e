#include "services/parent_link.h"

#include <filesystem>

#include <distrib/error.h>

#include "model/json_codec.h"

#include <spdlog/spdlog.h>

namespace distrib {

ParentLink::ParentLink(Settings settings) : settings_(std::move(settings)) {
  if (settings_.urls.empty()) throw Error(ErrorKind::invalid_argument, "no parent URL is configured");
  for (const auto& u : settings_.urls) parse_base_url(u);
  last_probe_ = std::chrono::steady_clock::now();
}

std::string ParentLink::current() const {
  std::lock_guard lock(mutex_);
  return settings_.urls[index_];
}

bool ParentLink::failed(const std::string& url) {
  std::lock_guard lock(mutex_);
  if (settings_.urls[index_] != url || settings_.urls.size() == 1) return true;
  index_ = (index_ + 1) % settings_.urls.size();
  last_probe_ = std::chrono::steady_clock::now();
  spdlog::warn("parent {} unreachable; switching to {}", url, settings_.urls[index_]);
  return index_ == 0;
}

bool ParentLink::maybe_return_to_primary() {
  {
    std::lock_guard lock(mutex_);
    if (index_ == 0) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_probe_ < std::chrono::seconds(settings_.recheck_seconds)) return false;
    last_probe_ = now;
  }
  auto s = client_settings(settings_.urls[0]);
  s.connect_timeout_seconds = 3;
  s.timeout_seconds = 5;
  try {
    HttpClient probe(s);
    if (probe.request("GET", "/v1/status").status != 200) return false;
  } catch (const Error&) {
    return false;
  }
  std::lock_guard lock(mutex_);
  spdlog::info("first parent {} answers again; going back to it", settings_.urls[0]);
  index_ = 0;
  return true;
}

HttpClientSettings ParentLink::client_settings(const std::string& url) const {
  HttpClientSettings s;
  s.base_url = url;
  s.ca_file = settings_.ca_file;
  s.bind_address = settings_.bind_address;
  std::error_code ec;
  if (!settings_.cert_file.empty() && std::filesystem::exists(settings_.cert_file, ec)) {
    s.cert_file = settings_.cert_file;
    s.key_file = settings_.key_file;
  }
  return s;
}

void require_ok(const HttpResponse& res, std::string_view what) {
  if (res.status / 100 == 2) return;
  const auto kind = res.status == 400   ? ErrorKind::invalid_argument
                    : res.status == 403 ? ErrorKind::forbidden
                    : res.status == 404 ? ErrorKind::not_found
                    : res.status == 409 ? ErrorKind::conflict
                                        : ErrorKind::unavailable;
  throw Error(kind, std::string(what) + ": " + std::to_string(res.status) + " " +
                        json::error_message(res.body, res.status));
}

boost::json::object call_parent(HttpClient& client, std::string_view method, std::string_view target,
                                const boost::json::value& body) {
  auto res = client.request(method, target, body.is_null() ? std::string() : boost::json::serialize(body));
  require_ok(res, client.settings().base_url + ": " + std::string(method) + " " + std::string(target));
  return json::parse_object(res.body);
}

HttpClient& ClientSet::get(const std::string& url) {
  std::lock_guard lock(mutex_);
  auto& c = clients_[url];
  if (!c) c = std::make_unique<HttpClient>(link_.client_settings(url));
  return *c;
}

void ClientSet::abort() noexcept {
  std::lock_guard lock(mutex_);
  for (auto& [u, c] : clients_) c->abort();
}

void ClientSet::renew() {
  std::lock_guard lock(mutex_);
  for (auto& [u, c] : clients_) retired_.push_back(std::move(c));
  clients_.clear();
}

ClientPool::Lease ClientPool::lease(const std::string& url) {
  std::lock_guard lock(mutex_);
  if (aborted_) throw Error(ErrorKind::unavailable, "stopping: no further requests to the parent " + url);
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i].leased && slots_[i].url == url) {
      slots_[i].leased = true;
      if (slots_[i].generation != generation_) {
        slots_[i].client = std::make_unique<HttpClient>(link_.client_settings(url));
        slots_[i].generation = generation_;
      }
      return Lease(*this, i);
    }
  }
  slots_.push_back(Slot{url, std::make_unique<HttpClient>(link_.client_settings(url)), true, generation_});
  return Lease(*this, slots_.size() - 1);
}

HttpClient& ClientPool::client(std::size_t slot) {
  std::lock_guard lock(mutex_);
  return *slots_[slot].client;
}

void ClientPool::give_back(std::size_t slot) noexcept {
  std::lock_guard lock(mutex_);
  slots_[slot].leased = false;
}

void ClientPool::renew() {
  std::lock_guard lock(mutex_);
  ++generation_;
}

void ClientPool::abort() noexcept {
  std::lock_guard lock(mutex_);
  aborted_ = true;
  for (auto& s : slots_) s.client->abort();
}

std::size_t ClientPool::size() const {
  std::lock_guard lock(mutex_);
  return slots_.size();
}

}  // namespace distrib
