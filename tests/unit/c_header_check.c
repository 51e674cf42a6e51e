/* Compiled as C: the public C header must be valid C and link against distrib_c. */
#include "distrib.h"

#include <stdio.h>
#include <string.h>

int main(void) {
  char err[256];
  char digest[65];
  int rc = distrib_package_create(NULL, "x", "1", NULL, "/tmp", digest, err, sizeof err);
  if (rc != DISTRIB_E_INVALID || strlen(err) == 0) {
    fprintf(stderr, "expected DISTRIB_E_INVALID with a message, got %d\n", rc);
    return 1;
  }
  printf("distrib %s: C API ok (%s)\n", distrib_version(), err);
  return 0;
}
