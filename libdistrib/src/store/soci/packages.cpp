// SociPackages: package manifests registered, listed, touched and deleted.
#include "store/soci/soci_store.h"

namespace distrib::store {

auto SociPackages::insert_package(const Manifest& m) -> bool {
  return core_.write([&](soci::session& sql) {
    std::string existing;
    soci::indicator ind = soci::i_null;
    sql << "SELECT payload_digest FROM packages WHERE name = :n AND version = :v", soci::into(existing, ind),
        soci::use(m.name), soci::use(m.version);
    if (sql.got_data() && ind == soci::i_ok) {
      if (existing == m.payload_digest) return false;
      throw Error(ErrorKind::conflict,
                  "package \"" + m.name + "\" " + m.version + " already exists with other content (payload " +
                      existing.substr(0, 12) + "…); packages are immutable: choose a new version");
    }
    const std::string manifest = manifest_to_json(m);
    const ll size = static_cast<ll>(m.payload_size);
    const ll files = static_cast<ll>(m.files.size());
    const ll created = m.created_at ? m.created_at : fs::now_unix();
    sql << "INSERT INTO packages (name, version, payload_digest, payload_size, file_count, "
           "manifest, created_at) VALUES (:n, :v, :d, :s, :f, :m, :c)",
        soci::use(m.name), soci::use(m.version), soci::use(m.payload_digest), soci::use(size),
        soci::use(files), soci::use(manifest), soci::use(created);
    core_.emit(
        sql, "package.registered", Severity::info, 0, "", m.name + " " + m.version,
        "package " + m.name + " " + m.version + " registered (" + std::to_string(m.payload_size) + " bytes)");
    return true;
  });
}

auto SociPackages::find_package(const std::string& name, const std::string& version)
    -> std::optional<Manifest> {
  return core_.guarded([&](soci::session& sql) -> std::optional<Manifest> {
    std::string manifest;
    soci::indicator ind = soci::i_null;
    sql << kPackageManifestSql, soci::into(manifest, ind), soci::use(name), soci::use(version);
    if (!sql.got_data() || ind != soci::i_ok) return std::nullopt;
    return manifest_from_json(manifest);
  });
}

auto SociPackages::list_packages() -> std::vector<PackageSummary> {
  return core_.guarded([&](soci::session& sql) {
    std::vector<PackageSummary> out;
    soci::rowset<soci::row> rs =
        (sql.prepare << "SELECT name, version, payload_digest, payload_size, file_count, "
                        "created_at, last_used FROM packages ORDER BY name, created_at");
    for (const auto& r : rs) {
      PackageSummary p;
      p.name = get_str(r, 0);
      p.version = get_str(r, 1);
      p.payload_digest = get_str(r, 2);
      p.payload_size = static_cast<std::uint64_t>(get_i64(r, 3));
      p.file_count = static_cast<std::uint64_t>(get_i64(r, 4));
      p.created_at = get_i64(r, 5);
      p.last_used = get_i64(r, 6);
      out.push_back(std::move(p));
    }
    return out;
  });
}

void SociPackages::touch_package(const std::string& name, const std::string& version, std::int64_t when) {
  core_.write([&](soci::session& sql) {
    const ll t = when;
    sql << "UPDATE packages SET last_used = :t WHERE name = :n AND version = :v", soci::use(t),
        soci::use(name), soci::use(version);
  });
}

auto SociPackages::delete_package(const std::string& name, const std::string& version) -> bool {
  return core_.write([&](soci::session& sql) {
    int exists = 0;
    sql << "SELECT COUNT(*) FROM packages WHERE name = :n AND version = :v", soci::into(exists),
        soci::use(name), soci::use(version);
    if (!exists) return false;
    ll job = 0;
    soci::indicator ind = soci::i_null;
    sql << "SELECT MIN(j.id) FROM job_entries e JOIN jobs j ON j.id = e.job_id WHERE "
           "j.package_name = :n AND j.package_version = :v AND j.type <> 'delete-package' AND "
           "e.state IN "
        << kOpen,
        soci::into(job, ind), soci::use(name), soci::use(version);
    if (ind == soci::i_ok)
      throw Error(ErrorKind::conflict,
                  "package \"" + name + "\" " + version + " is still needed by job " + std::to_string(job));
    sql << "DELETE FROM packages WHERE name = :n AND version = :v", soci::use(name), soci::use(version);
    core_.emit(sql, "package.deleted", Severity::info, 0, "", name + " " + version,
               "package " + name + " " + version + " deleted");
    return true;
  });
}

}  // namespace distrib::store
