#include "distrib.h"

#include <distrib/client.h>
#include <distrib/content/packager.h>
#include <distrib/error.h>
#include <distrib/version.h>

#include <cstring>

struct distrib_client {
  distrib::AdminClient client;
};

namespace {

int status_of(distrib::ErrorKind kind) {
  using K = distrib::ErrorKind;
  switch (kind) {
    case K::invalid_argument:
      return DISTRIB_E_INVALID;
    case K::not_found:
      return DISTRIB_E_NOT_FOUND;
    case K::conflict:
      return DISTRIB_E_CONFLICT;
    case K::unauthorized:
    case K::forbidden:
      return DISTRIB_E_UNAUTHORIZED;
    case K::unavailable:
      return DISTRIB_E_UNAVAILABLE;
    case K::integrity:
      return DISTRIB_E_INTEGRITY;
    case K::internal:
      return DISTRIB_E_INTERNAL;
    case K::insufficient_storage:
      return DISTRIB_E_NO_SPACE;
  }
  return DISTRIB_E_INTERNAL;
}

void set_error(char* err, std::size_t errlen, const char* message) {
  if (!err || errlen == 0) return;
  std::strncpy(err, message, errlen - 1);
  err[errlen - 1] = '\0';
}

// Runs `fn`, turning exceptions into a status and message; nothing escapes into C.
template <class Fn>
auto guarded(char* err, std::size_t errlen, Fn&& fn) -> decltype(fn()) {
  set_error(err, errlen, "");
  try {
    return fn();
  } catch (const distrib::Error& e) {
    set_error(err, errlen, e.what());
    return status_of(e.kind());
  } catch (const std::exception& e) {
    set_error(err, errlen, e.what());
    return DISTRIB_E_INTERNAL;
  }
}

std::string str(const char* s) {
  return s ? s : "";
}

}  // namespace

extern "C" {

const char* distrib_version(void) {
  return distrib::version();
}

int distrib_package_create(const char* dir, const char* name, const char* version,
                           const char* install_command, const char* chunk_dir, char* digest_out, char* err,
                           size_t errlen) {
  return guarded(err, errlen, [&]() -> int {
    if (!dir || !name || !version || !chunk_dir || !digest_out)
      throw distrib::Error(distrib::ErrorKind::invalid_argument,
                           "dir, name, version, chunk_dir and digest_out are required");
    distrib::ChunkStore chunks(chunk_dir);
    distrib::PackageSpec spec;
    spec.source_dir = dir;
    spec.name = name;
    spec.version = version;
    spec.install.command = str(install_command);
    const auto m = distrib::create_package(spec, chunks);
    std::memcpy(digest_out, m.payload_digest.c_str(), m.payload_digest.size() + 1);
    return DISTRIB_OK;
  });
}

distrib_client* distrib_client_open(const char* url, const char* token, const char* ca_file, char* err,
                                    size_t errlen) {
  return distrib_client_open_tls(url, token, ca_file, nullptr, nullptr, err, errlen);
}

distrib_client* distrib_client_open_tls(const char* url, const char* token, const char* ca_file,
                                        const char* cert_file, const char* key_file, char* err,
                                        size_t errlen) {
  distrib_client* out = nullptr;
  guarded(err, errlen, [&]() -> int {
    distrib::AdminClientSettings s;
    s.http.base_url = str(url);
    s.http.ca_file = str(ca_file);
    s.http.cert_file = str(cert_file);
    s.http.key_file = str(key_file);
    if (s.http.cert_file.empty() != s.http.key_file.empty())
      throw distrib::Error(distrib::ErrorKind::invalid_argument,
                           "a client certificate needs both its certificate and key files");
    s.token = str(token);
    out = new distrib_client{distrib::AdminClient(s)};
    return DISTRIB_OK;
  });
  return out;
}

void distrib_client_close(distrib_client* client) {
  delete client;
}

int distrib_client_upload_package(distrib_client* client, const char* dir, const char* name,
                                  const char* version, const char* install_command, char* err,
                                  size_t errlen) {
  return guarded(err, errlen, [&]() -> int {
    if (!client || !dir || !name || !version)
      throw distrib::Error(distrib::ErrorKind::invalid_argument,
                           "client, dir, name and version are required");
    distrib::PackageSpec spec;
    spec.source_dir = dir;
    spec.name = name;
    spec.version = version;
    spec.install.command = str(install_command);
    client->client.upload_package(spec);
    return DISTRIB_OK;
  });
}

int64_t distrib_client_create_job(distrib_client* client, const char* type, const char* name,
                                  const char* version, const char* const* destinations,
                                  size_t destination_count, char* err, size_t errlen) {
  return guarded(err, errlen, [&]() -> int64_t {
    if (!client || !type || !name || !version || (!destinations && destination_count))
      throw distrib::Error(distrib::ErrorKind::invalid_argument,
                           "client, type, name, version and destinations are required");
    std::vector<std::string> dests;
    for (size_t i = 0; i < destination_count; ++i) dests.push_back(str(destinations[i]));
    return client->client.create_job(distrib::parse_job_type(type), name, version, dests).id;
  });
}

int64_t distrib_client_create_install_job(distrib_client* client, const char* name, const char* version,
                                          const char* const* destinations, size_t destination_count,
                                          char* err, size_t errlen) {
  return distrib_client_create_job(client, "install", name, version, destinations, destination_count, err,
                                   errlen);
}

int distrib_client_job_status(distrib_client* client, int64_t job_id, distrib_job_status* out, char* err,
                              size_t errlen) {
  return guarded(err, errlen, [&]() -> int {
    if (!client || !out)
      throw distrib::Error(distrib::ErrorKind::invalid_argument, "client and out are required");
    const auto d = client->client.show_job(job_id);
    out->total = d.progress.total;
    out->done = d.progress.final_count;
    out->succeeded = d.progress.count(distrib::EntryState::succeeded) +
                     d.progress.count(distrib::EntryState::not_applicable);
    out->failed = d.progress.count(distrib::EntryState::failed);
    out->cancelled = d.progress.count(distrib::EntryState::cancelled);
    return DISTRIB_OK;
  });
}

}  // extern "C"
