// Signed orders: what signing costs the top manager per work item and what checking costs an
// agent, against the baseline of building and serialising the same work item unsigned (what the
// manager did before orders were signed). Prints figures; asserts nothing about speed.
//   bench_orders [ITEMS]
#include <distrib/content/digest.h>
#include <distrib/model/job.h>

#include "model/json_codec.h"
#include "security/orders.h"
#include "security/pki.h"

#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

using namespace distrib;
namespace bj = boost::json;

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

bj::object work_item(std::int64_t id) {
  return bj::object{
      {"entry_id", id},
      {"job_id", 7},
      {"attempt", 1},
      {"state", "waiting"},
      {"type", "install"},
      {"timing", "immediate"},
      {"split", nullptr},
      {"package",
       bj::object{{"name", "app"}, {"version", "1.2.0"}, {"payload_digest", std::string(64, 'a')}}}};
}
}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 5000;
  const auto ca = pki::create_authority("bench CA", 30);
  const auto signer_pem = pki::generate_key();
  const auto signer_cert = pki::issue_signer(ca, signer_pem, 30, 2);
  const pki::SigningKey signer_key(signer_pem);
  security::Order o;
  o.host_id = "9a0c5d0e-1111-4222-8333-444455556666";
  o.type = "install";
  o.package = "app";
  o.version = "1.2.0";
  o.payload = std::string(64, 'a');
  o.manifest = sha256_hex("manifest");
  o.issued = static_cast<std::int64_t>(std::time(nullptr));
  o.expires = o.issued + security::kOrderLifetime;

  // Baseline: the unsigned work item, built and serialised.
  std::size_t unsigned_bytes = 0;
  auto t = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) unsigned_bytes += bj::serialize(work_item(i)).size();
  const double base = seconds_since(t);

  std::vector<std::string> orders;
  orders.reserve(static_cast<std::size_t>(n));
  std::size_t signed_bytes = 0;
  t = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    o.entry = i + 1;
    auto item = work_item(i);
    item["signed_order"] = security::sign_order(o, signer_key, signer_cert);
    auto text = bj::serialize(item);
    signed_bytes += text.size();
    orders.push_back(std::string(item["signed_order"].as_string()));
  }
  const double sign = seconds_since(t);

  t = std::chrono::steady_clock::now();
  int verified = 0;
  for (const auto& so : orders) verified += security::verify_order(so, ca.cert_pem, o.issued + 60).entry > 0;
  const double verify = seconds_since(t);

  std::printf("work items: %d (one core)\n", n);
  std::printf("unsigned item, built and serialised: %8.1f us each, %5.0f bytes\n", base / n * 1e6,
              static_cast<double>(unsigned_bytes) / n);
  std::printf(
      "signed item, built, signed, serialised: %6.1f us each, %5.0f bytes (%.0fx the time, %.1fx the "
      "bytes)\n",
      sign / n * 1e6, static_cast<double>(signed_bytes) / n, sign / base,
      static_cast<double>(signed_bytes) / static_cast<double>(unsigned_bytes));
  std::printf("signing rate: %.0f orders/s; a job to 10,000 agents: %.2f s of manager CPU\n", n / sign,
              10000 * sign / n);
  std::printf("agent check (chain, signer, signature, fields): %.1f us each (%d verified)\n",
              verify / n * 1e6, verified);
  return verified == n ? 0 : 1;
}
