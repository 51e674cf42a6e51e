// Signed orders (orders.h).
#include "security/orders.h"

#include <distrib/content/digest.h>
#include <distrib/error.h>

#include "model/json_codec.h"
#include "security/pki.h"

#include <boost/json.hpp>

#include <charconv>
#include <sstream>

namespace distrib::security {

namespace bj = boost::json;

namespace {
constexpr std::string_view kHeader = "distrib-order/1";
constexpr const char* kKeys[] = {"host",    "entry",    "attempt", "type",   "package", "version",
                                 "payload", "manifest", "collect", "issued", "expires"};

std::string or_dash(const std::string& v) {
  return v.empty() ? "-" : v;
}

std::int64_t number(const std::string& key, const std::string& v) {
  std::int64_t out = 0;
  const auto* end = v.data() + v.size();
  const auto [p, ec] = std::from_chars(v.data(), end, out);
  if (ec != std::errc() || p != end || v.empty())
    throw Error(ErrorKind::invalid_argument, "order field " + key + " is not a number");
  return out;
}

[[noreturn]] void refuse(const std::string& why) {
  throw Error(ErrorKind::integrity, "order refused: " + why);
}
}  // namespace

std::string manifest_digest(const Manifest& m) {
  return sha256_hex(manifest_to_json(m));
}

std::string collect_digest(const CollectSpec& c) {
  return sha256_hex(bj::serialize(json::to_json(c)));
}

std::string order_statement(const Order& o) {
  std::string out(kHeader);
  const std::string values[] = {
      o.host_id,          std::to_string(o.entry),  std::to_string(o.attempt), o.type,
      or_dash(o.package), or_dash(o.version),       or_dash(o.payload),        or_dash(o.manifest),
      or_dash(o.collect), std::to_string(o.issued), std::to_string(o.expires)};
  for (std::size_t i = 0; i < std::size(kKeys); ++i) {
    if (values[i].find_first_of(" \n") != std::string::npos)
      throw Error(ErrorKind::invalid_argument, std::string("order field ") + kKeys[i] + " holds a space");
    out += '\n';
    out += kKeys[i];
    out += ' ';
    out += values[i];
  }
  return out + '\n';
}

Order parse_order_statement(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kHeader)
    throw Error(ErrorKind::invalid_argument, "not a distrib order (no distrib-order/1 line)");
  std::string values[std::size(kKeys)];
  for (std::size_t i = 0; i < std::size(kKeys); ++i) {
    if (!std::getline(in, line))
      throw Error(ErrorKind::invalid_argument, std::string("order has no ") + kKeys[i] + " line");
    const auto space = line.find(' ');
    if (space == std::string::npos || line.substr(0, space) != kKeys[i])
      throw Error(ErrorKind::invalid_argument,
                  std::string("order line ") + std::to_string(i + 2) + " is not \"" + kKeys[i] + " VALUE\"");
    values[i] = line.substr(space + 1);
    if (values[i] == "-") values[i].clear();
  }
  if (std::getline(in, line)) throw Error(ErrorKind::invalid_argument, "order has extra lines");
  Order o;
  o.host_id = values[0];
  o.entry = number("entry", values[1]);
  o.attempt = static_cast<std::int32_t>(number("attempt", values[2]));
  o.type = values[3];
  o.package = values[4];
  o.version = values[5];
  o.payload = values[6];
  o.manifest = values[7];
  o.collect = values[8];
  o.issued = number("issued", values[9]);
  o.expires = number("expires", values[10]);
  return o;
}

std::string sign_statement(const std::string& statement, const pki::SigningKey& key,
                           const std::string& cert_pem) {
  return bj::serialize(
      bj::object{{"statement", statement}, {"signature", key.sign(statement)}, {"signer", cert_pem}});
}

OpenedStatement open_statement(const std::string& signed_text, const std::string& ca_pem, std::int64_t now,
                               std::size_t max_size, const std::string& what) {
  const auto no = [&](const std::string& why) { throw Error(ErrorKind::integrity, what + ": " + why); };
  if (signed_text.size() > max_size) no("it is too large");
  OpenedStatement out;
  std::string signature, signer;
  try {
    const auto o = json::parse_object(signed_text);
    out.statement = json::get_string(o, "statement");
    signature = json::get_string(o, "signature");
    signer = json::get_string(o, "signer");
  } catch (const Error& e) {
    no(std::string("malformed: ") + e.what());
  }
  if (const auto why = pki::verify(ca_pem, signer, now); !why.empty())
    no("its signer certificate does not chain to this host's CA (" + why + ")");
  out.signer = pki::inspect_certificate(signer);
  if (!pki::verify_signature(signer, out.statement, signature)) no("its signature does not verify");
  return out;
}

std::string sign_order(const Order& o, const pki::SigningKey& signer_key,
                       const std::string& signer_cert_pem) {
  return sign_statement(order_statement(o), signer_key, signer_cert_pem);
}

Order verify_order(const std::string& signed_order, const std::string& ca_pem, std::int64_t now,
                   const std::string& trusted_relay) {
  if (signed_order.empty()) refuse("the work item carries no signed order (a relay may have made it up)");
  auto [statement, info] = open_statement(signed_order, ca_pem, now, kMaxSignedOrder, "order refused");
  const bool by_relay = !trusted_relay.empty() && info.identities.size() == 1 &&
                        info.identities.front().role == "relay" &&
                        info.identities.front().host_id == trusted_relay;
  if (!pki::is_order_signer(info) && !by_relay)
    refuse("it is signed by a certificate that is not the manager's order signer" +
           std::string(info.identities.size() == 1 && info.identities.front().role == "relay"
                           ? " (relay " + info.identities.front().host_id +
                                 "'s own job: this agent accepts those only with --accept-relay-orders, "
                                 "from its parent)"
                           : ""));
  Order o;
  try {
    o = parse_order_statement(statement);
  } catch (const Error& e) {
    refuse(e.what());
  }
  if (o.expires < now)
    refuse("it expired (signed " + std::to_string(now - o.issued) + " s ago); retry the job");
  return o;
}

}  // namespace distrib::security
