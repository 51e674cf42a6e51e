#include "store/dialect.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <stdexcept>

namespace distrib::store {
namespace {

std::string replace_all(std::string out, const std::string& from, const std::string& to) {
  for (std::size_t pos = 0; (pos = out.find(from, pos)) != std::string::npos; pos += to.size())
    out.replace(pos, from.size(), to);
  return out;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool ident_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\n") - b + 1);
}

// Words of a statement outside string literals, in order.
std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] == '\'') {
      const auto end = s.find('\'', i + 1);
      i = end == std::string::npos ? s.size() : end + 1;
    } else if (ident_start(s[i])) {
      std::size_t j = i;
      while (j < s.size() && ident_char(s[j])) ++j;
      out.push_back(s.substr(i, j - i));
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

// Substitutes types and quotes reserved words, word by word, leaving string literals alone.
std::string map_words(const std::string& s, const Dialect& d) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] == '\'') {
      const auto end = s.find('\'', i + 1);
      const auto stop = end == std::string::npos ? s.size() : end + 1;
      out += s.substr(i, stop - i);
      i = stop;
    } else if (ident_start(s[i]) &&
               (i == 0 || (!ident_char(s[i - 1]) && s[i - 1] != '$' && s[i - 1] != '{'))) {
      std::size_t j = i;
      while (j < s.size() && ident_char(s[j])) ++j;
      const std::string w = s.substr(i, j - i);
      std::string repl = w;
      for (const auto& [from, to] : d.types)
        if (w == from) repl = to;
      const bool lower = std::none_of(w.begin(), w.end(),
                                      [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
      if (repl == w && lower && std::find(d.reserved.begin(), d.reserved.end(), upper(w)) != d.reserved.end())
        repl = "\"" + upper(w) + "\"";
      out += repl;
      i = j;
    } else {
      out += s[i++];
    }
  }
  return out;
}

// Oracle's and SQL Server's reserved words that could plausibly be column names. The schema
// test checks that no identifier needs quoting anywhere but where render quotes it.
const std::vector<std::string> kOracleReserved = {
    "ACCESS",  "AUDIT",    "CLUSTER", "COLUMN",     "COMMENT",   "COMPRESS",  "CURRENT",
    "DATE",    "FILE",     "GROUP",   "IDENTIFIED", "IMMEDIATE", "INCREMENT", "INDEX",
    "INITIAL", "LEVEL",    "LOCK",    "LONG",       "MODE",      "MODIFY",    "NUMBER",
    "OFFLINE", "ONLINE",   "OPTION",  "ORDER",      "PRIOR",     "PUBLIC",    "RAW",
    "RENAME",  "RESOURCE", "ROW",     "ROWID",      "ROWNUM",    "ROWS",      "SESSION",
    "SHARE",   "SIZE",     "START",   "SUCCESSFUL", "SYNONYM",   "SYSDATE",   "TABLE",
    "TRIGGER", "UID",      "USER",    "VALIDATE",   "VALUES",    "VIEW",      "WHENEVER"};
const std::vector<std::string> kSqlServerReserved = {
    "BROWSE", "BULK",   "CHECKPOINT", "COLUMN",  "COMPUTE",    "CURRENT",      "DATABASE",
    "DENY",   "DISK",   "DUMP",       "FILE",    "FILLFACTOR", "FUNCTION",     "IDENTITY",
    "INDEX",  "KEY",    "KILL",       "LINENO",  "LOAD",       "MERGE",        "OPEN",
    "OPTION", "ORDER",  "OVER",       "PERCENT", "PIVOT",      "PLAN",         "PRINT",
    "PROC",   "PUBLIC", "READ",       "RULE",    "SCHEMA",     "SESSION_USER", "STATISTICS",
    "TABLE",  "TOP",    "TRAN",       "TRIGGER", "USER",       "VIEW",         "WAITFOR"};
const std::vector<std::string> kPostgresReserved = {
    "ALL",      "ANALYSE", "ANALYZE", "ARRAY",      "ASYMMETRIC", "BOTH",  "CASE",    "CAST",
    "CHECK",    "COLLATE", "COLUMN",  "CONSTRAINT", "DEFAULT",    "DO",    "END",     "FETCH",
    "LATERAL",  "LEADING", "LIMIT",   "OFFSET",     "ONLY",       "ORDER", "PLACING", "TABLE",
    "TRAILING", "USER",    "USING",   "VARIADIC",   "WINDOW"};

std::string table_of(const std::string& statement, const std::string& prefix) {
  const auto rest = statement.substr(prefix.size());
  std::size_t j = 0;
  while (j < rest.size() && ident_char(rest[j])) ++j;
  return rest.substr(0, j);
}

}  // namespace

std::string Dialect::limit(long n) const {
  switch (paging) {
    case Paging::limit:
      return " LIMIT " + std::to_string(n);
    case Paging::offset_fetch:
      return " OFFSET 0 ROWS FETCH NEXT " + std::to_string(n) + " ROWS ONLY";
    case Paging::fetch_first:
      return " FETCH FIRST " + std::to_string(n) + " ROWS ONLY";
  }
  return {};
}

std::string Dialect::upsert(const std::string& table, const std::vector<std::string>& keys,
                            const std::vector<std::string>& values) const {
  std::vector<std::string> all = keys;
  all.insert(all.end(), values.begin(), values.end());
  auto list = [](const std::vector<std::string>& v, const std::string& prefix) {
    std::string out;
    for (const auto& c : v) out += (out.empty() ? "" : ", ") + prefix + c;
    return out;
  };
  if (upsert_style == Upsert::on_conflict) {
    std::string sql = "INSERT INTO " + table + " (" + list(all, "") + ") VALUES (" + list(all, ":") +
                      ") ON CONFLICT (" + list(keys, "") + ") DO ";
    if (values.empty()) return sql + "NOTHING";
    std::string set;
    for (const auto& c : values) set += (set.empty() ? "" : ", ") + c + " = excluded." + c;
    return sql + "UPDATE SET " + set;
  }
  std::string source;
  for (const auto& c : all) source += (source.empty() ? "" : ", ") + (":" + c) + " AS " + c;
  std::string on;
  for (const auto& c : keys) on += (on.empty() ? "" : " AND ") + ("d." + c) + " = s." + c;
  std::string set;
  for (const auto& c : values) set += (set.empty() ? "" : ", ") + ("d." + c) + " = s." + c;
  const bool sqlserver = upsert_style == Upsert::merge_values;
  std::string sql = "MERGE INTO " + table + (sqlserver ? " WITH (HOLDLOCK) AS d" : " d") + " USING (SELECT " +
                    source + (sqlserver ? ") AS s" : " FROM dual) s") + " ON (" + on + ")";
  if (!values.empty()) sql += " WHEN MATCHED THEN UPDATE SET " + set;
  sql += " WHEN NOT MATCHED THEN INSERT (" + list(all, "") + ") VALUES (" + list(all, "s.") + ")";
  return sqlserver ? sql + ";" : sql;
}

std::string Dialect::last_id_query(const std::string& table) const {
  return replace_all(last_insert_id, "%T", table);
}

std::vector<std::string> Dialect::reset_identity(const std::string& table, const std::string& column) const {
  std::vector<std::string> out;
  for (const auto& s : after_explicit_ids)
    out.push_back(replace_all(replace_all(s, "%T", table), "%C", column));
  return out;
}

const Dialect& sqlite_dialect() {
  static const Dialect d = [] {
    Dialect x;
    x.name = "sqlite";
    x.identity_pk = "INTEGER PRIMARY KEY AUTOINCREMENT";
    x.text_type = "TEXT";
    // A checkpoint (and its fsync) every 10,000 pages (40 MiB of WAL) rather than SQLite's
    // 1,000: large writes such as first inventory reports no longer checkpoint at every commit.
    x.connection_setup = {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON",
                          "PRAGMA wal_autocheckpoint=10000"};
    x.max_identifier = 128;
    x.last_insert_id = "SELECT last_insert_rowid()";
    x.explain = "EXPLAIN QUERY PLAN ";
    x.full_scan = "SCAN ";  // "SEARCH t USING INDEX ..." when an index serves
    // AUTOINCREMENT keeps its counter above explicit ids by itself.
    x.create_version_table =
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at BIGINT NOT NULL)";
    return x;
  }();
  return d;
}

const Dialect& postgresql_dialect() {
  static const Dialect d = [] {
    Dialect x;
    x.name = "postgresql";
    x.identity_pk = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
    x.text_type = "TEXT";
    // A transaction its client leaves idle for 2 s is ended by the server: a node stopped or hung
    // in the middle of one (it holds the lease row shared) cannot keep its peer from taking over.
    x.connection_setup = {"SET client_min_messages TO WARNING",
                          "SET idle_in_transaction_session_timeout TO 2000"};
    x.snapshot = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ";
    x.lock_rows = " FOR UPDATE";
    x.share_rows = " FOR KEY SHARE";
    // The planner reads a small table whole even where an index would serve; with sequential
    // scans priced out, a plan that still holds one has no index to use.
    x.explain = "EXPLAIN ";
    x.explain_setup = "SET LOCAL enable_seqscan = off";
    x.full_scan = "Seq Scan";
    x.max_identifier = 63;
    x.reserved = kPostgresReserved;
    x.last_insert_id = "SELECT currval(pg_get_serial_sequence('%T', 'id'))";
    x.after_explicit_ids = {
        "SELECT setval(pg_get_serial_sequence('%T', '%C'), COALESCE((SELECT MAX(%C) FROM %T), 0) + 1, "
        "false)"};
    x.create_version_table =
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at BIGINT NOT NULL)";
    return x;
  }();
  return d;
}

const Dialect& sqlserver_dialect() {
  static const Dialect d = [] {
    Dialect x;
    x.name = "sqlserver";
    x.types = {{"VARCHAR", "NVARCHAR"}, {"CHAR", "NCHAR"}};
    x.identity_pk = "BIGINT IDENTITY(1,1) PRIMARY KEY";
    x.text_type = "NVARCHAR(MAX)";
    // A statement error aborts the whole transaction rather than only the statement.
    x.connection_setup = {"SET XACT_ABORT ON"};
    x.snapshot = "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE";
    x.max_identifier = 128;
    x.reserved = kSqlServerReserved;
    x.paging = Dialect::Paging::offset_fetch;
    x.upsert_style = Dialect::Upsert::merge_values;
    // @@IDENTITY is per connection across scopes (SCOPE_IDENTITY() is NULL in the next batch).
    x.last_insert_id = "SELECT CAST(@@IDENTITY AS BIGINT)";
    x.explicit_ids_on = "SET IDENTITY_INSERT %T ON";
    x.explicit_ids_off = "SET IDENTITY_INSERT %T OFF";
    x.create_version_table =
        "IF OBJECT_ID(N'schema_version', N'U') IS NULL CREATE TABLE schema_version (version INTEGER NOT "
        "NULL, "
        "applied_at BIGINT NOT NULL)";
    return x;
  }();
  return d;
}

const Dialect& oracle_dialect() {
  static const Dialect d = [] {
    Dialect x;
    x.name = "oracle";
    x.types = {{"BIGINT", "NUMBER(19)"}, {"INTEGER", "NUMBER(10)"}, {"VARCHAR", "VARCHAR2"}};
    x.identity_pk = "NUMBER(19) DEFAULT ${SEQ}.NEXTVAL PRIMARY KEY";
    x.create_sequence = "CREATE SEQUENCE ${SEQ}";
    x.text_type = "CLOB";
    x.max_identifier = 30;
    x.reserved = kOracleReserved;
    x.paging = Dialect::Paging::fetch_first;
    x.upsert_style = Dialect::Upsert::merge_dual;
    x.last_insert_id = "SELECT %T_seq.CURRVAL FROM dual";
    x.after_explicit_ids = {
        "DECLARE n NUMBER; BEGIN SELECT NVL(MAX(%C), 0) + 1 INTO n FROM %T; "
        "EXECUTE IMMEDIATE 'ALTER SEQUENCE %T_seq RESTART START WITH ' || n; END;"};
    x.create_version_table =
        "BEGIN EXECUTE IMMEDIATE 'CREATE TABLE schema_version (version NUMBER(10) NOT NULL, applied_at "
        "NUMBER(19) NOT NULL)'; EXCEPTION WHEN OTHERS THEN IF SQLCODE != -955 THEN RAISE; END IF; END;";
    x.transactional_ddl = false;
    x.snapshot = "SET TRANSACTION READ ONLY";
    x.lock_rows = " FOR UPDATE";
    x.share_rows = " FOR UPDATE";  // Oracle locks rows only exclusively
    return x;
  }();
  return d;
}

const Dialect* find_dialect(const std::string& name) {
  for (const Dialect* d : {&sqlite_dialect(), &postgresql_dialect(), &sqlserver_dialect(), &oracle_dialect()})
    if (d->name == name) return d;
  return nullptr;
}

std::string dialect_names() {
  return "sqlite, postgresql, sqlserver, oracle";
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
        "UPDATE hosts SET via = host_id WHERE via = ''", "CREATE INDEX hosts_via ON hosts (via)",
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
        "DROP INDEX job_entries_job ON job_entries",
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
       {"ALTER TABLE jobs ADD params ${TEXT}", "ALTER TABLE host_groups ADD query ${TEXT}",
        "CREATE TABLE inventory_hosts (host_id VARCHAR(36) PRIMARY KEY, collected_at BIGINT NOT NULL, "
        "reported_at BIGINT NOT NULL, system_digest VARCHAR(64) NOT NULL, software_digest VARCHAR(64) NOT "
        "NULL)",
        "CREATE TABLE inventory_items (host_id VARCHAR(36) NOT NULL, item_key VARCHAR(255) NOT NULL, "
        "item_value ${TEXT} NOT NULL, PRIMARY KEY (host_id, item_key))",
        "CREATE INDEX inventory_items_key ON inventory_items (item_key)",
        "CREATE TABLE inventory_history (id ${PK}, host_id VARCHAR(36) NOT NULL, at BIGINT NOT NULL, "
        "change_kind VARCHAR(8) NOT NULL, item_key VARCHAR(255) NOT NULL, old_value ${TEXT}, new_value "
        "${TEXT})",
        "CREATE INDEX inventory_history_host ON inventory_history (host_id, id)",
        "CREATE TABLE inventory_fields (name VARCHAR(64) PRIMARY KEY, field_type VARCHAR(16) NOT NULL, "
        "allowed ${TEXT} NOT NULL, description ${TEXT})",
        "CREATE TABLE collected_files (job_id BIGINT NOT NULL, host_id VARCHAR(36) NOT NULL, path "
        "VARCHAR(1024) NOT NULL, size BIGINT NOT NULL, sha256 VARCHAR(64) NOT NULL, stored_at BIGINT NOT "
        "NULL, "
        "PRIMARY KEY (job_id, host_id, path))"}},
      // "size" is reserved in Oracle: the column takes a name every database accepts.
      {6, {"ALTER TABLE collected_files RENAME COLUMN size TO byte_size"}},
      // Active/standby: the lease that names the active manager (its token fences writes) and
      // the takeovers for `distribctl cluster status`.
      {7,
       {"CREATE TABLE cluster_lease (name VARCHAR(64) PRIMARY KEY, holder VARCHAR(128) NOT NULL, token "
        "BIGINT "
        "NOT NULL, expires_at BIGINT NOT NULL, since BIGINT NOT NULL)",
        "CREATE TABLE cluster_takeovers (id ${PK}, name VARCHAR(64) NOT NULL, holder VARCHAR(128) NOT NULL, "
        "token BIGINT NOT NULL, at_ms BIGINT NOT NULL, previous VARCHAR(128), gap_ms BIGINT NOT NULL)"}},
      // Events: the durable outbox, written with the change that caused them, and how far each
      // sink has taken it.
      {8,
       {"CREATE TABLE events (id ${PK}, type VARCHAR(64) NOT NULL, severity VARCHAR(16) NOT NULL, at_ms "
        "BIGINT "
        "NOT NULL, job_id BIGINT NOT NULL, host_id VARCHAR(36) DEFAULT '' NOT NULL, subject VARCHAR(255) "
        "DEFAULT '' NOT NULL, "
        "message ${TEXT})",
        "CREATE TABLE event_cursors (sink VARCHAR(64) PRIMARY KEY, last_id BIGINT NOT NULL)",
        // The audit trail of administrative actions.
        "CREATE TABLE audit_log (id ${PK}, at_ms BIGINT NOT NULL, actor VARCHAR(128) DEFAULT '' NOT NULL, "
        "remote "
        "VARCHAR(64) DEFAULT '' NOT NULL, action VARCHAR(255) NOT NULL, target VARCHAR(255) DEFAULT '' NOT "
        "NULL, "
        "status INTEGER NOT NULL, result ${TEXT})",
        // Hosts that went silent (reported once as host.silent, then host.returned).
        "ALTER TABLE hosts ADD silent INTEGER DEFAULT 0 NOT NULL",
        // Whether a job still has an open entry, asked at each final report (job.completed).
        "CREATE INDEX job_entries_job_state ON job_entries (job_id, state)"}},
      // Enrolment with approval: each host's certificate request and the decision on it, the
      // serials of revoked certificates (kept when the host enrols again), and the tokens that
      // accept enrolments without an administrator (only their secret's hash is stored).
      {9,
       {"CREATE TABLE enrolments (host_id VARCHAR(36) PRIMARY KEY, name VARCHAR(255) NOT NULL, role "
        "VARCHAR(16) NOT NULL, address VARCHAR(255), via VARCHAR(36), fingerprint VARCHAR(80) NOT NULL, "
        "request_pem ${TEXT} NOT NULL, state VARCHAR(16) NOT NULL, certificate_pem ${TEXT}, serial BIGINT "
        "NOT NULL, not_after BIGINT NOT NULL, requested_at BIGINT NOT NULL, decided_at BIGINT NOT NULL, "
        "decided_by VARCHAR(128), token_id VARCHAR(64))",
        "CREATE INDEX enrolments_state ON enrolments (state, requested_at)",
        "CREATE TABLE revoked_certificates (serial BIGINT PRIMARY KEY, host_id VARCHAR(36) NOT NULL, "
        "not_after BIGINT NOT NULL, revoked_at BIGINT NOT NULL, revoked_by VARCHAR(128))",
        "CREATE TABLE enrol_tokens (id VARCHAR(64) PRIMARY KEY, secret_hash VARCHAR(64) NOT NULL, created_at "
        "BIGINT NOT NULL, expires_at BIGINT NOT NULL, uses_left INTEGER NOT NULL, group_name VARCHAR(64), "
        "created_by VARCHAR(128), revoked INTEGER NOT NULL)",
        "CREATE UNIQUE INDEX enrol_tokens_secret ON enrol_tokens (secret_hash)"}},
      // Signed orders: at a relay, the order the top manager signed for each entry, forwarded
      // untouched to the agent (security/orders.h).
      {10, {"ALTER TABLE job_entries ADD signed_order ${TEXT}"}},
      // Hosts found by the keys they answer to through indexes (a registration checks its name
      // and addresses for conflicts; a scan of every host made it slower as hosts accumulated):
      // the name lower-cased, and one row per address. Filled from the hosts already stored by
      // rebuild_host_keys (soci/hosts.cpp), which this version runs once.
      {11,
       {"ALTER TABLE hosts ADD name_key VARCHAR(255) DEFAULT '' NOT NULL",
        "CREATE INDEX hosts_name_key ON hosts (name_key)",
        "CREATE TABLE host_addresses (address VARCHAR(64) NOT NULL, host_id VARCHAR(36) NOT NULL, PRIMARY "
        "KEY "
        "(address, host_id))",
        "CREATE INDEX host_addresses_host ON host_addresses (host_id)"}},
      // Inventory items interned (soci/item_catalogue.h): each distinct (key, value) pair once
      // in the catalogue, a host's stable items as the sorted ids of its pairs in its one
      // inventory_hosts row, its volatile values beside them. inventory_items is emptied by
      // intern_inventory, which this version runs once (and after importing an older export).
      {12,
       {"CREATE TABLE inventory_catalogue (id BIGINT PRIMARY KEY, pair_hash BIGINT NOT NULL, item_key "
        "VARCHAR(255) NOT NULL, item_value ${TEXT})",
        "CREATE INDEX inventory_catalogue_hash ON inventory_catalogue (pair_hash)",
        "CREATE INDEX inventory_catalogue_key ON inventory_catalogue (item_key)",
        "ALTER TABLE inventory_hosts ADD system_items ${TEXT}",
        "ALTER TABLE inventory_hosts ADD software_items ${TEXT}",
        "ALTER TABLE inventory_hosts ADD volatile_items ${TEXT}"}},
  };
  return m;
}

std::vector<std::string> render(const std::string& statement, const Dialect& d) {
  std::vector<std::string> out;
  if (statement.rfind("DROP INDEX ", 0) == 0) {
    // Shared form: DROP INDEX name ON table. Only SQL Server names the table.
    if (d.name == "sqlserver") return {statement};
    return {statement.substr(0, statement.find(" ON "))};
  }
  if (statement.rfind("ALTER TABLE ", 0) == 0 && statement.find(" RENAME COLUMN ") != std::string::npos) {
    const auto w = words(statement);  // ALTER TABLE t RENAME COLUMN a TO b
    if (w.size() == 8 && d.name == "sqlserver")
      return {"EXEC sp_rename '" + w[2] + "." + w[5] + "', '" + w[7] + "', 'COLUMN'"};
  }
  std::string s = statement;
  if (statement.rfind("CREATE TABLE ", 0) == 0 && s.find("${PK}") != std::string::npos) {
    const auto seq = d.sequence_name(table_of(statement, "CREATE TABLE "));
    if (!d.create_sequence.empty()) out.push_back(replace_all(d.create_sequence, "${SEQ}", seq));
    s = replace_all(s, "${PK}", replace_all(d.identity_pk, "${SEQ}", seq));
  }
  // Oracle stores '' as NULL: a NOT NULL column defaulting to '' could never hold it.
  if (d.name == "oracle") s = replace_all(s, "DEFAULT '' NOT NULL", "DEFAULT ''");
  s = map_words(s, d);
  out.push_back(replace_all(s, "${TEXT}", d.text_type));
  return out;
}

const std::vector<TableDef>& schema_tables() {
  static const std::vector<TableDef> tables = [] {
    std::vector<TableDef> out;
    auto find = [&](const std::string& name) -> TableDef& {
      for (auto& t : out)
        if (t.name == name) return t;
      throw std::logic_error("migration refers to unknown table " + name);
    };
    auto is_integer = [](const std::string& type) {
      return type == "BIGINT" || type == "INTEGER" || type == "${PK}";
    };
    for (const auto& m : migrations()) {
      for (const auto& st : m.statements) {
        if (st.rfind("CREATE TABLE ", 0) == 0) {
          TableDef t;
          t.name = table_of(st, "CREATE TABLE ");
          const auto body = st.substr(st.find('(') + 1, st.rfind(')') - st.find('(') - 1);
          std::vector<std::string> parts;
          int depth = 0;
          std::string cur;
          for (char c : body) {
            if (c == '(') ++depth;
            if (c == ')') --depth;
            if (c == ',' && depth == 0) {
              parts.push_back(trim(cur));
              cur.clear();
            } else {
              cur += c;
            }
          }
          parts.push_back(trim(cur));
          for (const auto& p : parts) {
            if (p.rfind("PRIMARY KEY", 0) == 0) {
              for (const auto& w : words(p.substr(11))) t.primary_key.push_back(w);
              continue;
            }
            const auto name = p.substr(0, p.find(' '));
            auto type = trim(p.substr(name.size()));
            type = type.substr(0, type.find_first_of(" ("));
            t.columns.push_back({name, is_integer(type)});
            if (type == "${PK}") t.identity = name;
            if (type == "${PK}" || p.find("PRIMARY KEY") != std::string::npos) t.primary_key = {name};
          }
          out.push_back(std::move(t));
        } else if (st.rfind("ALTER TABLE ", 0) == 0) {
          const auto w = words(st);
          auto& t = find(w.at(2));
          if (w.at(3) == "ADD") {
            t.columns.push_back({w.at(4), is_integer(w.at(5))});
          } else if (w.at(3) == "RENAME") {
            for (auto& c : t.columns)
              if (c.name == w.at(5)) c.name = w.at(7);
          }
        } else if (st.rfind("DROP TABLE ", 0) == 0) {
          const auto name = table_of(st, "DROP TABLE ");
          out.erase(std::remove_if(out.begin(), out.end(), [&](const TableDef& t) { return t.name == name; }),
                    out.end());
        }
      }
    }
    return out;
  }();
  return tables;
}

std::vector<std::string> schema_identifiers() {
  std::vector<std::string> out;
  for (const auto& m : migrations())
    for (const auto& st : m.statements)
      for (const std::string prefix : {"CREATE INDEX ", "CREATE UNIQUE INDEX "})
        if (st.rfind(prefix, 0) == 0) out.push_back(table_of(st, prefix));
  for (const auto& t : schema_tables()) {
    out.push_back(t.name);
    if (!t.identity.empty()) out.push_back(t.name + "_seq");
    for (const auto& c : t.columns) out.push_back(c.name);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace distrib::store
