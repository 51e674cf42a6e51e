// The etcd coordinator: an etcd v3 lease and a key taken with a create-if-absent transaction,
// through etcd's JSON gateway (/v3/...). The key's create revision is the fencing token: etcd
// revisions only grow, so every takeover has a greater one. The token is also raised in the
// shared database (Store::raise_fence), so the store refuses writes of an older holder.
#include <distrib/error.h>
#include <distrib/net/http.h>
#include <distrib/services/failover.h>
#include "util/fs.h"

#include <openssl/evp.h>
#include <boost/json.hpp>

#include <chrono>
#include <mutex>

namespace distrib {
namespace {

namespace bj = boost::json;

std::string b64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string unb64(const std::string& in) {
  std::string out(3 * in.size() / 4 + 3, '\0');
  const int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return {};
  std::size_t len = static_cast<std::size_t>(n);
  for (auto it = in.rbegin(); it != in.rend() && *it == '='; ++it) --len;  // padding decodes as zeros
  out.resize(len);
  return out;
}

std::int64_t as_i64(const bj::object& o, const char* key) {
  if (!o.contains(key)) return 0;  // the gateway omits zero values
  const auto& v = o.at(key);
  if (v.is_string()) return std::stoll(std::string(v.as_string()));
  if (v.is_int64()) return v.as_int64();
  return 0;
}

class EtcdCoordinator final : public FailoverCoordinator {
 public:
  EtcdCoordinator(std::string endpoint, std::string key, Store* store, std::string cluster)
      : http_(make_client(endpoint)),
        endpoint_(std::move(endpoint)),
        key_(std::move(key)),
        store_(store),
        cluster_(std::move(cluster)) {}
  std::string kind() const override { return "etcd"; }

  bool acquire(const std::string& node, std::chrono::milliseconds ttl) override {
    // While another node holds the key, one read answers (a standby asks ten times a renew
    // interval); a lease is granted only when the key is gone.
    const auto held = call("/v3/kv/range", bj::object{{"key", b64(key_)}, {"count_only", true}});
    if (as_i64(held, "count") > 0) return false;
    const auto seconds = std::max<std::int64_t>(1, (ttl.count() + 999) / 1000);
    const auto grant = call("/v3/lease/grant", bj::object{{"TTL", seconds}});
    const auto id = as_i64(grant, "ID");
    if (id == 0) throw Error(ErrorKind::unavailable, "etcd at " + endpoint_ + " granted no lease");
    const auto txn = call(
        "/v3/kv/txn",
        bj::object{
            {"compare",
             bj::array{bj::object{{"key", b64(key_)}, {"target", "CREATE"}, {"create_revision", "0"}}}},
            {"success", bj::array{bj::object{{"request_put", bj::object{{"key", b64(key_)},
                                                                        {"value", b64(node)},
                                                                        {"lease", std::to_string(id)}}}}}}});
    if (!txn.contains("succeeded") || !txn.at("succeeded").as_bool()) {
      call("/v3/lease/revoke", bj::object{{"ID", std::to_string(id)}});
      return false;
    }
    const auto token = as_i64(txn.at("header").as_object(), "revision");
    if (store_ && !store_->raise_fence(cluster_, node, token, fs::now_unix_ms())) {
      call("/v3/lease/revoke", bj::object{{"ID", std::to_string(id)}});
      const auto rec = store_->read_lease(cluster_);
      throw Error(
          ErrorKind::conflict,
          "the database records fencing token " + std::to_string(rec ? rec->token : 0) +
              ", newer than etcd's revision " + std::to_string(token) +
              ": etcd was reset or replaced; once no node is active, clear it with DELETE FROM cluster_lease "
              "WHERE name = '" +
              cluster_ + "'");
    }
    lease_ = id;
    token_ = token;
    return true;
  }

  bool keep(const std::string&, std::chrono::milliseconds) override {
    if (lease_ == 0) return false;
    const auto r = call("/v3/lease/keepalive", bj::object{{"ID", std::to_string(lease_)}});
    const auto& result = r.contains("result") ? r.at("result").as_object() : bj::object{};
    if (as_i64(result, "TTL") > 0) return true;
    lease_ = token_ = 0;  // expired: the key went with it
    return false;
  }

  void lose(const std::string&) override {
    if (lease_ != 0) call("/v3/lease/revoke", bj::object{{"ID", std::to_string(lease_)}});
    lease_ = token_ = 0;
  }

  LeaseRecord observe() override {
    LeaseRecord out{cluster_, "", 0, 0, 0};
    const auto r = call("/v3/kv/range", bj::object{{"key", b64(key_)}});
    if (!r.contains("kvs")) return out;
    const auto kvs = r.at("kvs").as_array();
    if (kvs.empty()) return out;
    const auto& kv = kvs[0].as_object();
    out.holder = unb64(std::string(kv.at("value").as_string()));
    out.token = as_i64(kv, "create_revision");
    const auto lease = as_i64(kv, "lease");
    if (lease != 0) {
      const auto t = call("/v3/lease/timetolive", bj::object{{"ID", std::to_string(lease)}});
      out.expires_at_ms = fs::now_unix_ms() + as_i64(t, "TTL") * 1000;
    }
    if (store_)
      if (auto rec = store_->read_lease(cluster_); rec && rec->token == out.token)
        out.since_ms = rec->since_ms;
    return out;
  }
  std::int64_t token() const override { return token_; }
  std::vector<Takeover> history(int limit) override {
    return store_ ? store_->takeovers(cluster_, limit) : std::vector<Takeover>{};
  }

 private:
  static HttpClient make_client(const std::string& endpoint) {
    HttpClientSettings s;
    s.base_url = endpoint;
    s.connect_timeout_seconds = 2;
    s.timeout_seconds = 2;
    return HttpClient(s);
  }
  bj::object call(const std::string& path, const bj::object& body) {
    std::lock_guard lock(http_mutex_);  // status pages observe() from other threads
    auto res = http_.request("POST", path, bj::serialize(body));
    if (res.status != 200)
      throw Error(ErrorKind::unavailable, "etcd at " + endpoint_ + path + " answered " +
                                              std::to_string(res.status) + ": " + res.body.substr(0, 200));
    boost::system::error_code ec;
    auto v = bj::parse(res.body, ec);
    if (ec || !v.is_object())
      throw Error(ErrorKind::unavailable, "etcd at " + endpoint_ + " answered no JSON object");
    return std::move(v.as_object());
  }

  std::mutex http_mutex_;
  HttpClient http_;
  std::string endpoint_;
  std::string key_;
  Store* store_;
  std::string cluster_;
  std::int64_t lease_ = 0;
  std::int64_t token_ = 0;
};

}  // namespace

std::unique_ptr<FailoverCoordinator> make_etcd_coordinator(const CoordinatorContext& c) {
  auto it = c.options.find("endpoint");
  if (it == c.options.end() || it->second.empty())
    throw Error(ErrorKind::invalid_argument,
                "the etcd coordinator needs an endpoint (--etcd-endpoint http://HOST:2379)");
  parse_base_url(it->second);  // names a malformed URL
  return std::make_unique<EtcdCoordinator>(it->second, "/distrib/" + c.cluster + "/active", c.store,
                                           c.cluster);
}

}  // namespace distrib
