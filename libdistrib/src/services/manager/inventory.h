#pragma once
// Inventory: reports from agents (group commit on the ingest thread), user field definitions, queries
// over the latest inventory of every host, a host's inventory and its history.
#include "services/manager/common.h"

#include <condition_variable>
#include <optional>
#include <thread>

namespace distrib::manager {

class Registration;
class Uplink;

class Inventory {
 public:
  Inventory(Context& ctx, Registration& registration, Uplink& uplink)
      : ctx_(ctx), registration_(registration), uplink_(uplink) {}
  ~Inventory() { stop(); }
  void register_routes(Router& t);
  void start();
  void stop();

  /// Hosts whose latest inventory satisfies every condition (all inventoried hosts for none).
  std::vector<std::string> hosts_matching(const InventoryQuery& q);

 private:
  /// Stored values of a field (with '*' and '?') on the given hosts (sorted ids).
  std::vector<InventoryValue> values_of(const std::string& field, const std::vector<std::string>& hosts);
  std::vector<InventoryField> inventory_fields();
  bj::array drop_undefined_fields(InventoryReport& rep);
  void forget_fields();
  void ingest_loop();
  void agent_inventory_fields(HttpRequest&& req, Responder& r, const PathSegments&);
  void agent_inventory(HttpRequest&& req, Responder& r, const PathSegments&);
  void inventory_query(HttpRequest&& req, Responder& r, const PathSegments&);
  void inventory_fields_list(HttpRequest&&, Responder& r, const PathSegments&);
  void inventory_field_define(HttpRequest&& req, Responder& r, const PathSegments&);
  void inventory_field_delete(HttpRequest&&, Responder& r, const PathSegments& p);
  void inventory_host(HttpRequest&& req, Responder& r, const PathSegments& p);

  Context& ctx_;
  Registration& registration_;
  Uplink& uplink_;
  // Inventory reports waiting for the ingest thread (group commit).
  struct QueuedReport {
    InventoryReport report;
    std::shared_ptr<Responder> responder;
  };
  std::mutex ingest_mutex_;
  std::condition_variable ingest_cv_;
  std::vector<QueuedReport> ingest_queue_;
  bool ingest_stopping_ = false;
  std::thread ingester_;
  // Inventory field definitions (user inventory), read from the store on first use.
  std::mutex fields_mutex_;
  std::optional<std::vector<InventoryField>> fields_cache_;
};

}  // namespace distrib::manager
