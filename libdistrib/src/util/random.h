#pragma once
// Random hex strings from OpenSSL's generator (tokens, salts).
#include <distrib/error.h>

#include "util/hex.h"

#include <openssl/rand.h>

#include <string>
#include <vector>

namespace distrib::util {

/// `bytes` random bytes as lower-case hex; throws Error naming `what` if the generator fails.
inline std::string random_hex(std::size_t bytes, const char* what) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1)
    throw Error(std::string("cannot generate a random ") + what);
  return to_hex(raw.data(), raw.size());
}

}  // namespace distrib::util
