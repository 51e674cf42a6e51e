#pragma once
// distribctl --json helpers for integration tests (they use Catch2 assertions).
#include "harness.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

namespace distrib::test {

/// Runs distribctl --json against `m`, requires success and returns the parsed answer.
inline boost::json::object ctl_json(const ManagerProc& m, std::vector<std::string> args) {
  auto r = m.ctl(std::move(args), true);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return boost::json::parse(r.out).as_object();
}

/// Host id → host object of `hosts list --json` at `m`.
inline std::map<std::string, boost::json::object> hosts_of(const ManagerProc& m) {
  std::map<std::string, boost::json::object> out;
  const auto answer = ctl_json(m, {"hosts", "list"});
  for (const auto& v : answer.at("hosts").as_array())
    out[std::string(v.at("host_id").as_string())] = v.as_object();
  return out;
}

inline std::string id_by_name(const ManagerProc& m, const std::string& name) {
  for (const auto& [id, h] : hosts_of(m))
    if (h.at("name").as_string() == name) return id;
  return {};
}

/// `distribctl job create ARGS...`; returns the new job's id.
inline std::string create_job(const ManagerProc& m, std::vector<std::string> args) {
  std::vector<std::string> a = {"job", "create"};
  a.insert(a.end(), args.begin(), args.end());
  auto o = ctl_json(m, a);
  return std::to_string(o.at("job").at("id").as_int64());
}

inline bool all_succeeded(const std::string& show_json) {
  auto o = boost::json::parse(show_json).as_object();
  const auto& p = o.at("progress").as_object();
  return p.at("total").as_int64() > 0 && p.at("succeeded").as_int64() == p.at("total").as_int64();
}

/// Packages a one-file directory (VERSION holding `version`) as NAME VERSION at `m`.
inline void make_package(const ManagerProc& m, const TempDir& tmp, const std::string& name,
                         const std::string& version) {
  const auto dir = tmp / ("src-" + name + "-" + version);
  stdfs::create_directories(dir);
  write_file(dir / "VERSION", version + "\n");
  auto r = m.ctl({"package", "create", dir.string(), "--name", name, "--version", version});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

}  // namespace distrib::test
