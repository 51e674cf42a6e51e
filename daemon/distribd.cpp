// distribd: the reference daemon. A composition root: it reads configuration, builds the
// services from libdistrib and runs them. No business logic lives here.
#include <distrib/error.h>
#include <distrib/model/group.h>
#include <distrib/model/units.h>
#include <distrib/net/http.h>
#include <distrib/services/agent.h>
#include <distrib/services/cluster_node.h>
#include <distrib/services/failover.h>
#include <distrib/services/logging.h>
#include <distrib/services/manager.h>
#include <distrib/store/store.h>
#include <distrib/version.h>

#include "verify_store.h"

#include <spdlog/spdlog.h>
#include <boost/program_options.hpp>

#include <pthread.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <tuple>

namespace po = boost::program_options;

namespace {

constexpr int kExitConfig = 2;
constexpr int kExitRuntime = 1;

[[noreturn]] void die(int code, const std::string& message) {
  std::fprintf(stderr, "distribd: %s\n", message.c_str());
  std::exit(code);
}

po::options_description all_options() {
  po::options_description general("General");
  general.add_options()("role", po::value<std::string>(), "manager, relay or agent")(
      "state-dir", po::value<std::string>(), "state directory (database, chunks, identity)")(
      "log-level", po::value<std::string>()->default_value("info"), "trace, debug, info, warn, error");
  po::options_description manager("Manager");
  manager.add_options()("listen", po::value<std::string>()->default_value("127.0.0.1"),
                        "address to serve on")("port", po::value<int>()->default_value(8640),
                                               "port to serve on (0: any free port)")(
      "threads", po::value<int>()->default_value(2), "network threads")(
      "store-threads", po::value<int>()->default_value(4), "database threads")(
      "max-connections", po::value<std::uint64_t>()->default_value(0),
      "connections open at once; new ones beyond it are closed (0: the descriptor limit less 256)")(
      "max-connections-per-address", po::value<std::uint64_t>()->default_value(1000),
      "connections open at once from one address (0: no cap; raise it for agents behind one NAT)")(
      "max-body-bytes-in-flight", po::value<std::string>()->default_value("1GiB"),
      "request bodies received at once (by declared length); beyond it a request is told to retry "
      "before its body is read (0: no limit)")(
      "tls-cert", po::value<std::string>(),
      "PEM certificate chain (default: one issued by the manager's own CA in STATE_DIR/pki)")(
      "tls-key", po::value<std::string>(), "PEM private key")(
      "tls-name", po::value<std::vector<std::string>>()->composing(),
      "DNS name or IP address the server certificate covers besides the listen address, the host name "
      "and localhost (a cluster's logical name); repeatable")(
      "insecure-http", po::bool_switch(),
      "serve plain HTTP: nobody proves who they are (loopback addresses only, see "
      "--insecure-http-anywhere)")("insecure-http-anywhere", po::bool_switch(),
                                   "allow --insecure-http on an address other hosts can reach")(
      "admin-token", po::value<bool>()->default_value(true),
      "accept STATE_DIR/admin.token as an administrator's credentials (false once administrators have "
      "accounts: distribctl user add)")(
      "certificate-lifetime", po::value<std::string>()->default_value("30d"),
      "lifetime of the host certificates the CA issues (hosts renew when a third is left)")(
      "orphan-chunks-after", po::value<std::string>()->default_value("1d"),
      "remove uploaded chunks no registered package uses (a failed or abandoned upload) once this old; "
      "0 keeps them")("key-mode", po::value<std::string>()->default_value("name"),
                      "ID key for operations: name, ip or host-id")(
      "database", po::value<std::string>()->default_value("sqlite"),
      "database backend: sqlite, postgresql or odbc")("database-path", po::value<std::string>(),
                                                      "sqlite file (default STATE_DIR/distrib.db)")(
      "database-connection", po::value<std::string>(),
      "postgresql: \"host=H port=P dbname=D user=U password=W\"; odbc: \"DRIVER={...};SERVER=...;...\"")(
      "database-dialect", po::value<std::string>(),
      "odbc: sqlserver, oracle, postgresql or sqlite (default: from the driver's name)")(
      "database-timeout", po::value<int>()->default_value(10),
      "seconds to connect (servers) or wait for a lock (sqlite)")(
      "database-reconnect", po::value<int>()->default_value(15),
      "seconds a lost database connection is retried before a request fails (it is retried later)")(
      "poll-timeout", po::value<int>()->default_value(30), "seconds an agent's poll is held open")(
      "auto-register", po::value<bool>()->default_value(true),
      "accept new hosts at once (false: they wait for distribctl hosts approve)");
  po::options_description cluster("Active/standby (manager)");
  cluster.add_options()("failover", po::value<std::string>()->default_value("none"),
                        "none, standalone, db-lease, etcd or external (a cluster manager starts and stops "
                        "the node): who decides which node is active")(
      "etcd-endpoint", po::value<std::string>(),
      "etcd coordinator: the client URL, e.g. http://10.0.0.5:2379")(
      "cluster-name", po::value<std::string>()->default_value("distrib"),
      "names the lease (db-lease) or key (etcd): clusters sharing a database or an etcd need different "
      "names")("node-name", po::value<std::string>(), "this node's name, unique in the cluster")(
      "lease-ms", po::value<int>()->default_value(3000), "how long the active role is held without renewal")(
      "renew-ms", po::value<int>()->default_value(1000),
      "how often the active node renews (at most half the lease)")(
      "status-listen", po::value<std::string>(),
      "ADDRESS:PORT of this node's physical address, serving GET /v1/cluster/status whether active or not")(
      "on-promote", po::value<std::string>(),
      "shell command run when this node becomes active (e.g. move a floating IP)")(
      "on-demote", po::value<std::string>(), "shell command run when this node stops being active");
  po::options_description events("Events, audit and metrics (manager, relay)");
  events.add_options()("event-sink", po::value<std::vector<std::string>>()->composing(),
                       "where events go, NAME=TYPE:TARGET[;key=value]... (types: file, syslog, webhook, "
                       "exec, snmp); repeat for more")(
      "silent-after", po::value<int>()->default_value(300),
      "seconds without contact after which a host is reported silent (0: never)")(
      "event-retention-days", po::value<int>()->default_value(30),
      "events older than this that every sink has taken are deleted (0: keep them all)")(
      "metrics", po::value<bool>()->default_value(true),
      "serve Prometheus metrics at GET /metrics (to the admin token or the metrics token)")(
      "metrics-token-file", po::value<std::string>(),
      "file holding a token (32+ characters) that may read /metrics and nothing else, for a scraper");
  po::options_description transfers("Transfers (manager, relay; --split-max also agent)");
  transfers.add_options()("split-max", po::value<std::string>(),
                          "this host's own split distribution limit SIZE/INTERVAL, e.g. 1MiB/60s: at each "
                          "hop the smaller segment size wins")(
      "rate-limit", po::value<std::string>(),
      "bytes per second sent to each requesting host, e.g. 10MB (default: none)")(
      "max-transfers", po::value<int>()->default_value(0),
      "hosts fetching content at once; others are told when to come back (0: no limit)")(
      "transfer-idle-seconds", po::value<int>()->default_value(15),
      "a transfer silent this long gives up its slot")("memory-cache",
                                                       po::value<std::string>()->default_value("128MiB"),
                                                       "memory for recently sent chunks (0: none)");
  po::options_description relay("Relay (a manager with a parent)");
  relay.add_options()("parent", po::value<std::vector<std::string>>()->composing(),
                      "parent URL; repeat for fallback parents, in order of preference (relay and agent)")(
      "cache-limit", po::value<std::string>(), "relay content cache size limit, e.g. 20GiB (default: none)")(
      "package-expiry-days", po::value<double>()->default_value(90),
      "drop cached packages unused this many days (0: never)")(
      "sync-interval-ms", po::value<int>()->default_value(1000),
      "longest a change waits before it is reported upward")(
      "parent-recheck", po::value<int>()->default_value(30),
      "seconds between probes of the first parent while using a fallback (relay and agent)");
  po::options_description agent("Agent");
  agent.add_options()("server", po::value<std::vector<std::string>>()->composing(),
                      "parent URL, http(s)://host:port (same as --parent)")(
      "ca-file", po::value<std::string>(), "CA certificate that verifies an https parent (relay and agent)")(
      "enrol-bundle", po::value<std::string>(),
      "enrolment bundle from distribctl enrol-bundle: servers, CA, optional token (relay and agent)")(
      "enrol-token-file", po::value<std::string>(),
      "file holding an enrolment token (distribctl enrol-token create): accepted at once (relay and agent)")(
      "ca-fingerprint", po::value<std::string>(),
      "sha256:HEX of the CA certificate: trust the CA the parent shows when it matches (relay and agent)")(
      "bind-address", po::value<std::string>(), "local address for connections to the parent")(
      "host-name", po::value<std::string>(), "host name to register (default: the system's)")(
      "packages-dir", po::value<std::string>(), "default install root (default STATE_DIR/packages)")(
      "chunk-cache-limit", po::value<std::string>(),
      "agent: chunks kept after installs, e.g. 1GiB (default: twice the largest package held; unlimited: "
      "never trimmed)")("id-group", po::value<std::vector<std::string>>()->composing(),
                        "ID group joined at every registration, NAME or NAME:PASSWORD (repeatable)")(
      "stop-install-seconds", po::value<int>()->default_value(60),
      "longest an orderly stop spends on installs timed at agent stop (0: none)")(
      "inventory-check", po::value<std::string>()->default_value("5m"),
      "how often the inventory is collected to detect changes (0: only for jobs)")(
      "inventory-interval", po::value<std::string>()->default_value("1d"),
      "a full inventory report at least this often even without changes (0: only on change)")(
      "user-inventory", po::value<std::string>(), "file of NAME=VALUE lines: user inventory values")(
      "collect-allow", po::value<std::vector<std::string>>()->composing(),
      "directory (or glob) files may be collected from by collect-files jobs (repeatable; none by default)")(
      "accept-relay-orders", po::bool_switch(),
      "carry out jobs created at the parent relay itself (its own ID groups), signed with its key; "
      "without it only orders signed by the top manager run")(
      "publisher-key", po::value<std::vector<std::string>>()->composing(),
      "Ed25519 public key (PEM, from distribctl keys create) whose signed packages may run here, "
      "besides the keys the manager trusts (repeatable); once any key is trusted, unsigned packages are "
      "refused")("require-signed-packages", po::bool_switch(),
                 "refuse unsigned packages even before any publisher key is trusted");
  po::options_description out;
  out.add(general).add(manager).add(cluster).add(events).add(transfers).add(relay).add(agent);
  return out;
}

template <class T>
T get(const po::variables_map& vm, const char* key, T fallback = T{}) {
  return vm.count(key) ? vm[key].as<T>() : fallback;
}

// Blocks SIGINT/SIGTERM in every thread; main waits for them with sigwait.
sigset_t block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  return set;
}

std::string with_commas(std::int64_t n) {
  auto digits = std::to_string(n);
  for (int i = static_cast<int>(digits.size()) - 3; i > (n < 0 ? 1 : 0); i -= 3)
    digits.insert(static_cast<std::size_t>(i), ",");
  return digits;
}

std::string describe(const distrib::StoreSettings& st) {
  return st.backend == "sqlite"
             ? "sqlite database " + st.path
             : st.backend + (st.dialect.empty() ? "" : " (" + st.dialect + ")") + " database";
}

int migrate_database(const distrib::StoreRegistry& stores, const distrib::StoreSettings& st) {
  auto store = stores.open(st);
  const int before = store->version_at_open();
  const int now = store->schema_version();
  if (before == now)
    std::cout << describe(st) << " is at schema version " << now << " already; nothing to do\n";
  else
    std::cout << describe(st) << " migrated from schema version " << before << " to " << now << "\n";
  // What a DBA wants to know next: does every query run per agent contact have its index?
  const auto plans = store->query_plans();
  std::size_t scans = 0;
  for (const auto& p : plans)
    if (p.full_scan) {
      ++scans;
      std::cout << "warning: the query for " << p.name << " reads a whole table:\n" << p.plan << "\n";
    }
  if (!plans.empty())
    std::cout << plans.size() - scans << " of " << plans.size()
              << " queries run for each registration, poll and wake-up are served by an index\n";
  return 0;
}

void print_summary(const distrib::DataSummary& sum) {
  std::printf("%-22s %12s  %s\n", "TABLE", "ROWS", "CHECKSUM");
  std::int64_t total = 0;
  for (const auto& t : sum.tables) {
    std::printf("%-22s %12s  %s\n", t.name.c_str(), with_commas(t.rows).c_str(),
                t.checksum.substr(0, 16).c_str());
    total += t.rows;
  }
  std::printf("%-22s %12s\n", "total", with_commas(total).c_str());
}

distrib::DataProgress progress_printer() {
  return [last = std::string()](const std::string& table, std::int64_t rows) mutable {
    std::fprintf(stderr, "%s  %s: %s rows", last == table ? "\r" : "\n", table.c_str(),
                 with_commas(rows).c_str());
    last = table;
  };
}

int export_database(const distrib::StoreRegistry& stores, const distrib::StoreSettings& st,
                    const std::string& file) {
  auto store = stores.open(st);
  const std::string tmp = file + ".partial";
  std::ofstream out(tmp, std::ios::trunc);
  if (!out) die(kExitConfig, "cannot write " + tmp);
  std::fprintf(stderr, "exporting the %s to %s", describe(st).c_str(), file.c_str());
  distrib::DataSummary sum;
  try {
    sum = store->export_data(out, progress_printer());
    out.close();
    if (!out) throw distrib::Error("writing " + tmp + " failed (disk full?)");
  } catch (...) {
    std::filesystem::remove(tmp);
    std::fprintf(stderr, "\n");
    throw;
  }
  std::filesystem::rename(tmp, file);
  std::fprintf(stderr, "\n");
  std::cout << "exported schema version " << sum.schema_version << " to " << file << "\n";
  print_summary(sum);
  return 0;
}

int import_database(const distrib::StoreRegistry& stores, const distrib::StoreSettings& st,
                    const std::string& file) {
  std::ifstream in(file);
  if (!in) die(kExitConfig, "cannot read " + file);
  auto store = stores.open(st);
  std::fprintf(stderr, "importing %s into the %s", file.c_str(), describe(st).c_str());
  distrib::DataSummary sum;
  try {
    sum = store->import_data(in, progress_printer());
  } catch (...) {
    std::fprintf(stderr, "\n");
    throw;
  }
  std::fprintf(stderr, "\n");
  std::cout << "imported " << file << " (schema version " << sum.schema_version
            << "); every table's row count and checksum read back equal to the export's\n";
  print_summary(sum);
  return 0;
}

bool is_loopback(const std::string& address) {
  return address.starts_with("127.") || address == "::1" || address == "localhost";
}

// An enrolment token from its file (empty: none).
std::string token_from_file(const std::string& file) {
  if (file.empty()) return {};
  std::ifstream in(file);
  if (!in)
    throw distrib::Error(distrib::ErrorKind::invalid_argument,
                         "cannot read the enrolment token file " + file);
  std::string t((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ' || t.back() == '\r')) t.pop_back();
  return t;
}

// "ADDRESS:PORT" of --status-listen; throws Error naming the problem.
std::pair<std::string, std::uint16_t> parse_status_listen(const std::string& v) {
  const auto colon = v.rfind(':');
  const std::string port = colon == std::string::npos ? std::string() : v.substr(colon + 1);
  if (colon == std::string::npos || colon == 0 || port.empty() ||
      port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoi(port) > 65535)
    throw distrib::Error(distrib::ErrorKind::invalid_argument,
                         "--status-listen expects ADDRESS:PORT, got \"" + v + "\"");
  return {v.substr(0, colon), static_cast<std::uint16_t>(std::stoi(port))};
}

// The manager as one node of an active/standby pair (distrib::ClusterNode) until a signal.
int run_clustered(const distrib::ManagerSettings& s, const distrib::StoreRegistry& stores,
                  distrib::ClusterNodeSettings c, const sigset_t& sigs) {
  distrib::CoordinatorRegistry coordinators;
  distrib::register_builtin_coordinators(coordinators);
  distrib::ClusterNode node(s, stores, coordinators, std::move(c));
  node.start();
  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("signal {} received; stopping", sig);
  node.stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description cmdline("distribd --role manager|relay|agent [--config FILE] [options]");
  cmdline.add_options()("help,h", "show this help")("version", "print the version")(
      "config,c", po::value<std::string>(), "INI-style configuration file (keys as the long options)")(
      "check-config", "validate the configuration and exit")(
      "join-group", po::value<std::string>(),
      "agent: join this ID group now (with --group-password) and exit")(
      "leave-group", po::value<std::string>(), "agent: leave this ID group now and exit")(
      "group-password", po::value<std::string>(), "password for --join-group")(
      "monitor",
      "manager: exit 0 when the manager answers on its address (--listen/--port), 7 when it does not "
      "(a cluster manager's monitor, e.g. a WSFC generic service or script resource)")(
      "migrate", "manager: bring the database to this version's schema and exit")(
      "verify-store",
      "check every stored chunk (corrupt ones are moved to STATE_DIR/chunks/quarantine) and, for a manager "
      "or relay, every package's manifest against them; exit 0 when whole, 1 otherwise (run it with the "
      "daemon stopped; distribctl content verify does it online)")(
      "export-db", po::value<std::string>(),
      "manager: write the whole database to FILE (JSON lines) and exit")(
      "import-db", po::value<std::string>(),
      "manager: load FILE (from --export-db) into an empty database and exit")(
      "set-inventory", po::value<std::vector<std::string>>()->composing(),
      "agent: set a user inventory value NAME=VALUE (empty value removes it) and exit (repeatable)");
  const auto opts = all_options();
  cmdline.add(opts);

  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, cmdline), vm);
    if (vm.count("config")) {
      const auto path = vm["config"].as<std::string>();
      std::ifstream in(path);
      if (!in) die(kExitConfig, "cannot read configuration file " + path);
      po::store(po::parse_config_file(in, opts, false), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    die(kExitConfig, std::string(e.what()) + " (see distribd --help)");
  }
  if (vm.count("help")) {
    std::cout << cmdline << "\n";
    return 0;
  }
  if (vm.count("version")) {
    std::cout << "distribd " << distrib::version() << "\n";
    return 0;
  }

  const auto level = spdlog::level::from_str(get<std::string>(vm, "log-level"));
  if (level == spdlog::level::off && get<std::string>(vm, "log-level") != "off")
    die(kExitConfig, "unknown log level \"" + get<std::string>(vm, "log-level") + "\"");
  spdlog::set_level(level);
  // Names and messages from hosts cannot forge log lines: control characters are escaped.
  distrib::set_log_format("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");

  const auto role = get<std::string>(vm, "role");
  const bool check_only = vm.count("check-config") > 0;
  if (role.empty()) die(kExitConfig, "--role is required (manager, relay or agent)");
  std::vector<std::string> parents = get<std::vector<std::string>>(vm, "parent");
  for (const auto& u : get<std::vector<std::string>>(vm, "server")) parents.push_back(u);
  if (!vm.count("state-dir")) die(kExitConfig, "--state-dir is required");

  try {
    const auto sigs = block_signals();
    if (role == "manager" || role == "relay") {
      distrib::ManagerSettings s;
      s.state_dir = get<std::string>(vm, "state-dir");
      s.listen_address = get<std::string>(vm, "listen");
      const int port = get<int>(vm, "port");
      if (port < 0 || port > 65535) die(kExitConfig, "--port must be between 0 and 65535");
      s.port = static_cast<std::uint16_t>(port);
      s.network_threads = get<int>(vm, "threads");
      s.store_threads = get<int>(vm, "store-threads");
      s.max_connections = get<std::uint64_t>(vm, "max-connections");
      s.max_connections_per_address = get<std::uint64_t>(vm, "max-connections-per-address");
      try {
        const auto bodies = get<std::string>(vm, "max-body-bytes-in-flight");
        s.max_body_bytes_in_flight = bodies == "0" ? 0 : distrib::parse_byte_size(bodies);
      } catch (const distrib::Error& e) {
        die(kExitConfig, std::string("--max-body-bytes-in-flight: ") + e.what());
      }
      if (s.max_body_bytes_in_flight != 0 && s.max_body_bytes_in_flight < (1u << 20))
        die(kExitConfig, "--max-body-bytes-in-flight is 0 (no limit) or at least 1MiB");
      s.tls_cert_file = get<std::string>(vm, "tls-cert");
      s.tls_key_file = get<std::string>(vm, "tls-key");
      if (s.tls_cert_file.empty() != s.tls_key_file.empty())
        die(kExitConfig, "--tls-cert and --tls-key go together");
      s.tls_names = get<std::vector<std::string>>(vm, "tls-name");
      s.insecure_http = vm["insecure-http"].as<bool>();
      s.admin_token = get<bool>(vm, "admin-token");
      if (s.insecure_http && !s.tls_cert_file.empty())
        die(kExitConfig, "--insecure-http serves plain HTTP: drop it or --tls-cert");
      if (s.insecure_http && !vm["insecure-http-anywhere"].as<bool>() && !is_loopback(s.listen_address))
        die(kExitConfig, "--insecure-http on " + s.listen_address +
                             " would let anyone who reaches it act as any host; it is for loopback addresses "
                             "(add --insecure-http-anywhere if this network is trusted)");
      try {
        s.certificate_lifetime_seconds =
            distrib::parse_duration_seconds(get<std::string>(vm, "certificate-lifetime"));
      } catch (const distrib::Error& e) {
        die(kExitConfig, std::string("--certificate-lifetime: ") + e.what());
      }
      if (s.certificate_lifetime_seconds < 60 || s.certificate_lifetime_seconds > 3650LL * 86400)
        die(kExitConfig, "--certificate-lifetime is from 1m to 3650d");
      try {
        const auto orphans = get<std::string>(vm, "orphan-chunks-after");
        s.orphan_chunk_seconds = orphans == "0" ? 0 : distrib::parse_duration_seconds(orphans);
      } catch (const distrib::Error& e) {
        die(kExitConfig, std::string("--orphan-chunks-after: ") + e.what());
      }
      if (s.orphan_chunk_seconds < 0 || s.orphan_chunk_seconds > 3650LL * 86400)
        die(kExitConfig, "--orphan-chunks-after is 0 (keep) or from 1s to 3650d");
      s.key_mode = distrib::parse_host_key_mode(get<std::string>(vm, "key-mode"));
      s.store.backend = get<std::string>(vm, "database");
      s.store.path = get<std::string>(vm, "database-path");
      s.store.connection = get<std::string>(vm, "database-connection");
      s.store.dialect = get<std::string>(vm, "database-dialect");
      s.store.busy_timeout_seconds = get<int>(vm, "database-timeout");
      s.store.reconnect_seconds = get<int>(vm, "database-reconnect");
      if (s.store.busy_timeout_seconds < 1) die(kExitConfig, "--database-timeout must be at least 1 second");
      if (s.store.reconnect_seconds < 0) die(kExitConfig, "--database-reconnect must not be negative");
      if (s.store.backend == "sqlite" && (vm.count("database-connection") || vm.count("database-dialect")))
        die(kExitConfig,
            "--database-connection and --database-dialect are for the postgresql and odbc backends "
            "(the sqlite backend takes --database-path)");
      if (s.store.backend != "sqlite" && vm.count("database-path"))
        die(kExitConfig, "--database-path is for the sqlite backend (" + s.store.backend +
                             " takes --database-connection)");
      s.poll_timeout_seconds = get<int>(vm, "poll-timeout");
      s.auto_register = get<bool>(vm, "auto-register");
      s.split_max = distrib::parse_split(get<std::string>(vm, "split-max"));
      if (vm.count("rate-limit")) {
        s.rate_limit_per_host = distrib::parse_byte_size(get<std::string>(vm, "rate-limit"));
        if (s.rate_limit_per_host < 1024)
          die(kExitConfig, "--rate-limit must be at least 1KiB (bytes per second)");
      }
      s.max_transfers = get<int>(vm, "max-transfers");
      if (s.max_transfers < 0) die(kExitConfig, "--max-transfers must not be negative");
      s.transfer_idle_seconds = get<int>(vm, "transfer-idle-seconds");
      s.memory_cache_bytes = distrib::parse_byte_size(get<std::string>(vm, "memory-cache"));
      if (s.transfer_idle_seconds < 1) die(kExitConfig, "--transfer-idle-seconds must be at least 1");
      if (role == "relay") {
        if (parents.empty()) die(kExitConfig, "a relay needs --parent URL (its parent manager or relay)");
        s.parents = parents;
        s.ca_file = get<std::string>(vm, "ca-file");
        s.enrol_bundle = get<std::string>(vm, "enrol-bundle");
        s.enrol_token = token_from_file(get<std::string>(vm, "enrol-token-file"));
        s.ca_fingerprint = get<std::string>(vm, "ca-fingerprint");
        s.bind_address = get<std::string>(vm, "bind-address");
        s.host_name = get<std::string>(vm, "host-name");
        if (vm.count("cache-limit"))
          s.cache_limit_bytes = distrib::parse_byte_size(get<std::string>(vm, "cache-limit"));
        s.package_expiry_days = get<double>(vm, "package-expiry-days");
        if (s.package_expiry_days < 0) die(kExitConfig, "--package-expiry-days must not be negative");
        s.sync_interval_ms = get<int>(vm, "sync-interval-ms");
        s.parent_recheck_seconds = get<int>(vm, "parent-recheck");
        for (const auto& u : parents) distrib::parse_base_url(u);
      } else {
        for (const char* relay_or_agent :
             {"parent", "server", "ca-file", "bind-address", "host-name", "cache-limit", "enrol-bundle",
              "enrol-token-file", "ca-fingerprint"})
          if (vm.count(relay_or_agent))
            die(kExitConfig,
                std::string("--") + relay_or_agent +
                    " is a relay or agent option (a manager with a parent is a relay: --role relay)");
      }
      if (vm.count("packages-dir")) die(kExitConfig, "--packages-dir is an agent option");
      if (vm.count("chunk-cache-limit"))
        die(kExitConfig, "--chunk-cache-limit is an agent option (relays: --cache-limit)");
      for (const auto& spec : get<std::vector<std::string>>(vm, "event-sink"))
        s.event_sinks.push_back(distrib::parse_event_sink(spec));
      s.silent_after_seconds = get<int>(vm, "silent-after");
      if (s.silent_after_seconds < 0) die(kExitConfig, "--silent-after must be 0 (never) or more seconds");
      s.metrics = get<bool>(vm, "metrics");
      if (vm.count("metrics-token-file")) s.metrics_token_file = vm["metrics-token-file"].as<std::string>();
      s.event_retention_days = get<int>(vm, "event-retention-days");
      if (s.event_retention_days < 0)
        die(kExitConfig, "--event-retention-days must be 0 (keep) or more days");
      {
        // Every sink is built once here, so that a wrong one stops the start (and --check-config)
        // before anything is created, on every node, not only when a standby is promoted.
        distrib::EventSinkRegistry sinks;
        distrib::register_builtin_event_sinks(sinks);
        distrib::make_event_sinks(sinks, s.event_sinks);
      }
      distrib::StoreRegistry stores;
      distrib::register_builtin_stores(stores);
      if (check_only) {
        if (!stores.contains(s.store.backend))
          stores.open(s.store);  // throws the "unknown backend" error listing the known ones
        for (const auto& w : distrib::check_store_settings(s.store))
          std::cerr << "distribd: warning: " << w << "\n";
        if (s.insecure_http)
          std::cerr << "distribd: warning: --insecure-http: hosts and administrators prove nothing and "
                       "anything on the network can read and forge their requests\n";
        if (get<std::string>(vm, "failover") != "none") {
          distrib::CoordinatorRegistry coordinators;
          distrib::register_builtin_coordinators(coordinators);
          const auto kind = get<std::string>(vm, "failover");
          if (!coordinators.contains(kind)) coordinators.make(kind, {});  // throws, listing the known ones
          distrib::validate_failover({get<std::string>(vm, "node-name"),
                                      std::chrono::milliseconds(get<int>(vm, "lease-ms")),
                                      std::chrono::milliseconds(get<int>(vm, "renew-ms"))});
          if (role == "relay")
            die(kExitConfig, "--failover is for the manager (relays keep their own database)");
          if (vm.count("status-listen")) parse_status_listen(get<std::string>(vm, "status-listen"));
          if (kind == "etcd") {
            if (get<std::string>(vm, "etcd-endpoint").empty())
              die(kExitConfig, "the etcd coordinator needs an endpoint (--etcd-endpoint http://HOST:2379)");
            distrib::parse_base_url(get<std::string>(vm, "etcd-endpoint"));
          }
        }
        std::cout << "configuration is valid (" << role << ")\n";
        return 0;
      }
      if (vm.count("monitor")) {
        const auto host = s.listen_address == "0.0.0.0" ? std::string("127.0.0.1") : s.listen_address;
        distrib::HttpClientSettings hc;
        hc.base_url = (s.insecure_http ? "http://" : "https://") + host + ":" + std::to_string(s.port);
        if (!s.insecure_http)
          hc.ca_file =
              (std::filesystem::path(s.state_dir) / (role == "relay" ? "identity" : "pki") / "ca.crt")
                  .string();
        hc.connect_timeout_seconds = 3;
        hc.timeout_seconds = 5;
        try {
          distrib::HttpClient client(hc);
          const auto res = client.request("GET", "/v1/status");
          if (res.status == 200) {
            std::cout << "running: " << hc.base_url << " answers\n";
            return 0;
          }
          std::cout << "not running: " << hc.base_url << " answered " << res.status << "\n";
          return 1;
        } catch (const distrib::Error& e) {
          std::cout << "not running: " << e.what() << "\n";
          return 7;  // OCF_NOT_RUNNING
        }
      }
      if (vm.count("verify-store")) {
        if (s.store.backend == "sqlite" && s.store.path.empty())
          s.store.path = (std::filesystem::path(s.state_dir) / "distrib.db").string();
        auto store = stores.open(s.store);
        return verify_store(s.state_dir, store.get(), role == "relay");
      }
      if (vm.count("migrate") + vm.count("export-db") + vm.count("import-db") > 1)
        die(kExitConfig, "--migrate, --export-db and --import-db are separate commands: give one");
      if (vm.count("migrate") || vm.count("export-db") || vm.count("import-db")) {
        if (s.store.backend == "sqlite" && s.store.path.empty()) {
          s.store.path = (std::filesystem::path(s.state_dir) / "distrib.db").string();
          std::filesystem::create_directories(s.state_dir);
        }
        if (vm.count("import-db")) return import_database(stores, s.store, get<std::string>(vm, "import-db"));
        if (vm.count("export-db")) return export_database(stores, s.store, get<std::string>(vm, "export-db"));
        return migrate_database(stores, s.store);
      }
      const auto failover = get<std::string>(vm, "failover");
      if (failover != "none") {
        if (role == "relay")
          die(kExitConfig, "--failover is for the manager (relays keep their own database)");
        distrib::ClusterNodeSettings c;
        c.coordinator = failover;
        c.failover.node = get<std::string>(vm, "node-name");
        c.failover.lease = std::chrono::milliseconds(get<int>(vm, "lease-ms"));
        c.failover.renew = std::chrono::milliseconds(get<int>(vm, "renew-ms"));
        if (const auto listen = get<std::string>(vm, "status-listen"); !listen.empty())
          std::tie(c.status_address, c.status_port) = parse_status_listen(listen);
        c.on_promote = get<std::string>(vm, "on-promote");
        c.on_demote = get<std::string>(vm, "on-demote");
        if (const auto endpoint = get<std::string>(vm, "etcd-endpoint"); !endpoint.empty())
          c.options["endpoint"] = endpoint;
        c.cluster = get<std::string>(vm, "cluster-name");
        return run_clustered(s, stores, std::move(c), sigs);
      }
      distrib::Manager manager(s, stores);
      manager.start();
      int sig = 0;
      sigwait(&sigs, &sig);
      spdlog::info("signal {} received; stopping", sig);
      manager.stop();
      return 0;
    }
    if (role == "agent") {
      if (vm.count("verify-store")) return verify_store(get<std::string>(vm, "state-dir"), nullptr, false);
      if (vm.count("event-sink"))
        die(kExitConfig, "--event-sink is a manager and relay option (agents report to their parent)");
      distrib::AgentSettings s;
      s.state_dir = get<std::string>(vm, "state-dir");
      s.parents = parents;
      s.parent_recheck_seconds = get<int>(vm, "parent-recheck");
      s.ca_file = get<std::string>(vm, "ca-file");
      s.enrol_bundle = get<std::string>(vm, "enrol-bundle");
      s.enrol_token = token_from_file(get<std::string>(vm, "enrol-token-file"));
      s.ca_fingerprint = get<std::string>(vm, "ca-fingerprint");
      s.bind_address = get<std::string>(vm, "bind-address");
      s.host_name = get<std::string>(vm, "host-name");
      s.packages_dir = get<std::string>(vm, "packages-dir");
      if (const auto limit = get<std::string>(vm, "chunk-cache-limit"); !limit.empty()) {
        try {
          s.chunk_cache_limit = limit == "unlimited" ? UINT64_MAX : distrib::parse_byte_size(limit);
        } catch (const distrib::Error& e) {
          die(kExitConfig, std::string("--chunk-cache-limit: ") + e.what());
        }
        if (s.chunk_cache_limit == 0) die(kExitConfig, "--chunk-cache-limit must be above 0 (or unlimited)");
      }
      s.poll_timeout_seconds = get<int>(vm, "poll-timeout");
      s.stop_install_seconds = get<int>(vm, "stop-install-seconds");
      if (s.stop_install_seconds < 0) die(kExitConfig, "--stop-install-seconds must not be negative");
      for (const auto& g : get<std::vector<std::string>>(vm, "id-group")) {
        const auto colon = g.find(':');
        distrib::GroupJoin j{g.substr(0, colon),
                             colon == std::string::npos ? std::string() : g.substr(colon + 1)};
        distrib::validate_group_name(j.name, "ID group");
        s.id_groups.push_back(std::move(j));
      }
      s.split_max = distrib::parse_split(get<std::string>(vm, "split-max"));
      const auto seconds_option = [&](const char* name) {
        try {
          return static_cast<int>(distrib::parse_duration_seconds(get<std::string>(vm, name)));
        } catch (const distrib::Error& e) {
          die(kExitConfig, std::string("--") + name + ": " + e.what());
        }
      };
      s.inventory_check_seconds = seconds_option("inventory-check");
      s.inventory_interval_seconds = seconds_option("inventory-interval");
      s.user_inventory_file = get<std::string>(vm, "user-inventory");
      s.accept_relay_orders = get<bool>(vm, "accept-relay-orders");
      s.require_signed_packages = get<bool>(vm, "require-signed-packages");
      for (const auto& k : get<std::vector<std::string>>(vm, "publisher-key"))
        s.publisher_keys.emplace_back(k);
      for (const auto& a : get<std::vector<std::string>>(vm, "collect-allow")) {
        if (a.empty() || a.front() != '/')
          die(kExitConfig, "--collect-allow \"" + a + "\" is not an absolute path");
        s.collect_allow.push_back(a);
      }
      if (vm.count("set-inventory")) {
        // A command on the agent's machine: set user inventory values for the next report.
        std::map<std::string, std::string> values;
        for (const auto& a : get<std::vector<std::string>>(vm, "set-inventory")) {
          const auto eq = a.find('=');
          if (eq == std::string::npos || eq == 0)
            die(kExitConfig, "--set-inventory expects NAME=VALUE, got \"" + a + "\"");
          values[a.substr(0, eq)] = a.substr(eq + 1);
        }
        distrib::Agent::set_user_inventory(s.state_dir, values);
        std::cout << values.size()
                  << " user inventory value(s) set; reported at the agent's next inventory check\n";
        return 0;
      }
      for (const char* manager_only :
           {"tls-cert", "tls-key", "tls-name", "database-path", "database-connection", "database-dialect",
            "rate-limit", "migrate", "export-db", "import-db"})
        if (vm.count(manager_only))
          die(kExitConfig, std::string("--") + manager_only + " is a manager option");
      for (const char* manager_only : {"insecure-http", "insecure-http-anywhere"})
        if (vm[manager_only].as<bool>())
          die(kExitConfig, std::string("--") + manager_only + " is a manager option");
      if (check_only) {
        if (s.parents.empty() && s.enrol_bundle.empty())
          die(kExitConfig, "agent needs --server (or --parent) URL or --enrol-bundle");
        for (const auto& u : s.parents) distrib::parse_base_url(u);
        std::cout << "configuration is valid (agent)\n";
        return 0;
      }
      distrib::Agent agent(s);
      if (vm.count("join-group") || vm.count("leave-group")) {
        // A command on the agent's machine: join or leave an ID group now.
        const bool leave = vm.count("leave-group") > 0;
        const auto group = get<std::string>(vm, leave ? "leave-group" : "join-group");
        distrib::validate_group_name(group, "ID group");
        const auto r = agent.join_group(group, get<std::string>(vm, "group-password"), leave);
        if (leave)
          std::cout << (r.changed ? "left" : "was not a member of") << " ID group " << group << " ("
                    << r.entries << " pending entr" << (r.entries == 1 ? "y" : "ies") << " cancelled)\n";
        else
          std::cout << (r.changed ? "joined" : "already a member of") << " ID group " << group << " ("
                    << r.entries << " standing job" << (r.entries == 1 ? "" : "s") << " to receive)\n";
        return 0;
      }
      if (vm.count("group-password")) die(kExitConfig, "--group-password goes with --join-group");
      spdlog::info(
          "agent {} starting; parent {}", agent.host_id(),
          s.parents.empty() ? "from the enrolment bundle " + s.enrol_bundle.string() : s.parents.front());
      std::thread runner([&] { agent.run(); });
      int sig = 0;
      sigwait(&sigs, &sig);
      spdlog::info("signal {} received; stopping", sig);
      agent.stop();
      runner.join();
      return 0;
    }
    die(kExitConfig, "unknown role \"" + role + "\" (expected manager, relay or agent)");
  } catch (const distrib::Error& e) {
    die(e.kind() == distrib::ErrorKind::invalid_argument ? kExitConfig : kExitRuntime, e.what());
  } catch (const std::exception& e) {
    die(kExitRuntime, e.what());
  }
}
