// SociData: the schema version, counts and call figures, and whole-database export, import and
// summaries over the schema's tables.
#include "store/soci/item_catalogue.h"
#include "store/soci/soci_store.h"

#include <cctype>

namespace distrib::store {

auto SociData::schema_version() -> int {
  return core_.guarded([&](soci::session& sql) { return core_.read_version(sql); });
}

auto SociData::counts() -> Counts {
  return core_.guarded([&](soci::session& sql) {
    Counts c;
    ll n = 0;
    sql << "SELECT COUNT(*) FROM hosts", soci::into(n);
    c.hosts = n;
    sql << "SELECT COUNT(*) FROM jobs", soci::into(n);
    c.jobs = n;
    sql << std::string("SELECT COUNT(DISTINCT job_id) FROM job_entries WHERE state IN ") + kOpen,
        soci::into(n);
    c.open_jobs = n;
    soci::rowset<soci::row> rs = (sql.prepare << "SELECT state, COUNT(*) FROM job_entries GROUP BY state");
    for (const auto& r : rs) c.entries_by_state[get_str(r, 0)] = get_i64(r, 1);
    return c;
  });
}

auto SociData::stats() const -> Stats {
  return core_.stats();
}

auto SociData::columns_of(const TableDef& t) -> std::vector<Column> {
  std::vector<Column> out;
  for (const auto& c : t.columns) out.push_back({c.name, c.integer});
  return out;
}

auto SociData::column_list(const std::vector<Column>& cols, const std::string& prefix) -> std::string {
  std::string out;
  for (const auto& c : cols) out += (out.empty() ? "" : ", ") + prefix + c.name;
  return out;
}

auto SociData::export_data(std::ostream& out, const DataProgress& progress) -> DataSummary {
  return core_.guarded(
      [&](soci::session& sql) {
        soci::transaction tr(sql);
        if (!core_.dialect().snapshot.empty()) sql << core_.dialect().snapshot;
        DataSummary summary;
        summary.schema_version = core_.read_version(sql);
        out << boost::json::serialize(boost::json::object{{"format", "distrib-database"},
                                                          {"format_version", 1},
                                                          {"schema_version", summary.schema_version},
                                                          {"source", core_.dialect().name},
                                                          {"exported_at", fs::now_unix()}})
            << "\n";
        for (const auto& t : schema_tables()) {
          const auto cols = columns_of(t);
          boost::json::array names;
          for (const auto& c : cols) names.emplace_back(c.name);
          out << boost::json::serialize(boost::json::object{{"table", t.name}, {"columns", names}}) << "\n";
          std::int64_t n = 0;
          auto ts = scan_table(sql, t.name, cols, [&](const std::string& line) {
            out << line << "\n";
            if (++n % 10000 == 0 && progress) progress(t.name, n);
          });
          if (progress) progress(t.name, ts.rows);
          out << boost::json::serialize(
                     boost::json::object{{"end", t.name}, {"rows", ts.rows}, {"checksum", ts.checksum}})
              << "\n";
          summary.tables.push_back(std::move(ts));
        }
        out << boost::json::serialize(
                   boost::json::object{{"end_of_export", true}, {"tables", summary.tables.size()}})
            << "\n";
        out.flush();
        if (!out) throw Error(ErrorKind::internal, "writing the export failed (disk full?)");
        tr.commit();
        return summary;
      },
      0);
}

auto SociData::summarize() -> DataSummary {
  return core_.guarded([&](soci::session& sql) {
    DataSummary summary;
    summary.schema_version = core_.read_version(sql);
    for (const auto& t : schema_tables())
      summary.tables.push_back(scan_table(sql, t.name, columns_of(t), [](const std::string&) {}));
    return summary;
  });
}

void SociData::insert_batch(soci::session& sql, const std::string& table, const std::vector<Column>& cols,
                            Batch& b) {
  if (b.size == 0) return;
  std::string marks;
  for (const auto& c : cols) marks += (marks.empty() ? ":" : ", :") + c.name;
  soci::statement st(sql);
  for (std::size_t i = 0; i < cols.size(); ++i) {
    if (cols[i].integer)
      st.exchange(soci::use(b.ints[i], b.inds[i]));
    else
      st.exchange(soci::use(b.texts[i], b.inds[i]));
  }
  st.alloc();
  st.prepare("INSERT INTO " + table + " (" + column_list(cols) + ") VALUES (" + marks + ")");
  st.define_and_bind();
  st.execute(true);
  b.clear();
}

auto SociData::import_data(std::istream& in, const DataProgress& progress) -> DataSummary {
  const auto lock = core_.hold_writes();
  return core_.guarded(
      [&](soci::session& sql) {
        soci::transaction tr(sql);
        for (const auto& t : schema_tables()) {
          ll n = 0;
          sql << "SELECT COUNT(*) FROM " + t.name, soci::into(n);
          if (n > 0)
            throw Error(ErrorKind::conflict, "the target database is not empty (table " + t.name + " holds " +
                                                 std::to_string(n) +
                                                 " rows): import into a new database, created for it");
        }
        std::string line;
        std::size_t line_no = 0;
        auto next = [&]() -> boost::json::object {
          if (!std::getline(in, line)) return {};
          ++line_no;
          boost::system::error_code ec;
          auto v = boost::json::parse(line, ec);
          if (line_no == 1 && (ec || !v.is_object()))
            throw Error(ErrorKind::invalid_argument,
                        "not a distrib database export (its first line is not the export header that "
                        "distribd --export-db writes)");
          if (ec || !(v.is_object() || v.is_array()))
            throw Error(ErrorKind::invalid_argument, "line " + std::to_string(line_no) +
                                                         " of the export is not a JSON "
                                                         "object or row (" +
                                                         (ec ? ec.message() : "wrong type") + ")");
          if (v.is_array()) return boost::json::object{{"row", std::move(v)}};
          return std::move(v.as_object());
        };
        auto bad = [&](const std::string& what) {
          return Error(ErrorKind::invalid_argument,
                       "line " + std::to_string(line_no) + " of the export: " + what);
        };
        auto header = next();
        if (header.empty() || !header.contains("format") || header.at("format") != "distrib-database")
          throw Error(ErrorKind::invalid_argument,
                      "not a distrib database export (distribd --export-db writes one)");
        if (!header.contains("schema_version") || !header.at("schema_version").is_int64())
          throw bad("the header has no schema_version");
        DataSummary declared;
        declared.schema_version = static_cast<int>(header.at("schema_version").as_int64());
        if (declared.schema_version > latest_schema_version())
          throw Error(ErrorKind::invalid_argument,
                      "the export is of database schema " + std::to_string(declared.schema_version) +
                          ", newer than this distribd understands (" +
                          std::to_string(latest_schema_version()) + "); import it with a newer distribd");
        bool complete = false;
        std::vector<std::vector<Column>> imported_cols;
        for (auto obj = next(); !obj.empty(); obj = next()) {
          if (obj.contains("end_of_export")) {
            complete = true;
            break;
          }
          if (!obj.contains("table") || !obj.at("table").is_string() || !obj.contains("columns") ||
              !obj.at("columns").is_array())
            throw bad("expected a table header {\"table\":..., \"columns\":[...]}");
          const std::string name(obj.at("table").as_string());
          const auto& tables = schema_tables();
          auto def =
              std::find_if(tables.begin(), tables.end(), [&](const TableDef& t) { return t.name == name; });
          if (def == tables.end()) throw bad("unknown table \"" + name + "\"");
          std::vector<Column> cols;
          const auto names = obj.at("columns").as_array();
          for (const auto& n : names) {
            const std::string cname = n.is_string() ? std::string(n.as_string()) : std::string();
            auto c = std::find_if(def->columns.begin(), def->columns.end(),
                                  [&](const ColumnDef& d) { return d.name == cname; });
            if (c == def->columns.end()) throw bad("table " + name + " has no column \"" + cname + "\"");
            cols.push_back({c->name, c->integer});
          }
          const bool identity = !def->identity.empty() && !core_.dialect().explicit_ids_on.empty();
          if (identity) sql << replace_table(core_.dialect().explicit_ids_on, name);
          Batch batch(cols.size());
          Checksum sum;
          std::int64_t rows = 0;
          boost::json::object end;
          for (auto r = next();; r = next()) {
            if (r.empty())
              throw Error(ErrorKind::invalid_argument,
                          "the export ends inside table " + name + ": the file is truncated");
            if (!r.contains("row")) {
              end = std::move(r);
              break;
            }
            const auto& row = r.at("row").as_array();
            if (row.size() != cols.size())
              throw bad("a row of " + name + " has " + std::to_string(row.size()) +
                        " values, the table header " + std::to_string(cols.size()));
            for (std::size_t i = 0; i < cols.size(); ++i) {
              const auto& v = row[i];
              const bool null = v.is_null();
              if (!null && (cols[i].integer ? !v.is_int64() : !v.is_string()))
                throw bad("column " + cols[i].name + " of " + name + " holds " +
                          (cols[i].integer ? "a non-integer" : "a non-string") + " value");
              batch.inds[i].push_back(null ? soci::i_null : soci::i_ok);
              if (cols[i].integer)
                batch.ints[i].push_back(null ? 0 : v.as_int64());
              else
                batch.texts[i].push_back(null ? std::string() : std::string(v.as_string()));
            }
            ++batch.size;
            sum.add(boost::json::serialize(row));
            if (++rows % 1000 == 0) {
              insert_batch(sql, name, cols, batch);
              if (progress && rows % 10000 == 0) progress(name, rows);
            }
          }
          insert_batch(sql, name, cols, batch);
          if (identity) sql << replace_table(core_.dialect().explicit_ids_off, name);
          if (!def->identity.empty())
            for (const auto& st : core_.dialect().reset_identity(name, def->identity)) sql << st;
          if (!end.contains("end") || end.at("end") != name.c_str() || !end.contains("rows") ||
              !end.at("rows").is_int64() || !end.contains("checksum") || !end.at("checksum").is_string())
            throw bad("expected the trailer of table " + name);
          TableSummary ts{name, end.at("rows").as_int64(), std::string(end.at("checksum").as_string())};
          if (ts.rows != rows || ts.checksum != sum.hex())
            throw Error(ErrorKind::invalid_argument,
                        "the export is corrupted: table " + name + " declares " + std::to_string(ts.rows) +
                            " rows with checksum " + ts.checksum.substr(0, 16) + "… but holds " +
                            std::to_string(rows) + " with checksum " + sum.hex().substr(0, 16) + "…");
          if (progress) progress(name, rows);
          declared.tables.push_back(std::move(ts));
          imported_cols.push_back(std::move(cols));
        }
        if (!complete)
          throw Error(ErrorKind::invalid_argument, "the export ends early: the file is truncated");
        // Read back what was written, with the same columns: the database now holds exactly
        // what the export declared.
        for (std::size_t i = 0; i < declared.tables.size(); ++i) {
          const auto& want = declared.tables[i];
          const auto got = scan_table(sql, want.name, imported_cols[i], [](const std::string&) {});
          if (got.rows != want.rows || got.checksum != want.checksum)
            throw Error(ErrorKind::internal, "table " + want.name + " reads back " +
                                                 std::to_string(got.rows) + " rows (checksum " +
                                                 got.checksum.substr(0, 16) +
                                                 "…) after import, "
                                                 "not the " +
                                                 std::to_string(want.rows) + " written; nothing was kept");
        }
        // An export made before the host key columns existed carries no keys: derive them.
        if (declared.schema_version < kHostKeysVersion) rebuild_host_keys(sql);
        // ... nor interned inventory items: intern them (the catalogue's cache is empty, as the
        // database was).
        if (declared.schema_version < kInternedInventoryVersion) intern_inventory(sql);
        tr.commit();
        return declared;
      },
      0);
}

auto SociData::query_plans() -> std::vector<QueryPlan> {
  const auto& d = core_.dialect();
  if (d.explain.empty()) return {};
  return core_.guarded([&](soci::session& sql) {
    std::vector<QueryPlan> out;
    soci::transaction tr(sql);
    if (!d.explain_setup.empty()) sql << d.explain_setup;
    for (const auto& q : hot_queries()) {
      // A plan for literal values: a parameter of a statement cannot be explained everywhere.
      std::string text;
      for (std::size_t i = 0; i < q.sql.size(); ++i) {
        if (q.sql[i] == ':' && i + 1 < q.sql.size() &&
            std::isalpha(static_cast<unsigned char>(q.sql[i + 1]))) {
          while (i + 1 < q.sql.size() &&
                 (std::isalnum(static_cast<unsigned char>(q.sql[i + 1])) || q.sql[i + 1] == '_'))
            ++i;
          text += "'1'";
        } else {
          text += q.sql[i];
        }
      }
      QueryPlan p;
      p.name = q.name;
      soci::rowset<soci::row> rs = (sql.prepare << d.explain << text);
      for (const auto& r : rs) {
        // SQLite: id, parent, notused, detail; PostgreSQL: one line of text.
        const auto line = get_str(r, r.size() - 1);
        p.plan += (p.plan.empty() ? "" : "\n") + line;
        if (line.find(d.full_scan) != std::string::npos) p.full_scan = true;
      }
      out.push_back(std::move(p));
    }
    tr.rollback();
    return out;
  });
}

auto SociData::replace_table(std::string s, const std::string& table) -> std::string {
  for (auto pos = s.find("%T"); pos != std::string::npos; pos = s.find("%T", pos)) s.replace(pos, 2, table);
  return s;
}

}  // namespace distrib::store
