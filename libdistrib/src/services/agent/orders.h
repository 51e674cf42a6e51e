#pragma once
// The agent's side of signed orders (security/orders.h): an agent that trusts a CA carries out
// a work item only when it comes with an order the top manager signed for this host, naming the
// same job type, package, payload and collect paths; the manifest fetched later must be the one
// the order names. Orders carried out are remembered (STATE_DIR/orders/ENTRY.json, by the top
// manager's entry id) so that the same order, replayed through any relay, is never run twice:
// its recorded result is reported again instead.
#include "security/orders.h"
#include "services/agent/context.h"

namespace distrib::agent {

class OrderCheck {
 public:
  explicit OrderCheck(Context& ctx) : ctx_(ctx) {}

  /// The verified order of a work item; nullopt when this agent trusts no CA (plain HTTP: it
  /// trusts its network). Throws Error(integrity) naming why the item is refused.
  std::optional<security::Order> verify(const bj::object& item) const;
  /// The manifest must be the one the order names.
  static void check_manifest(const security::Order& o, const Manifest& m);

  /// The result recorded for this order when it was carried out before.
  std::optional<EntryState> carried_out(const security::Order& o) const;
  /// Records the result; records of orders expired a day ago or more are dropped on the way
  /// (an expired order is refused anyway), at most once an hour.
  void remember(const security::Order& o, EntryState state);
  /// Drops the records of orders that expired before `before`; returns how many.
  std::size_t prune(std::int64_t before) const;

 private:
  stdfs::path file_of(const security::Order& o) const;

  Context& ctx_;
  std::int64_t pruned_at_ = 0;
};

}  // namespace distrib::agent
