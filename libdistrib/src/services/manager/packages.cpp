// Packages as the packager uploads them: missing chunks, chunk uploads, registration, list and details.
#include "services/manager/packages.h"

#include "services/manager/publishers.h"

namespace distrib::manager {

void Packages::register_routes(Router& t) {
  t.add(Route{"POST", "/v1/chunks/missing", Access::operate, bind(this, &Packages::chunks_missing)});
  // One compressed chunk (zstd never grows data by more than a little).
  t.add(Route{"PUT", "/v1/chunks/{digest}", Access::operate, bind(this, &Packages::chunk_upload),
              kMaxChunkSize + 64 * 1024});
  t.add(Route{"GET", "/v1/packages", Access::view, bind(this, &Packages::package_list)});
  t.add(Route{"POST", "/v1/packages", Access::operate, bind(this, &Packages::package_register)});
  t.add(Route{"GET", "/v1/packages/{name}/{version}", Access::view, bind(this, &Packages::package_show)});
}

void Packages::chunks_missing(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto digests = json::get_string_array(json::parse_object(req.body), "digests");
  for (const auto& d : digests)
    if (!is_sha256_hex(d)) throw Error(ErrorKind::invalid_argument, "\"" + d + "\" is not a chunk digest");
  return ctx_.blocking(std::move(r), [this, digests] {
    bj::array missing;
    std::set<std::string> seen;
    for (const auto& d : digests)
      if (seen.insert(d).second && !ctx_.chunks->contains(d)) missing.emplace_back(d);
    return json_response(200, bj::object{{"missing", std::move(missing)}});
  });
}

void Packages::chunk_upload(HttpRequest&& req, Responder& r, const PathSegments& p) {
  const auto digest = p[2];
  if (!is_sha256_hex(digest))
    throw Error(ErrorKind::invalid_argument, "\"" + digest + "\" is not a chunk digest");
  if (req.content_type != "application/zstd")
    throw Error(ErrorKind::invalid_argument,
                "chunk uploads must be application/zstd, not \"" + req.content_type + "\"");
  return ctx_.blocking(std::move(r), [this, digest, body = std::move(req.body)] {
    ctx_.chunks->put_compressed(digest, body, kMaxChunkSize);
    return json_response(201, bj::object{{"digest", digest}});
  });
}

void Packages::package_list(HttpRequest&&, Responder& r, const PathSegments&) {
  return ctx_.blocking(std::move(r), [this] {
    bj::array arr;
    for (const auto& s : ctx_.store->list_packages()) arr.push_back(json::to_json(s));
    return json_response(200, bj::object{{"packages", std::move(arr)}});
  });
}

void Packages::package_register(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  Manifest manifest = json::manifest_from_json_object(json::parse_object(req.body));
  validate_manifest(manifest);
  Publishers::check_upload(ctx_, manifest);
  return ctx_.blocking(std::move(r), [this, manifest]() mutable {
    if (const auto held = ctx_.store->find_package(manifest.name, manifest.version);
        held && held->payload_digest == manifest.payload_digest && held->signature != manifest.signature)
      throw Error(ErrorKind::conflict,
                  "package \"" + manifest.name + "\" " + manifest.version + " is registered already " +
                      (held->signature.empty() ? "unsigned" : "signed by " + held->signed_by) +
                      "; packages are immutable: register the signed package as a new version");
    std::size_t missing = 0;
    for (const auto& c : manifest.chunks)
      if (!ctx_.chunks->contains(c.digest)) ++missing;
    if (missing)
      throw Error(ErrorKind::conflict, "package \"" + manifest.name + "\" " + manifest.version + ": " +
                                           std::to_string(missing) + " chunk(s) have not been uploaded");
    if (!manifest.created_at) manifest.created_at = fs::now_unix();
    const bool created = ctx_.store->insert_package(manifest);
    if (created) spdlog::info("package {} {} registered", manifest.name, manifest.version);
    return json_response(created ? 201 : 200,
                         bj::object{{"created", created}, {"package", json::to_json(manifest)}});
  });
}

void Packages::package_show(HttpRequest&&, Responder& r, const PathSegments& p) {
  return ctx_.blocking(std::move(r), [this, name = p[2], version = p[3]] {
    auto m = ctx_.store->find_package(name, version);
    if (!m) throw Error(ErrorKind::not_found, "package \"" + name + "\" " + version + " does not exist");
    return json_response(200, json::to_json(*m));
  });
}

}  // namespace distrib::manager
