#pragma once
// An HttpClient that speaks for a test host (harness.h: enrol_test_host).
#include "harness.h"

#include <distrib/net/http.h>

namespace distrib::test {

inline HttpClientSettings client_settings(const TestHost& h, const std::string& url) {
  return {url, h.ca_file, "", 5, 10, h.cert_file, h.key_file};
}

}  // namespace distrib::test
