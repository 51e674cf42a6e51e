// SociLease: the db-lease coordinator's lease row, takeovers, and the fence this store's writes check.
#include "store/soci/soci_store.h"

namespace distrib::store {

auto SociLease::acquire_lease(const std::string& name, const std::string& node, std::int64_t now_ms,
                              std::int64_t ttl_ms) -> LeaseRecord {
  return core_.write_unfenced(
      [&](soci::session& sql) {
        const ll now = now_ms, expires = now_ms + ttl_ms;
        auto cur = core_.select_lease(sql, name);
        if (!cur) {
          const ll token = 1;
          sql << "INSERT INTO cluster_lease (name, holder, token, expires_at, since) VALUES (:n, :h, :t, :e, "
                 ":s)",
              soci::use(name), soci::use(node), soci::use(token), soci::use(expires), soci::use(now);
          record_takeover(sql, name, node, "", token, now, 0);
          return LeaseRecord{name, node, token, expires, now};
        }
        if (cur->holder == node && cur->expires_at_ms > now) {
          sql << "UPDATE cluster_lease SET expires_at = :e WHERE name = :n AND token = :t",
              soci::use(expires), soci::use(name), soci::use(static_cast<ll>(cur->token));
          cur->expires_at_ms = expires;
          return *cur;
        }
        if (!cur->holder.empty() && cur->expires_at_ms > now) return *cur;  // held by another
        // A takeover: the row is locked exclusively first, which waits for the old holder's writes
        // under way (they hold it in key-share mode), then looked at again (renewed meanwhile?).
        cur = core_.select_lease(sql, name, SociCore::LeaseLock::exclusive);
        if (!cur) return LeaseRecord{name, "", 0, 0, 0};
        if (cur->holder != node && !cur->holder.empty() && cur->expires_at_ms > now) return *cur;
        const ll token = cur->token + 1;
        soci::statement st =
            (sql.prepare << "UPDATE cluster_lease SET holder = :h, token = :t, expires_at = :e, since = :s "
                            "WHERE name = :n AND token = :old",
             soci::use(node), soci::use(token), soci::use(expires), soci::use(now), soci::use(name),
             soci::use(static_cast<ll>(cur->token)));
        st.execute(true);
        if (st.get_affected_rows() != 1) return *core_.select_lease(sql, name);  // another node was faster
        record_takeover(sql, name, node, cur->holder, token, now, std::max<ll>(0, now - cur->expires_at_ms));
        return LeaseRecord{name, node, token, expires, now};
      },
      true);
}

void SociLease::record_takeover(soci::session& sql, const std::string& name, const std::string& node,
                                const std::string& prev, ll token, ll now, ll gap) {
  sql << "INSERT INTO cluster_takeovers (name, holder, token, at_ms, previous, gap_ms) VALUES (:n, :h, :t, "
         ":a, :p, :g)",
      soci::use(name), soci::use(node), soci::use(token), soci::use(now), soci::use(prev), soci::use(gap);
  core_.emit(sql, "cluster.takeover", prev.empty() ? Severity::info : Severity::warning, 0, "", node,
             "cluster " + name + ": " + node + " became active (token " + std::to_string(token) + ")" +
                 (prev.empty() ? std::string()
                               : ", taking over from " + prev + " after " + std::to_string(gap) + " ms"));
}

auto SociLease::renew_lease(const std::string& name, const std::string& node, std::int64_t token,
                            std::int64_t now_ms, std::int64_t ttl_ms) -> bool {
  return core_.write_unfenced(
      [&](soci::session& sql) {
        const ll t = token, now = now_ms, expires = now_ms + ttl_ms;
        soci::statement st =
            (sql.prepare << "UPDATE cluster_lease SET expires_at = :e WHERE name = :n AND holder = :h "
                            "AND token = :t AND expires_at > :now",
             soci::use(expires), soci::use(name), soci::use(node), soci::use(t), soci::use(now));
        st.execute(true);
        return st.get_affected_rows() == 1;
      },
      true);
}

void SociLease::release_lease(const std::string& name, const std::string& node, std::int64_t token,
                              std::int64_t now_ms) {
  core_.write_unfenced(
      [&](soci::session& sql) {
        const ll t = token, now = now_ms;
        sql << "UPDATE cluster_lease SET expires_at = :now WHERE name = :n AND holder = :h AND token = :t",
            soci::use(now), soci::use(name), soci::use(node), soci::use(t);
      },
      true);
}

auto SociLease::read_lease(const std::string& name) -> std::optional<LeaseRecord> {
  return core_.guarded([&](soci::session& sql) { return core_.select_lease(sql, name); }, -1, true);
}

auto SociLease::takeovers(const std::string& name, int limit) -> std::vector<Takeover> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<Takeover> out;
    soci::rowset<soci::row> rs =
        (sql.prepare
             << "SELECT holder, previous, token, at_ms, gap_ms FROM cluster_takeovers WHERE name = :n "
                "ORDER BY id DESC" +
                    core_.dialect().limit(std::max(1, limit)),
         soci::use(name));
    for (const auto& r : rs)
      out.push_back({get_str(r, 0), get_str(r, 1), get_i64(r, 2), get_i64(r, 3), get_i64(r, 4)});
    return out;
  });
}

auto SociLease::raise_fence(const std::string& name, const std::string& node, std::int64_t token,
                            std::int64_t now_ms) -> bool {
  return core_.write_unfenced(
      [&](soci::session& sql) {
        const ll t = token, now = now_ms, forever = std::numeric_limits<ll>::max();
        // Exclusively: a change of holder waits for the old holder's writes under way.
        auto cur = core_.select_lease(sql, name, SociCore::LeaseLock::exclusive);
        if (cur && cur->token > token) return false;
        if (cur && cur->token == token && cur->holder == node) return true;
        if (!cur) {
          sql << "INSERT INTO cluster_lease (name, holder, token, expires_at, since) VALUES (:n, :h, :t, :e, "
                 ":s)",
              soci::use(name), soci::use(node), soci::use(t), soci::use(forever), soci::use(now);
        } else {
          sql << "UPDATE cluster_lease SET holder = :h, token = :t, expires_at = :e, since = :s WHERE name = "
                 ":n",
              soci::use(node), soci::use(t), soci::use(forever), soci::use(now), soci::use(name);
        }
        record_takeover(sql, name, node, cur ? cur->holder : std::string(), t, now, 0);
        return true;
      },
      true);
}

void SociLease::set_fencing(const std::string& name, std::int64_t token) {
  core_.set_fencing(name, token);
}

}  // namespace distrib::store
