#include "store/dialect.h"

namespace distrib::store {

std::string Dialect::limit(long n) const { return " LIMIT " + std::to_string(n); }

const Dialect& sqlite_dialect() {
  static const Dialect d = [] {
    Dialect x;
    x.name = "sqlite";
    x.identity_pk = "INTEGER PRIMARY KEY AUTOINCREMENT";
    x.text_type = "TEXT";
    // A checkpoint (and its fsync) every 10,000 pages (40 MiB of WAL) rather than SQLite's
    // 1,000: large writes such as first inventory reports no longer checkpoint at every commit.
    x.connection_setup = {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                          "PRAGMA foreign_keys=ON", "PRAGMA wal_autocheckpoint=10000"};
    x.serialize_writes = true;
    x.last_insert_id = "SELECT last_insert_rowid()";
    return x;
  }();
  return d;
}

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> m = {
      {1,
       {"CREATE TABLE hosts (host_id VARCHAR(36) PRIMARY KEY, name VARCHAR(255) NOT NULL, "
        "addresses ${TEXT} NOT NULL, os ${TEXT}, role VARCHAR(16) NOT NULL, parent VARCHAR(36), "
        "agent_version VARCHAR(64), registered_at BIGINT NOT NULL, last_seen BIGINT NOT NULL)",
        "CREATE INDEX hosts_name ON hosts (name)",
        "CREATE TABLE packages (name VARCHAR(128) NOT NULL, version VARCHAR(64) NOT NULL, "
        "payload_digest CHAR(64) NOT NULL, payload_size BIGINT NOT NULL, file_count BIGINT NOT "
        "NULL, manifest ${TEXT} NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (name, version))",
        "CREATE TABLE jobs (id ${PK}, type VARCHAR(32) NOT NULL, package_name VARCHAR(128) NOT "
        "NULL, package_version VARCHAR(64) NOT NULL, destinations ${TEXT} NOT NULL, key_mode "
        "VARCHAR(16) NOT NULL, created_by VARCHAR(255), created_at BIGINT NOT NULL, "
        "cancel_requested INTEGER NOT NULL)",
        "CREATE TABLE job_entries (id ${PK}, job_id BIGINT NOT NULL REFERENCES jobs (id), "
        "host_id VARCHAR(36) NOT NULL, state VARCHAR(16) NOT NULL, attempt INTEGER NOT NULL, "
        "last_seq BIGINT NOT NULL, exit_code INTEGER, message ${TEXT}, output_tail ${TEXT}, "
        "updated_at BIGINT NOT NULL)",
        "CREATE INDEX job_entries_job ON job_entries (job_id)",
        "CREATE INDEX job_entries_host ON job_entries (host_id, state)"}},
      // Relays: routing down the tree (via, pushed_to), reporting up (upstream ids, change
      // counters), approval, and the relay cache's LRU clock.
      {2,
       {"ALTER TABLE hosts ADD via VARCHAR(36) DEFAULT '' NOT NULL",
        "ALTER TABLE hosts ADD approved INTEGER DEFAULT 1 NOT NULL",
        "ALTER TABLE hosts ADD up_version BIGINT DEFAULT 0 NOT NULL",
        "UPDATE hosts SET via = host_id WHERE via = ''",
        "CREATE INDEX hosts_via ON hosts (via)",
        "ALTER TABLE jobs ADD upstream_id BIGINT DEFAULT 0 NOT NULL",
        "CREATE INDEX jobs_upstream ON jobs (upstream_id)",
        "ALTER TABLE job_entries ADD pushed_to VARCHAR(36) DEFAULT '' NOT NULL",
        "ALTER TABLE job_entries ADD upstream_id BIGINT DEFAULT 0 NOT NULL",
        "ALTER TABLE job_entries ADD up_version BIGINT DEFAULT 0 NOT NULL",
        "CREATE INDEX job_entries_upstream ON job_entries (upstream_id)",
        "ALTER TABLE packages ADD last_used BIGINT DEFAULT 0 NOT NULL"}},
      // Host groups, ID groups with standing jobs, scheduling and staged rollouts.
      {3,
       {"CREATE TABLE host_groups (name VARCHAR(64) PRIMARY KEY, description ${TEXT}, created_at "
        "BIGINT NOT NULL)",
        "CREATE TABLE host_group_members (group_name VARCHAR(64) NOT NULL, host_id VARCHAR(36) NOT "
        "NULL, PRIMARY KEY (group_name, host_id))",
        "CREATE TABLE id_groups (name VARCHAR(64) PRIMARY KEY, description ${TEXT}, owner "
        "VARCHAR(36) NOT NULL, password_hash VARCHAR(128) NOT NULL, name_pattern VARCHAR(255) NOT "
        "NULL, ip_range VARCHAR(64) NOT NULL, created_at BIGINT NOT NULL)",
        "CREATE TABLE id_group_members (group_name VARCHAR(64) NOT NULL, host_id VARCHAR(36) NOT "
        "NULL, how VARCHAR(16) NOT NULL, joined_at BIGINT NOT NULL, PRIMARY KEY (group_name, host_id))",
        "CREATE INDEX id_group_members_host ON id_group_members (host_id)",
        "CREATE TABLE job_id_groups (group_name VARCHAR(64) NOT NULL, job_id BIGINT NOT NULL, "
        "PRIMARY KEY (group_name, job_id))",
        "ALTER TABLE jobs ADD start_at BIGINT DEFAULT 0 NOT NULL",
        "ALTER TABLE jobs ADD expires_at BIGINT DEFAULT 0 NOT NULL",
        "ALTER TABLE jobs ADD timing VARCHAR(16) DEFAULT 'immediate' NOT NULL",
        "ALTER TABLE jobs ADD window_spec VARCHAR(16) DEFAULT '' NOT NULL",
        "ALTER TABLE jobs ADD max_retries INTEGER DEFAULT 0 NOT NULL",
        "ALTER TABLE jobs ADD retry_installs INTEGER DEFAULT 0 NOT NULL",
        "ALTER TABLE jobs ADD retry_backoff INTEGER DEFAULT 30 NOT NULL",
        "ALTER TABLE jobs ADD waves VARCHAR(128) DEFAULT '' NOT NULL",
        "ALTER TABLE jobs ADD success_threshold INTEGER DEFAULT 90 NOT NULL",
        "ALTER TABLE jobs ADD error_threshold INTEGER DEFAULT 10 NOT NULL",
        "ALTER TABLE jobs ADD rollout_state VARCHAR(16) DEFAULT 'none' NOT NULL",
        "ALTER TABLE jobs ADD current_wave INTEGER DEFAULT 0 NOT NULL",
        "ALTER TABLE jobs ADD rollout_message ${TEXT}",
        "ALTER TABLE jobs ADD id_groups ${TEXT}",
        "CREATE INDEX jobs_expires ON jobs (expires_at)",
        "ALTER TABLE job_entries ADD wave INTEGER DEFAULT 0 NOT NULL",
        "ALTER TABLE job_entries ADD late_join INTEGER DEFAULT 0 NOT NULL",
        "ALTER TABLE job_entries ADD ready_at BIGINT DEFAULT 0 NOT NULL",
        "DROP INDEX job_entries_job",
        "CREATE INDEX job_entries_job_host ON job_entries (job_id, host_id)",
        "CREATE INDEX job_entries_ready ON job_entries (ready_at)"}},
      {4,
       {"ALTER TABLE jobs ADD split_size BIGINT DEFAULT 0 NOT NULL",
        "ALTER TABLE jobs ADD split_interval INTEGER DEFAULT 0 NOT NULL",
        "ALTER TABLE job_entries ADD seg_done BIGINT DEFAULT 0 NOT NULL",
        "ALTER TABLE job_entries ADD seg_total BIGINT DEFAULT 0 NOT NULL",
        "ALTER TABLE job_entries ADD bytes_received BIGINT DEFAULT 0 NOT NULL",
        "ALTER TABLE job_entries ADD bad_chunks BIGINT DEFAULT 0 NOT NULL"}},
      // Inventory (latest items per host, history of changes, administrator-defined fields),
      // collect-files jobs and the files they brought back, host groups defined by a query.
      {5,
       {"ALTER TABLE jobs ADD params ${TEXT}",
        "ALTER TABLE host_groups ADD query ${TEXT}",
        "CREATE TABLE inventory_hosts (host_id VARCHAR(36) PRIMARY KEY, collected_at BIGINT NOT NULL, "
        "reported_at BIGINT NOT NULL, system_digest VARCHAR(64) NOT NULL, software_digest VARCHAR(64) NOT NULL)",
        "CREATE TABLE inventory_items (host_id VARCHAR(36) NOT NULL, item_key VARCHAR(255) NOT NULL, "
        "item_value ${TEXT} NOT NULL, PRIMARY KEY (host_id, item_key))",
        "CREATE INDEX inventory_items_key ON inventory_items (item_key)",
        "CREATE TABLE inventory_history (id ${PK}, host_id VARCHAR(36) NOT NULL, at BIGINT NOT NULL, "
        "change_kind VARCHAR(8) NOT NULL, item_key VARCHAR(255) NOT NULL, old_value ${TEXT}, new_value ${TEXT})",
        "CREATE INDEX inventory_history_host ON inventory_history (host_id, id)",
        "CREATE TABLE inventory_fields (name VARCHAR(64) PRIMARY KEY, field_type VARCHAR(16) NOT NULL, "
        "allowed ${TEXT} NOT NULL, description ${TEXT})",
        "CREATE TABLE collected_files (job_id BIGINT NOT NULL, host_id VARCHAR(36) NOT NULL, path "
        "VARCHAR(1024) NOT NULL, size BIGINT NOT NULL, sha256 VARCHAR(64) NOT NULL, stored_at BIGINT NOT NULL, "
        "PRIMARY KEY (job_id, host_id, path))"}},
  };
  return m;
}

std::string render(const std::string& statement, const Dialect& dialect) {
  std::string out = statement;
  auto replace_all = [&](const std::string& from, const std::string& to) {
    for (std::size_t pos = 0; (pos = out.find(from, pos)) != std::string::npos; pos += to.size())
      out.replace(pos, from.size(), to);
  };
  replace_all("${PK}", dialect.identity_pk);
  replace_all("${TEXT}", dialect.text_type);
  return out;
}

}  // namespace distrib::store
