#pragma once
// The seam between a top manager and a relay: what the tier above offers. A top manager has no
// tier above (TopOfTree: manifests from its own store, nothing reported or forwarded); a relay
// (RelayUplink, relay_uplink.h) reports contacts, hosts and entry states to its parent, pulls
// manifests and chunks from it and forwards what the parent owns (user inventory, inventory
// reports, collected files, joins of ID groups kept above). Facilities call the seam instead of
// asking which kind of manager they are in.
#include <distrib/content/packager.h>
#include <distrib/net/http.h>

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace distrib {
class UpstreamFetcher;
}

namespace distrib::manager {

struct Context;

class Uplink {
 public:
  virtual ~Uplink() = default;

  /// Is there a tier above (this manager is a relay)?
  virtual bool has_parent() const noexcept = 0;
  /// A host was in contact / these hosts were in contact at these times: told upward with the
  /// next sync.
  virtual void note_contact(const std::string& host_id) = 0;
  virtual void note_contacts(const std::vector<std::pair<std::string, std::int64_t>>& seen) = 0;
  /// Something changed that the parent should hear about: sync soon.
  virtual void notify_sync() = 0;
  /// A package's manifest: from the store, or at a relay fetched from the parent and recorded
  /// when missing. `served`: it is being handed to a host below (marks the package used).
  virtual std::optional<Manifest> manifest(const std::string& name, const std::string& version,
                                           bool served) = 0;
  /// Where chunks missing from the chunk store come from: the parent at a relay; none at the top.
  virtual UpstreamFetcher* chunk_source() noexcept = 0;
  /// Chunks arrived in the cache (a relay checks its cache limit).
  virtual void content_arrived() = 0;
  /// Passes a request to the parent at `target` and returns its answer. Throws
  /// Error(unavailable) when the parent cannot be reached; Error(internal) at the top.
  virtual HttpResponse forward(const HttpRequest& req, const std::string& target) = 0;
  /// Sends a JSON request to the parent and returns its JSON answer (see call_parent).
  virtual boost::json::object ask_parent(std::string_view method, const std::string& target,
                                         const boost::json::value& body, int timeout_seconds) = 0;
  /// Before the listener starts: a relay enrols with its parent (blocking until accepted) so
  /// that it has a certificate to serve with. Throws Error(forbidden) when it was rejected.
  virtual void prepare() {}
  virtual void start() {}
  virtual void stop() {}
};

/// The top of the tree: nothing above.
class TopOfTree final : public Uplink {
 public:
  explicit TopOfTree(Context& ctx) : ctx_(ctx) {}
  bool has_parent() const noexcept override { return false; }
  void note_contact(const std::string&) override {}
  void note_contacts(const std::vector<std::pair<std::string, std::int64_t>>&) override {}
  void notify_sync() override {}
  std::optional<Manifest> manifest(const std::string& name, const std::string& version, bool served) override;
  UpstreamFetcher* chunk_source() noexcept override { return nullptr; }
  void content_arrived() override {}
  HttpResponse forward(const HttpRequest& req, const std::string& target) override;
  boost::json::object ask_parent(std::string_view method, const std::string& target,
                                 const boost::json::value& body, int timeout_seconds) override;

 private:
  Context& ctx_;
};

/// Answers `req` with the parent's answer to the same request, off the network thread.
void pass_up(Context& ctx, Uplink& uplink, HttpRequest&& req, Responder& r);

}  // namespace distrib::manager
