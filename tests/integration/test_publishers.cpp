// Signed packages end to end: publisher keys made with distribctl, trusted at the manager,
// carried to agents in the signed trusted set; unsigned, untrusted and revoked packages are
// refused at upload and by the agents, before anything runs.
#include "ctl_json.h"
#include "harness.h"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

using namespace distrib::test;
namespace bj = boost::json;

namespace {

std::string entry_of(const std::string& show_json, const char* field) {
  const auto shown = bj::parse(show_json);
  const auto& e = shown.as_object().at("entries").as_array().at(0).as_object();
  const auto* v = e.if_contains(field);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

stdfs::path package_dir(const TempDir& tmp, const std::string& name, const stdfs::path& ran) {
  const auto dir = tmp / ("src-" + name);
  write_file(dir / "install.sh", "#!/bin/sh\necho " + name + " >> " + ran.string() + "\n", true);
  return dir;
}

}  // namespace

TEST_CASE("only packages signed by a trusted, unrevoked publisher run", "[hardening][publishers]") {
  TempDir tmp;
  const auto ran = tmp / "ran.log";
  ManagerProc m(tmp / "manager", {"--poll-timeout", "3"});
  AgentProc open(tmp / "open", m.url(), "open", "127.0.0.51");
  AgentProc strict(tmp / "strict", m.url(), "strict", "127.0.0.52", {"--require-signed-packages"});
  REQUIRE(wait_until([&] { return host_count(m) == 2; }, 30s));
  auto create = [&](const std::string& name, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"package",
                                     "create",
                                     package_dir(tmp, name, ran).string(),
                                     "--name",
                                     name,
                                     "--version",
                                     "1",
                                     "--install-command",
                                     "./install.sh"};
    args.insert(args.end(), extra.begin(), extra.end());
    return m.ctl(args);
  };
  auto install = [&](const std::string& name, const std::string& host) {
    const auto shown = wait_job(m, create_job(m, {"install", name, "1", host}), 60s);
    INFO(shown << "\nagent log:\n" << (host == "open" ? open.log() : strict.log()));
    return shown;
  };

  // Before any key is trusted: unsigned packages run, except where the agent requires signatures.
  REQUIRE(create("before").exit_code == 0);
  REQUIRE(create("late").exit_code == 0);
  CHECK(all_succeeded(install("before", "open")));
  const auto refused = install("before", "strict");
  CHECK(entry_of(refused, "state") == "failed");
  CHECK(entry_of(refused, "message").find("is not signed") != std::string::npos);

  // A publisher key made here; the manager sees only its public half.
  const auto keys = tmp / "keys";
  const auto made = m.ctl({"keys", "create", "release", "--output", keys.string()}, true);
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  CHECK(stdfs::status(keys / "release.key").permissions() ==
        (stdfs::perms::owner_read | stdfs::perms::owner_write));
  const auto key_id = json_at(made.out, "/id");
  CHECK(m.ctl({"keys", "create", "release", "--output", keys.string()}).exit_code != 0);  // never overwritten

  SECTION("hostile or mistaken key uploads change nothing") {
    write_file(tmp / "junk.pub", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
    auto r = m.ctl({"keys", "trust", (tmp / "junk.pub").string()});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("not an Ed25519 public key") != std::string::npos);
    r = m.ctl({"keys", "trust", (keys / "release.pub").string(), "--name", "bad name"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("1 to 64 letters") != std::string::npos);
    r = m.ctl({"keys", "trust", (keys / "release.key").string()});  // the private half by mistake
    CHECK(r.exit_code == 1);
    CHECK(json_at(m.ctl({"keys", "list"}, true).out, "/version") == "0");
    CHECK(m.ctl({"keys", "revoke", "nobody"}).exit_code == 4);
  }

  SECTION("trusted: unsigned uploads are refused, signed packages run everywhere, revoked ones nowhere") {
    const auto trusted = m.ctl({"keys", "trust", (keys / "release.pub").string()}, true);
    INFO(trusted.err);
    REQUIRE(trusted.exit_code == 0);
    CHECK(json_at(trusted.out, "/id") == key_id);
    CHECK(m.ctl({"keys", "trust", (keys / "release.pub").string(), "--name", "again"})
              .err.find("trusted already") != std::string::npos);
    const auto list = m.ctl({"keys", "list"}, true);
    CHECK(json_at(list.out, "/version") == "1");
    CHECK(json_at(list.out, "/keys/0/id") == key_id);

    auto r = create("unsigned");
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("is not signed") != std::string::npos);
    CHECK(m.ctl({"package", "show", "unsigned", "1"}).exit_code == 4);  // nothing registered

    auto other = m.ctl({"keys", "create", "other", "--output", keys.string()});
    REQUIRE(other.exit_code == 0);
    r = create("foreign", {"--sign", (keys / "other.key").string()});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("does not trust") != std::string::npos);

    r = create("signed", {"--sign", (keys / "release.key").string()});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("signed by publisher key " + key_id) != std::string::npos);
    CHECK(m.ctl({"package", "show", "signed", "1"}).out.find(key_id) != std::string::npos);
    CHECK(all_succeeded(install("signed", "open")));
    CHECK(all_succeeded(install("signed", "strict")));
    // The agents hold the signed set the manager announced.
    CHECK(stdfs::exists(open.state_dir() / "publishers.json"));

    // A package registered unsigned before the key was trusted no longer runs.
    const auto late = install("late", "open");
    CHECK(entry_of(late, "state") == "failed");
    CHECK(entry_of(late, "message").find("is not signed") != std::string::npos);

    // Revoked: what the key signed stops running at once, on every agent.
    REQUIRE(create("signed2", {"--sign", (keys / "release.key").string()}).exit_code == 0);
    const auto revoked = m.ctl({"keys", "revoke", "release"}, true);
    REQUIRE(revoked.exit_code == 0);
    CHECK(json_at(revoked.out, "/revoked") == key_id);
    const auto gone = install("signed2", "open");
    CHECK(entry_of(gone, "state") == "failed");
    CHECK(entry_of(gone, "message").find("revoked") != std::string::npos);
    // A revoked key is never trusted again.
    CHECK(m.ctl({"keys", "trust", (keys / "release.pub").string()}).err.find("never trusted again") !=
          std::string::npos);
    CHECK(read_file(ran).find("signed2") == std::string::npos);
    CHECK(read_file(ran).find("late") == std::string::npos);
    CHECK(read_file(ran).find("unsigned") == std::string::npos);
  }
}
