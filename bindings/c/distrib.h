/* distrib C API: a stable ABI over libdistrib.
 *
 * Every function returns 0 (or a non-negative value) on success and a negative distrib_status on
 * failure, with a message written to `err` (always NUL-terminated, truncated to `errlen`). No
 * function keeps pointers it was given. Thread-safe except that one distrib_client must not be
 * used from two threads at once. */
#ifndef DISTRIB_C_API_H
#define DISTRIB_C_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum distrib_status {
  DISTRIB_OK = 0,
  DISTRIB_E_INVALID = -1, /* bad argument or input */
  DISTRIB_E_NOT_FOUND = -2,
  DISTRIB_E_CONFLICT = -3,
  DISTRIB_E_UNAUTHORIZED = -4, /* missing or wrong credentials, or a role too low for the action */
  DISTRIB_E_UNAVAILABLE = -5,  /* the manager cannot be reached; retrying may work */
  DISTRIB_E_INTEGRITY = -6,
  DISTRIB_E_INTERNAL = -7,
  DISTRIB_E_NO_SPACE = -8 /* the manager has no space left to store it; nothing was changed */
} distrib_status;

/* Library version, e.g. "0.1.0". */
const char* distrib_version(void);

/* Packages `dir` into content-addressed chunks under `chunk_dir` (created when missing) and
 * writes the 64-character payload digest plus NUL into `digest_out` (65 bytes). */
int distrib_package_create(const char* dir, const char* name, const char* version,
                           const char* install_command, const char* chunk_dir, char* digest_out, char* err,
                           size_t errlen);

typedef struct distrib_client distrib_client;

/* Opens a client for the manager's admin API. `ca_file` may be NULL. Returns NULL on failure. */
distrib_client* distrib_client_open(const char* url, const char* token, const char* ca_file, char* err,
                                    size_t errlen);
/* The same with a user's client certificate and key (PEM files, `distribctl user certificate`)
 * instead of a token (`token` NULL), or both NULL for none. */
distrib_client* distrib_client_open_tls(const char* url, const char* token, const char* ca_file,
                                        const char* cert_file, const char* key_file, char* err,
                                        size_t errlen);
void distrib_client_close(distrib_client* client);

/* Packages `dir` and uploads it (only missing chunks travel). */
int distrib_client_upload_package(distrib_client* client, const char* dir, const char* name,
                                  const char* version, const char* install_command, char* err, size_t errlen);

/* Creates an install job; returns the job id (> 0) or a negative distrib_status. Destinations
   are host keys (the manager's key mode, or host ids), "group:NAME" (host group), "id:NAME"
   (ID group: a standing job, later members receive it too) or "relay:NAME" (every host below a
   relay). */
int64_t distrib_client_create_install_job(distrib_client* client, const char* name, const char* version,
                                          const char* const* destinations, size_t destination_count,
                                          char* err, size_t errlen);

/* Creates a job of any type: "install" or "uninstall" (agents), "transfer-to-relay" or
   "delete-package" (relays). Returns the job id (> 0) or a negative distrib_status; an unknown type is
   DISTRIB_E_INVALID with the known types in `err`. */
int64_t distrib_client_create_job(distrib_client* client, const char* type, const char* name,
                                  const char* version, const char* const* destinations,
                                  size_t destination_count, char* err, size_t errlen);

typedef struct distrib_job_status {
  int64_t total;
  int64_t done;      /* entries in a final state */
  int64_t succeeded; /* succeeded, or not applicable (the package's check command found the host
                        satisfied it already) */
  int64_t failed;
  int64_t cancelled;
} distrib_job_status;

int distrib_client_job_status(distrib_client* client, int64_t job_id, distrib_job_status* out, char* err,
                              size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
