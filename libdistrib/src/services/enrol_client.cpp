// Enrolment of a host with its parents (enrol_client.h).
#include "services/enrol_client.h"

#include <distrib/error.h>

#include "model/json_codec.h"
#include "security/enrolment.h"
#include "services/parent_link.h"
#include "util/fs.h"

#include <spdlog/spdlog.h>

namespace distrib {

namespace bj = boost::json;

namespace {
std::optional<security::EnrolBundle> bundle_of(const EnrolSettings& s) {
  if (s.bundle.empty()) return std::nullopt;
  try {
    return security::read_bundle(fs::read_file(s.bundle));
  } catch (const Error& e) {
    throw Error(ErrorKind::invalid_argument, "enrolment bundle " + s.bundle.string() + ": " + e.what());
  }
}
}  // namespace

std::string enrol_token(const EnrolSettings& s) {
  if (!s.token.empty()) return s.token;
  if (auto b = bundle_of(s)) return b->token;
  return {};
}

std::vector<std::string> establish_trust(security::HostIdentity& id, const EnrolSettings& s,
                                         std::vector<std::string> parents, const std::string& bind_address) {
  const auto bundle = bundle_of(s);
  if (parents.empty() && bundle) parents = bundle->servers;
  if (id.trusts()) return parents;
  if (bundle) {
    if (!s.ca_fingerprint.empty()) security::check_ca_fingerprint(bundle->ca_certificate, s.ca_fingerprint);
    id.trust(bundle->ca_certificate);
  } else if (!s.ca_file.empty()) {
    id.trust(fs::read_file(s.ca_file));
  } else if (!s.ca_fingerprint.empty() && !parents.empty()) {
    // The parent shows its CA over a connection not yet verified; the fingerprint given out of
    // band decides whether it is trusted.
    HttpClientSettings hs;
    hs.base_url = parents.front();
    hs.bind_address = bind_address;
    hs.verify_server = false;
    hs.connect_timeout_seconds = 5;
    hs.timeout_seconds = 10;
    HttpClient probe(hs);
    const auto o = call_parent(probe, "GET", "/v1/ca", nullptr);
    const auto ca = json::get_string(o, "ca_certificate");
    security::check_ca_fingerprint(ca, s.ca_fingerprint);
    id.trust(ca);
  } else {
    throw Error(ErrorKind::invalid_argument,
                "an https parent needs to know which CA to trust: give --enrol-bundle (distribctl "
                "enrol-bundle makes one), --ca-file or --ca-fingerprint");
  }
  spdlog::info("trusting the CA in {}", id.ca_file().string());
  return parents;
}

namespace {
bj::object enrol_body(const security::HostIdentity& id, const EnrolSettings& s) {
  bj::object body{{"request", id.request(s.names, s.addresses)}, {"name", s.name}};
  if (const auto token = enrol_token(s); !token.empty()) body["token"] = token;
  return body;
}
}  // namespace

bool enrol_once(security::HostIdentity& id, const EnrolSettings& s, HttpClient& client) {
  const auto res = client.request("POST", "/v1/agent/enrol", bj::serialize(enrol_body(id, s)));
  if (res.status == 202) {
    const auto o = json::parse_object(res.body);
    spdlog::info("enrolment of {} {} is waiting for approval (key {}){}: distribctl hosts accept {}",
                 id.identity().role, id.identity().host_id, id.fingerprint(),
                 o.contains("message") ? " — " + json::get_string(o, "message") : std::string(),
                 id.identity().host_id);
    return false;
  }
  require_ok(res, "enrolment with " + client.settings().base_url);
  const auto o = json::parse_object(res.body);
  id.store(json::get_string(o, "certificate"), json::get_string(o, "ca_certificate", false));
  spdlog::info("enrolled as {} {}; certificate valid until {}", id.identity().role, id.identity().host_id,
               id.not_after());
  return true;
}

void renew_certificate(security::HostIdentity& id, const EnrolSettings& s, HttpClient& client) {
  const auto o = call_parent(client, "POST", "/v1/agent/renew",
                             bj::object{{"request", id.request(s.names, s.addresses)}});
  id.store(json::get_string(o, "certificate"), json::get_string(o, "ca_certificate", false));
  spdlog::info("certificate renewed; valid until {}", id.not_after());
}

}  // namespace distrib
