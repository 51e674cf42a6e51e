#pragma once
// The manager: registration, package repository, job engine and admin API. With parents set it
// is a relay manager: it registers upward, runs the jobs of its subtree from its own database,
// caches content for it, and reports hosts and results up the tree.
#include <distrib/model/host.h>
#include <distrib/model/job.h>
#include <distrib/services/events.h>
#include <distrib/store/store.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace distrib {

struct ManagerSettings {
  std::filesystem::path state_dir;  ///< database, chunks, admin token; must be writable
  std::string listen_address = "127.0.0.1";
  std::uint16_t port = 8640;  ///< 0 picks a free port (written to state_dir/endpoint)
  int network_threads = 2;
  int store_threads = 4;
  /// Connections open at once (0: the descriptor limit less 256) and from one address (0: no
  /// cap); beyond them new connections are closed as they come (HttpServerSettings).
  std::uint64_t max_connections = 0;
  std::uint64_t max_connections_per_address = 1000;
  /// Request bodies received at once, by their declared length: beyond it a request gets 503
  /// (Retry-After) before its body is read (HttpServerSettings). 0: no limit.
  std::uint64_t max_body_bytes_in_flight = 1ull << 30;
  /// An active/standby node: take the listen address over from a predecessor that still holds
  /// it (HttpServerSettings::take_over_address). Set by ClusterNode.
  bool take_over_address = false;
  std::string tls_cert_file;
  std::string tls_key_file;
  HostKeyMode key_mode = HostKeyMode::name;
  StoreSettings store;            ///< store.path defaults to state_dir/distrib.db
  int poll_timeout_seconds = 30;  ///< longest an agent's poll is held open
  int poll_interval_seconds = 5;  ///< agents wait this long between failed contacts
  /// Off: hosts registering for the first time wait for `distribctl hosts approve`.
  bool auto_register = true;

  // --- transfers
  /// This server's own limit on split distribution for the hop above it (relays) and what it
  /// offers below: the smaller segment size wins (hop_split). Unset: the job's split as it is.
  SplitSpec split_max;
  /// Bytes per second sent to one requesting host (agent or relay); 0: unlimited.
  std::uint64_t rate_limit_per_host = 0;
  /// Hosts fetching content at the same time; others are told when to come back. 0: unlimited.
  int max_transfers = 0;
  /// A transfer that sent no request this long gives up its slot.
  int transfer_idle_seconds = 15;
  /// Memory kept for recently sent compressed chunks (many hosts fetch the same package at about
  /// the same time).
  std::uint64_t memory_cache_bytes = 128ull << 20;

  // --- relay manager (parents set)
  std::vector<std::string> parents;     ///< parent URLs in order of preference; empty: central manager
  std::string ca_file;                  ///< verifies an https parent
  std::string bind_address;             ///< local address for connections to the parent
  std::string host_name;                ///< name registered upward (default: the system's)
  std::uint64_t cache_limit_bytes = 0;  ///< content cache size limit; 0: unlimited
  double package_expiry_days = 90;      ///< cached packages unused this long are dropped; 0: never
  int sync_interval_ms = 1000;          ///< longest a change waits before it is reported upward
  int parent_recheck_seconds = 30;      ///< how often the first parent is probed while away from it
  int upstream_threads = 4;             ///< concurrent chunk fetches from the parent

  // --- active/standby (set by the process that runs a FailoverDriver)
  /// JSON object describing the cluster (node, holder, token, takeovers), served at
  /// GET /v1/cluster/status. Unset: the route answers that this manager is not clustered.
  std::function<std::string()> cluster_status;
  /// Prometheus text appended to GET /metrics (a cluster node's state, token and renewals).
  std::function<std::string()> cluster_metrics;

  // --- events, audit, metrics
  /// Where events go (distribd --event-sink); the outbox and GET /v1/events work without any.
  std::vector<EventSinkSettings> event_sinks;
  /// A host not heard from this long is reported silent (host.silent); 0: never.
  int silent_after_seconds = 300;
  /// Events older than this that every sink has taken are deleted (hourly); 0: kept forever.
  int event_retention_days = 30;
  /// Serve Prometheus metrics at GET /metrics, to the admin token or the metrics token.
  bool metrics = true;
  /// A file holding a token (32+ characters) that may read /metrics and nothing else, for a
  /// Prometheus scraper (its bearer_token_file). Empty: only administrative credentials scrape.
  std::filesystem::path metrics_token_file;

  // --- identities (docs/SECURITY.md)
  /// Serve plain HTTP: nobody proves who they are. Off by default: the listener serves TLS with
  /// the certificate of tls_cert_file, or (top manager) one its own CA issues in STATE_DIR/pki,
  /// or (relay) the one issued at its enrolment, and hosts present certificates of the CA.
  bool insecure_http = false;
  /// Accept STATE_DIR/admin.token (made at the first start) as an administrator's credentials.
  /// Turn it off once administrators have accounts of their own (distribctl user add).
  bool admin_token = true;
  /// DNS names and IP addresses the server certificate covers besides the listen address, the
  /// host name and localhost (a cluster's logical name, a load balancer's name).
  std::vector<std::string> tls_names;
  /// Lifetime of the host certificates this manager's CA issues (agents and relays renew them
  /// when a third is left).
  std::int64_t certificate_lifetime_seconds = 30LL * 86400;
  /// Chunks no registered package uses (an upload that failed half-way, a package never
  /// registered) and unfinished temporary files are removed once this old; 0 keeps them.
  std::int64_t orphan_chunk_seconds = 86400;
  /// A relay's enrolment with its parent: a bundle (distribctl enrol-bundle), or a CA (ca_file or
  /// ca_fingerprint) and optionally a token that has it accepted at once.
  std::filesystem::path enrol_bundle;
  std::string enrol_token;
  std::string ca_fingerprint;
};

class Manager {
 public:
  /// Validates settings, prepares the state directory (creating the admin token on first start),
  /// opens the store and applies migrations. Throws Error with a one-line reason on any problem.
  Manager(ManagerSettings settings, const StoreRegistry& stores);
  /// The same, with event sink types of the integrator's own (the other constructor takes the
  /// built-in ones). Unknown sink types or options throw here, before anything runs.
  Manager(ManagerSettings settings, const StoreRegistry& stores, const EventSinkRegistry& sinks);
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  /// Starts serving; returns once the listener is bound.
  void start();
  /// Stops serving and waits for in-flight work. Idempotent.
  void stop();
  std::uint16_t port() const noexcept;
  /// "http(s)://address:port" as agents and distribctl reach it.
  std::string url() const;
  /// Path of the file holding the admin bearer token.
  std::filesystem::path admin_token_file() const;
  Store& store() noexcept;
  /// This manager's own host identifier (kept in state_dir/host-id).
  const std::string& host_id() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace distrib
