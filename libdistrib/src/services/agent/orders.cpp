// Checking the orders an agent is given (orders.h).
#include "services/agent/orders.h"

namespace distrib::agent {

namespace {
[[noreturn]] void refuse(const std::string& why) {
  throw Error(ErrorKind::integrity, "order refused: " + why);
}
void same(const std::string& what, const std::string& ordered, const std::string& given) {
  if (ordered != given)
    refuse("the work item's " + what + " \"" + given.substr(0, 80) + "\" is not the signed order's \"" +
           ordered.substr(0, 80) + "\" (altered on the way)");
}
}  // namespace

std::optional<security::Order> OrderCheck::verify(const bj::object& item) const {
  const auto* id = ctx_.identity.get();
  if (!id || !id->trusts()) return std::nullopt;
  // The CA that issued the hosts' certificates signed the order signer's too.
  std::error_code ec;
  const auto ca = fs::read_file(stdfs::exists(id->issuer_file(), ec) ? id->issuer_file() : id->ca_file());
  auto o = security::verify_order(json::get_string(item, "signed_order", false), ca, fs::now_unix(),
                                  ctx_.settings.accept_relay_orders ? ctx_.server_id : std::string());
  same("host", o.host_id, ctx_.host_id);
  const auto type = json::get_string(item, "type", false);
  const bool force = item.contains("force") && item.at("force").is_bool() && item.at("force").as_bool();
  same("job type", o.type, (type.empty() ? std::string("install") : type) + (force ? "+force" : ""));
  same("attempt", std::to_string(o.attempt), std::to_string(json::get_int(item, "attempt", 1)));
  if (auto p = item.find("package"); p != item.end() && p->value().is_object()) {
    const auto& pkg = p->value().as_object();
    same("package", o.package, json::get_string(pkg, "name"));
    same("version", o.version, json::get_string(pkg, "version"));
    // A relay that has not fetched the package yet names no digest: the order's is used.
    if (const auto given = json::get_string(pkg, "payload_digest", false); !given.empty())
      same("payload digest", o.payload, given);
  } else if (!o.package.empty()) {
    refuse("the work item names no package; the order names " + o.package);
  }
  if (auto c = item.find("collect"); c != item.end() && c->value().is_object())
    same("paths to collect", o.collect,
         security::collect_digest(json::collect_from_json(c->value().as_object())));
  else if (!o.collect.empty())
    refuse("the work item names no paths to collect; the order does");
  return o;
}

void OrderCheck::check_manifest(const security::Order& o, const Manifest& m) {
  if (security::manifest_digest(m) != o.manifest)
    refuse("the manifest of " + m.name + " " + m.version +
           " is not the one the order names (install command, files or payload altered on the way)");
}

stdfs::path OrderCheck::file_of(const security::Order& o) const {
  return ctx_.settings.state_dir / "orders" / (std::to_string(o.entry) + ".json");
}

std::optional<EntryState> OrderCheck::carried_out(const security::Order& o) const {
  try {
    const auto rec = json::parse_object(fs::read_file(file_of(o)));
    if (json::get_int(rec, "attempt", 0) != o.attempt) return std::nullopt;
    return parse_entry_state(json::get_string(rec, "state"));
  } catch (const Error&) {
    return std::nullopt;
  }
}

std::size_t OrderCheck::prune(std::int64_t before) const {
  std::size_t dropped = 0;
  std::error_code ec;
  for (const auto& f : stdfs::directory_iterator(ctx_.settings.state_dir / "orders", ec)) {
    try {
      if (json::get_int(json::parse_object(fs::read_file(f.path())), "expires", 0) < before) {
        stdfs::remove(f.path(), ec);
        ++dropped;
      }
    } catch (const Error&) {
      stdfs::remove(f.path(), ec);  // unreadable: of no use
      ++dropped;
    }
  }
  return dropped;
}

void OrderCheck::remember(const security::Order& o, EntryState state) {
  if (const auto now = fs::now_unix(); now - pruned_at_ >= 3600) {
    pruned_at_ = now;
    prune(now - 86400);
  }
  stdfs::create_directories(file_of(o).parent_path());
  fs::write_file_atomic(file_of(o), bj::serialize(bj::object{{"entry", o.entry},
                                                             {"attempt", o.attempt},
                                                             {"state", std::string(to_string(state))},
                                                             {"expires", o.expires}}));
}

}  // namespace distrib::agent
