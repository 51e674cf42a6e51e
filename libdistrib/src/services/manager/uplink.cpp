// The top of the tree: manifests come from this manager's own store; nothing goes upward.
#include "services/manager/uplink.h"

#include <distrib/error.h>

#include "services/manager/context.h"

namespace distrib::manager {

std::optional<Manifest> TopOfTree::manifest(const std::string& name, const std::string& version, bool) {
  return ctx_.store->find_package(name, version);
}

HttpResponse TopOfTree::forward(const HttpRequest&, const std::string& target) {
  throw Error(ErrorKind::internal,
              "no parent to pass " + target + " to: this manager is the top of the tree");
}

boost::json::object TopOfTree::ask_parent(std::string_view, const std::string& target,
                                          const boost::json::value&, int) {
  throw Error(ErrorKind::internal, "no parent to ask " + target + ": this manager is the top of the tree");
}

void pass_up(Context& ctx, Uplink& uplink, HttpRequest&& req, Responder& r) {
  auto shared = std::make_shared<HttpRequest>(std::move(req));
  ctx.blocking(std::move(r), [&uplink, shared] { return uplink.forward(*shared, shared->target); });
}

}  // namespace distrib::manager
