// SociStore: The db-lease coordinator's lease row, takeovers and write fencing.
#include "store/soci/soci_store.h"

namespace distrib::store {

auto SociStore::lease_from_row(const soci::row& r) -> LeaseRecord {
  return {get_str(r, 0), get_str(r, 1), get_i64(r, 2), get_i64(r, 3), get_i64(r, 4)};
}

auto SociStore::select_lease(soci::session& sql, const std::string& name, bool lock)
    -> std::optional<LeaseRecord> {
  soci::rowset<soci::row> rs =
      (sql.prepare << "SELECT name, holder, token, expires_at, since FROM cluster_lease WHERE name = :n" +
                          (lock ? dialect_.lock_rows : std::string()),
       soci::use(name));
  for (const auto& r : rs) return lease_from_row(r);
  return std::nullopt;
}

auto SociStore::acquire_lease(const std::string& name, const std::string& node, std::int64_t now_ms,
                              std::int64_t ttl_ms) -> LeaseRecord {
  return write_unfenced([&](soci::session& sql) {
    const ll now = now_ms, expires = now_ms + ttl_ms;
    auto cur = select_lease(sql, name);
    if (!cur) {
      const ll token = 1;
      sql << "INSERT INTO cluster_lease (name, holder, token, expires_at, since) VALUES (:n, :h, :t, :e, :s)",
          soci::use(name), soci::use(node), soci::use(token), soci::use(expires), soci::use(now);
      record_takeover(sql, name, node, "", token, now, 0);
      return LeaseRecord{name, node, token, expires, now};
    }
    if (cur->holder == node && cur->expires_at_ms > now) {
      sql << "UPDATE cluster_lease SET expires_at = :e WHERE name = :n AND token = :t", soci::use(expires),
          soci::use(name), soci::use(static_cast<ll>(cur->token));
      cur->expires_at_ms = expires;
      return *cur;
    }
    if (!cur->holder.empty() && cur->expires_at_ms > now) return *cur;  // held by another
    const ll token = cur->token + 1;
    soci::statement st =
        (sql.prepare << "UPDATE cluster_lease SET holder = :h, token = :t, expires_at = :e, since = :s "
                        "WHERE name = :n AND token = :old",
         soci::use(node), soci::use(token), soci::use(expires), soci::use(now), soci::use(name),
         soci::use(static_cast<ll>(cur->token)));
    st.execute(true);
    if (st.get_affected_rows() != 1) return *select_lease(sql, name);  // another node was faster
    record_takeover(sql, name, node, cur->holder, token, now, std::max<ll>(0, now - cur->expires_at_ms));
    return LeaseRecord{name, node, token, expires, now};
  });
}

void SociStore::record_takeover(soci::session& sql, const std::string& name, const std::string& node,
                                const std::string& prev, ll token, ll now, ll gap) {
  sql << "INSERT INTO cluster_takeovers (name, holder, token, at_ms, previous, gap_ms) VALUES (:n, :h, :t, "
         ":a, :p, :g)",
      soci::use(name), soci::use(node), soci::use(token), soci::use(now), soci::use(prev), soci::use(gap);
  emit(sql, "cluster.takeover", prev.empty() ? Severity::info : Severity::warning, 0, "", node,
       "cluster " + name + ": " + node + " became active (token " + std::to_string(token) + ")" +
           (prev.empty() ? std::string()
                         : ", taking over from " + prev + " after " + std::to_string(gap) + " ms"));
}

auto SociStore::renew_lease(const std::string& name, const std::string& node, std::int64_t token,
                            std::int64_t now_ms, std::int64_t ttl_ms) -> bool {
  return write_unfenced([&](soci::session& sql) {
    const ll t = token, now = now_ms, expires = now_ms + ttl_ms;
    soci::statement st =
        (sql.prepare << "UPDATE cluster_lease SET expires_at = :e WHERE name = :n AND holder = :h "
                        "AND token = :t AND expires_at > :now",
         soci::use(expires), soci::use(name), soci::use(node), soci::use(t), soci::use(now));
    st.execute(true);
    return st.get_affected_rows() == 1;
  });
}

void SociStore::release_lease(const std::string& name, const std::string& node, std::int64_t token,
                              std::int64_t now_ms) {
  write_unfenced([&](soci::session& sql) {
    const ll t = token, now = now_ms;
    sql << "UPDATE cluster_lease SET expires_at = :now WHERE name = :n AND holder = :h AND token = :t",
        soci::use(now), soci::use(name), soci::use(node), soci::use(t);
  });
}

auto SociStore::read_lease(const std::string& name) -> std::optional<LeaseRecord> {
  return guarded([&](soci::session& sql) { return select_lease(sql, name); });
}

auto SociStore::takeovers(const std::string& name, int limit) -> std::vector<Takeover> {
  return guarded([&](soci::session& sql) {
    std::vector<Takeover> out;
    soci::rowset<soci::row> rs =
        (sql.prepare
             << "SELECT holder, previous, token, at_ms, gap_ms FROM cluster_takeovers WHERE name = :n "
                "ORDER BY id DESC" +
                    dialect_.limit(std::max(1, limit)),
         soci::use(name));
    for (const auto& r : rs)
      out.push_back({get_str(r, 0), get_str(r, 1), get_i64(r, 2), get_i64(r, 3), get_i64(r, 4)});
    return out;
  });
}

auto SociStore::raise_fence(const std::string& name, const std::string& node, std::int64_t token,
                            std::int64_t now_ms) -> bool {
  return write_unfenced([&](soci::session& sql) {
    const ll t = token, now = now_ms, forever = std::numeric_limits<ll>::max();
    auto cur = select_lease(sql, name);
    if (cur && cur->token > token) return false;
    if (cur && cur->token == token && cur->holder == node) return true;
    if (!cur) {
      sql << "INSERT INTO cluster_lease (name, holder, token, expires_at, since) VALUES (:n, :h, :t, :e, :s)",
          soci::use(name), soci::use(node), soci::use(t), soci::use(forever), soci::use(now);
    } else {
      sql << "UPDATE cluster_lease SET holder = :h, token = :t, expires_at = :e, since = :s WHERE name = :n",
          soci::use(node), soci::use(t), soci::use(forever), soci::use(now), soci::use(name);
    }
    record_takeover(sql, name, node, cur ? cur->holder : std::string(), t, now, 0);
    return true;
  });
}

void SociStore::set_fencing(const std::string& name, std::int64_t token) {
  std::lock_guard lock(fence_mutex_);
  fence_name_ = name;
  fence_token_ = token;
}

void SociStore::check_fence(soci::session& sql) {
  std::string name;
  ll token = 0;
  {
    std::lock_guard lock(fence_mutex_);
    name = fence_name_;
    token = fence_token_;
  }
  if (token == 0) return;
  // Locked until this transaction ends: a takeover waits for it, so no write of the old
  // holder can commit after the new one took the lease.
  const auto cur = select_lease(sql, name, true);
  const ll now = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  if (!cur || cur->token != token || cur->expires_at_ms <= now)
    throw Error(
        ErrorKind::conflict,
        "fenced: this node no longer holds the active lease (token " + std::to_string(token) +
            (cur ? ", current " + std::to_string(cur->token) + " held by " + cur->holder : std::string()) +
            "); nothing was written");
}

}  // namespace distrib::store
