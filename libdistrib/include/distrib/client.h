#pragma once
// AdminClient: the admin REST API as a C++ API. distribctl makes every call through it (its own
// code parses commands and renders tables, progress and JSON); integrators can drive a manager
// from their own tools the same way.
#include <distrib/content/packager.h>
#include <distrib/model/event.h>
#include <distrib/model/group.h>
#include <distrib/model/host.h>
#include <distrib/model/job.h>
#include <distrib/model/package.h>
#include <distrib/net/http.h>
#include <distrib/store/store.h>

#include <functional>
#include <string>
#include <vector>

namespace distrib {

struct AdminClientSettings {
  HttpClientSettings http;
  std::string token;  ///< the manager's admin bearer token
  /// Who is acting, for the manager's audit trail (sent as X-Distrib-Actor; distribctl sends
  /// USER@HOST). Empty: the trail says "admin".
  std::string actor;
};

/// Result of uploading a package.
struct UploadResult {
  Manifest manifest;
  std::size_t chunks_total = 0;
  std::size_t chunks_uploaded = 0;   ///< chunks the manager did not have yet
  std::uint64_t bytes_uploaded = 0;  ///< compressed bytes sent
  bool already_registered = false;   ///< identical package was already there
};

struct JobDetails {
  Job job;
  std::vector<JobEntry> entries;
  JobProgress progress;
  std::vector<WaveCounts> waves;  ///< per wave of a staged rollout (empty otherwise)
};

/// A publisher's key pair (Ed25519, PEM), made on this machine: the private key signs packages
/// (PackageSpec::signing_key_pem); the public one is trusted with AdminClient::trust_publisher.
struct PublisherKeyPair {
  std::string private_pem, public_pem;
  std::string id;  ///< "ed25519:" and 16 hex digits
};
PublisherKeyPair make_publisher_key();
/// The id of a public key (PEM); throws Error(invalid_argument) when it is not Ed25519.
std::string publisher_key_id(const std::string& public_pem);

/// A publisher key the tree trusts, and the trusted set (AdminClient::publishers).
struct TrustedPublisher {
  std::string id, name, public_pem;
  std::int64_t added = 0;
};
struct PublisherList {
  std::int64_t version = 0;  ///< every change makes a new version; 0: no key was ever trusted
  std::vector<TrustedPublisher> keys;
  std::vector<std::string> revoked;  ///< key ids
};

/// A client certificate for an administrator's account (AdminClient::issue_user_certificate).
struct UserCertificate {
  std::string name, role;
  std::string key_pem;  ///< made on this machine; never sent anywhere
  std::string certificate_pem;
  std::string ca_pem;  ///< the CA certificate that verifies the manager
  std::uint64_t serial = 0;
  std::int64_t not_after = 0;  ///< Unix seconds
};

/// The manager's administrative API, one member function per action (so it grows with the API
/// beyond the usual size of a class here). Credentials: AdminClientSettings::token, or a user's
/// client certificate in http.cert_file/key_file (with no token).
class AdminClient {
 public:
  explicit AdminClient(AdminClientSettings settings);

  std::vector<Host> list_hosts();
  std::vector<PackageSummary> list_packages();
  Manifest show_package(const std::string& name, const std::string& version);
  /// Packages `spec` into a temporary chunk store and uploads what the manager lacks.
  /// `progress(done, total)` is called after each chunk.
  UploadResult upload_package(const PackageSpec& spec,
                              const std::function<void(std::size_t, std::size_t)>& progress = {});
  Job create_install_job(const std::string& name, const std::string& version,
                         const std::vector<std::string>& destinations);
  /// Any job type: install (agents), transfer-to-relay or delete-package (relays).
  Job create_job(JobType type, const std::string& name, const std::string& version,
                 const std::vector<std::string>& destinations);
  /// A job with everything set: destinations may mix host keys, "group:NAME" (host group),
  /// "id:NAME" (ID group: a standing job) and "relay:KEY" (every host below a relay); schedule
  /// and rollout as in `spec`.
  Job create_job(const Job& spec);
  /// Failed entries of the job get a new attempt; returns how many.
  std::int64_t retry_job(std::int64_t job_id);
  /// Ends split distribution for the job: the rest travels unsplit. Returns its open entries.
  std::int64_t complete_now(std::int64_t job_id);
  /// Suspends (or resumes) the transfers of a job (job_id ≠ 0) or of every host below a relay
  /// (by key or host id). Returns how many entries changed.
  std::int64_t suspend_transfers(std::int64_t job_id, const std::string& relay, bool suspend);
  /// Host groups: named sets of hosts (by the manager's key mode or host id).
  void create_host_group(const std::string& name, const std::vector<std::string>& hosts,
                         const std::string& description = {});
  /// ID groups owned by the server this client talks to; `password` empty: none.
  IdGroup create_id_group(const std::string& name, const std::string& password = {},
                          const JoinPolicy& policy = {}, const std::string& description = {});
  IdGroup show_id_group(const std::string& name);
  /// Adds and removes members of a host group (id_group false) or an ID group (true).
  void change_members(bool id_group, const std::string& name, const std::vector<std::string>& add,
                      const std::vector<std::string>& remove = {});
  /// Approves hosts waiting for approval (by the manager's key mode or host id); returns how many.
  int approve_hosts(const std::vector<std::string>& keys);
  std::vector<JobListing> list_jobs(int limit = 100);
  JobDetails show_job(std::int64_t job_id);
  /// Returns the number of entries cancelled.
  std::int64_t cancel_job(std::int64_t job_id);

  /// A host's latest inventory; `host` is a key in the manager's key mode or a host id. Throws
  /// Error(not_found) when the host is unknown or has not reported yet.
  HostInventory inventory(const std::string& host);
  /// Host ids whose latest inventory matches `query` (see parse_inventory_query), by host name.
  std::vector<std::string> query_inventory(const std::string& query);

  /// Events from the manager's outbox, oldest first: those after `after`, or the newest `limit`
  /// when `after` < 0. `types` ("job.*,entry.failed") and `min_severity` filter.
  std::vector<Event> events(std::int64_t after = -1, int limit = 100, const std::string& types = {},
                            Severity min_severity = Severity::info);
  /// Follows the live event stream (GET /v1/events/stream): `on_event` gets each event after
  /// `after` (< 0: from now on) until it returns false. A broken connection (the manager
  /// restarting or failing over) is resumed from the last event received; throws
  /// Error(unavailable) when the manager stays unreachable for `give_up_seconds`.
  void follow_events(std::int64_t after, const std::string& types, Severity min_severity,
                     const std::function<bool(const Event&)>& on_event, int give_up_seconds = 60);
  /// Makes a key here and has the manager issue a client certificate for the account `name` (an
  /// administrator may for anyone, a user for itself); it replaces the account's previous one.
  UserCertificate issue_user_certificate(const std::string& name, int days = 90);

  /// The publisher keys the tree trusts (docs/SECURITY.md, "Signed packages").
  PublisherList publishers();
  /// Trusts a public key under `name`; returns its id. Agents learn it at their next poll.
  std::string trust_publisher(const std::string& name, const std::string& public_pem);
  /// Revokes a trusted key (by id or name) for good; returns its id.
  std::string revoke_publisher(const std::string& id_or_name);

  /// The audit trail of administrative actions, newest first.
  std::vector<AuditRecord> audit(int limit = 50, std::int64_t before_id = 0);

  /// Raw call returning the parsed response body as JSON text; throws Error with the server's
  /// message (and its kind from the status) for any non-2xx answer.
  std::string call(std::string_view method, std::string_view target, std::string_view body = {},
                   std::string_view content_type = "application/json");

 private:
  void upload_chunks(const ChunkSpool& store, const std::vector<std::string>& digests,
                     const std::function<void(std::size_t, std::size_t)>& progress, UploadResult& result);

  AdminClientSettings settings_;
  HttpClient http_;
};

}  // namespace distrib
