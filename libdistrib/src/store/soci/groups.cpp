// SociGroups: host groups and ID groups: members, joins, standing jobs.
#include "store/soci/soci_store.h"

namespace distrib::store {

void SociGroups::create_host_group(const HostGroup& g) {
  core_.write([&](soci::session& sql) {
    int exists = 0;
    sql << "SELECT COUNT(*) FROM host_groups WHERE name = :n", soci::into(exists), soci::use(g.name);
    if (exists) throw Error(ErrorKind::conflict, "host group \"" + g.name + "\" already exists");
    const ll now = g.created_at ? g.created_at : fs::now_unix();
    sql << "INSERT INTO host_groups (name, description, created_at, query) VALUES (:n, :d, :c, :q)",
        soci::use(g.name), soci::use(g.description), soci::use(now), soci::use(g.query);
    add_host_group_members(sql, g.name, g.members);
  });
}

auto SociGroups::add_host_group_members(soci::session& sql, const std::string& name,
                                        const std::vector<std::string>& ids) -> int {
  int changed = 0;
  for (const auto& h : ids) {
    int exists = 0;
    sql << "SELECT COUNT(*) FROM host_group_members WHERE group_name = :g AND host_id = :h",
        soci::into(exists), soci::use(name), soci::use(h);
    if (exists) continue;
    sql << "INSERT INTO host_group_members (group_name, host_id) VALUES (:g, :h)", soci::use(name),
        soci::use(h);
    ++changed;
  }
  return changed;
}

auto SociGroups::select_host_groups(soci::session& sql, const std::string* only) -> std::vector<HostGroup> {
  std::vector<HostGroup> out;
  std::map<std::string, std::size_t> index;
  const std::string name = only ? *only : std::string();
  const int all = only ? 0 : 1;
  soci::rowset<soci::row> rs = (sql.prepare << "SELECT name, description, created_at, query FROM host_groups "
                                               "WHERE name = :n OR 1 = :a ORDER BY name",
                                soci::use(name), soci::use(all));
  for (const auto& r : rs) {
    index[get_str(r, 0)] = out.size();
    out.push_back({get_str(r, 0), get_str(r, 1), get_i64(r, 2), {}, get_str(r, 3)});
  }
  if (out.empty()) return out;
  soci::rowset<soci::row> ms = (sql.prepare << "SELECT m.group_name, m.host_id FROM host_group_members m "
                                               "LEFT JOIN hosts h ON h.host_id = m.host_id WHERE "
                                               "m.group_name = :n OR 1 = :a ORDER BY h.name, m.host_id",
                                soci::use(name), soci::use(all));
  for (const auto& r : ms)
    if (auto it = index.find(get_str(r, 0)); it != index.end())
      out[it->second].members.push_back(get_str(r, 1));
  return out;
}

auto SociGroups::find_host_group(const std::string& name) -> std::optional<HostGroup> {
  return core_.guarded([&](soci::session& sql) -> std::optional<HostGroup> {
    auto v = select_host_groups(sql, &name);
    if (v.empty()) return std::nullopt;
    return std::move(v.front());
  });
}

auto SociGroups::list_host_groups() -> std::vector<HostGroup> {
  return core_.guarded([&](soci::session& sql) { return select_host_groups(sql, nullptr); });
}

auto SociGroups::change_host_group(const std::string& name, const std::vector<std::string>& add,
                                   const std::vector<std::string>& remove) -> int {
  return core_.write([&](soci::session& sql) {
    int exists = 0;
    sql << "SELECT COUNT(*) FROM host_groups WHERE name = :n", soci::into(exists), soci::use(name);
    if (!exists) throw Error(ErrorKind::not_found, "host group \"" + name + "\" does not exist");
    int changed = add_host_group_members(sql, name, add);
    for (const auto& h : remove) {
      soci::statement st =
          (sql.prepare << "DELETE FROM host_group_members WHERE group_name = :g AND host_id = :h",
           soci::use(name), soci::use(h));
      st.execute(true);
      changed += static_cast<int>(st.get_affected_rows());
    }
    return changed;
  });
}

auto SociGroups::delete_host_group(const std::string& name) -> bool {
  return core_.write([&](soci::session& sql) {
    sql << "DELETE FROM host_group_members WHERE group_name = :n", soci::use(name);
    soci::statement st = (sql.prepare << "DELETE FROM host_groups WHERE name = :n", soci::use(name));
    st.execute(true);
    return st.get_affected_rows() > 0;
  });
}

void SociGroups::create_id_group(const IdGroup& g) {
  core_.write([&](soci::session& sql) {
    int exists = 0;
    sql << "SELECT COUNT(*) FROM id_groups WHERE name = :n", soci::into(exists), soci::use(g.name);
    if (exists) throw Error(ErrorKind::conflict, "ID group \"" + g.name + "\" already exists");
    const ll now = g.created_at ? g.created_at : fs::now_unix();
    sql << "INSERT INTO id_groups (name, description, owner, password_hash, name_pattern, ip_range, "
           "created_at) VALUES (:n, :d, :o, :p, :np, :ip, :c)",
        soci::use(g.name), soci::use(g.description), soci::use(g.owner), soci::use(g.password_hash),
        soci::use(g.policy.name_pattern), soci::use(g.policy.ip_range), soci::use(now);
  });
}

auto SociGroups::id_group_from_row(const soci::row& r) -> IdGroup {
  IdGroup g;
  g.name = get_str(r, 0);
  g.description = get_str(r, 1);
  g.owner = get_str(r, 2);
  g.password_hash = get_str(r, 3);
  g.policy.name_pattern = get_str(r, 4);
  g.policy.ip_range = get_str(r, 5);
  g.created_at = get_i64(r, 6);
  return g;
}

auto SociGroups::find_id_group(const std::string& name) -> std::optional<IdGroup> {
  return core_.guarded([&](soci::session& sql) -> std::optional<IdGroup> {
    std::optional<IdGroup> g;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT " << kIdGroupColumns << " FROM id_groups WHERE name = :n", soci::use(name));
    for (const auto& r : rs) g = id_group_from_row(r);
    if (!g) return g;
    soci::rowset<soci::row> ms =
        (sql.prepare << "SELECT m.host_id, h.name, m.how, m.joined_at FROM id_group_members m LEFT "
                        "JOIN hosts h ON h.host_id = m.host_id WHERE m.group_name = :n ORDER BY "
                        "m.joined_at, h.name",
         soci::use(name));
    for (const auto& r : ms)
      g->members.push_back({get_str(r, 0), get_str(r, 1), parse_join_method(get_str(r, 2)), get_i64(r, 3)});
    return g;
  });
}

auto SociGroups::list_id_groups(std::map<std::string, std::int64_t>* counts) -> std::vector<IdGroup> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<IdGroup> out;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT " << kIdGroupColumns << " FROM id_groups ORDER BY name");
    for (const auto& r : rs) out.push_back(id_group_from_row(r));
    if (counts) {
      soci::rowset<soci::row> cs =
          (sql.prepare << "SELECT group_name, COUNT(*) FROM id_group_members GROUP BY group_name");
      for (const auto& r : cs) (*counts)[get_str(r, 0)] = get_i64(r, 1);
    }
    return out;
  });
}

auto SociGroups::delete_id_group(const std::string& name) -> bool {
  return core_.write([&](soci::session& sql) {
    sql << "DELETE FROM id_group_members WHERE group_name = :n", soci::use(name);
    sql << "DELETE FROM job_id_groups WHERE group_name = :n", soci::use(name);
    soci::statement st = (sql.prepare << "DELETE FROM id_groups WHERE name = :n", soci::use(name));
    st.execute(true);
    return st.get_affected_rows() > 0;
  });
}

auto SociGroups::select_standing(soci::session& sql, const std::string& name, bool only_open)
    -> std::vector<Job> {
  std::vector<Job> out;
  const ll now = fs::now_unix();
  const int open = only_open ? 1 : 0;
  soci::rowset<soci::row> rs =
      (sql.prepare << "SELECT " << kJobColumns
                   << " FROM jobs WHERE id IN (SELECT job_id FROM job_id_groups WHERE group_name = "
                      ":n) AND (0 = :o OR (cancel_requested = 0 AND (expires_at = 0 OR expires_at > "
                      ":t) AND rollout_state <> 'stopped')) ORDER BY id",
       soci::use(name), soci::use(open), soci::use(now));
  for (const auto& r : rs) out.push_back(job_from_row(r));
  return out;
}

auto SociGroups::standing_jobs(const std::string& name) -> std::vector<Job> {
  return core_.guarded([&](soci::session& sql) { return select_standing(sql, name, false); });
}

auto SociGroups::id_groups_of(const std::string& host_id) -> std::vector<std::string> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<std::string> out;
    soci::rowset<soci::row> rs = (sql.prepare << kIdGroupsOfHostSql, soci::use(host_id));
    for (const auto& r : rs) out.push_back(get_str(r, 0));
    return out;
  });
}

auto SociGroups::via_of(soci::session& sql, const std::string& host_id) -> std::string {
  std::string via;
  soci::indicator ind = soci::i_null;
  sql << "SELECT via FROM hosts WHERE host_id = :h", soci::into(via, ind), soci::use(host_id);
  return sql.got_data() && ind == soci::i_ok && !via.empty() ? via : host_id;
}

auto SociGroups::join_id_group(const std::string& name, const std::vector<std::string>& host_ids,
                               JoinMethod how) -> MembershipChange {
  return core_.write([&](soci::session& sql) {
    MembershipChange out;
    int exists = 0;
    sql << "SELECT COUNT(*) FROM id_groups WHERE name = :n", soci::into(exists), soci::use(name);
    if (!exists) throw Error(ErrorKind::not_found, "ID group \"" + name + "\" does not exist");
    const auto standing = select_standing(sql, name, true);
    const ll now = fs::now_unix();
    const std::string how_text(to_string(how));
    std::set<std::string> vias;
    for (const auto& h : host_ids) {
      std::string role;
      soci::indicator rind = soci::i_null;
      sql << "SELECT role FROM hosts WHERE host_id = :h", soci::into(role, rind), soci::use(h);
      if (!sql.got_data() || rind != soci::i_ok)
        throw Error(ErrorKind::not_found, "host " + h + " is not registered here");
      int member = 0;
      sql << "SELECT COUNT(*) FROM id_group_members WHERE group_name = :g AND host_id = :h",
          soci::into(member), soci::use(name), soci::use(h);
      if (member) continue;
      sql << "INSERT INTO id_group_members (group_name, host_id, how, joined_at) VALUES (:g, :h, :w, :t)",
          soci::use(name), soci::use(h), soci::use(how_text), soci::use(now);
      ++out.changed;
      // Every standing job of the group the host has no entry in yet, oldest first.
      for (const auto& job : standing) {
        if (targets_agents(job.type) != (role == "agent")) continue;
        const ll jid = job.id;
        int has = 0;
        sql << "SELECT COUNT(*) FROM job_entries WHERE job_id = :j AND host_id = :h", soci::into(has),
            soci::use(jid), soci::use(h);
        if (has) continue;
        const int wave = job.rollout.waves.empty() ? 0 : std::max(1, job.current_wave);
        const ll ready = job.schedule.start_at;
        sql << "INSERT INTO job_entries (job_id, host_id, state, attempt, last_seq, message, "
               "output_tail, updated_at, wave, late_join, ready_at) VALUES (:j, :h, 'waiting', 1, 0, "
               "'', '', :u, :w, 1, :r)",
            soci::use(jid), soci::use(h), soci::use(now), soci::use(wave), soci::use(ready);
        ++out.entries;
        vias.insert(via_of(sql, h));
      }
    }
    out.vias.assign(vias.begin(), vias.end());
    return out;
  });
}

auto SociGroups::leave_id_group(const std::string& name, const std::vector<std::string>& host_ids)
    -> MembershipChange {
  return core_.write([&](soci::session& sql) {
    MembershipChange out;
    int exists = 0;
    sql << "SELECT COUNT(*) FROM id_groups WHERE name = :n", soci::into(exists), soci::use(name);
    if (!exists) throw Error(ErrorKind::not_found, "ID group \"" + name + "\" does not exist");
    const ll now = fs::now_unix();
    const std::string why = "host left ID group " + name;
    std::set<std::string> vias;
    for (const auto& h : host_ids) {
      soci::statement del =
          (sql.prepare << "DELETE FROM id_group_members WHERE group_name = :g AND host_id = :h",
           soci::use(name), soci::use(h));
      del.execute(true);
      if (del.get_affected_rows() == 0) continue;
      ++out.changed;
      soci::statement st =
          (sql.prepare << "UPDATE job_entries SET state = 'cancelled', message = :m, pushed_to = '', "
                          "updated_at = :u WHERE host_id = :h AND state = 'waiting' AND job_id IN "
                          "(SELECT job_id FROM job_id_groups WHERE group_name = :g)",
           soci::use(why), soci::use(now), soci::use(h), soci::use(name));
      st.execute(true);
      if (st.get_affected_rows() > 0) {
        out.entries += static_cast<std::int64_t>(st.get_affected_rows());
        vias.insert(via_of(sql, h));
      }
    }
    out.vias.assign(vias.begin(), vias.end());
    return out;
  });
}

}  // namespace distrib::store
