#pragma once
// The host side of enrolment, shared by agents and relays: which CA to trust (an enrolment
// bundle, a CA file, or the CA a parent shows when its fingerprint is the one given), the
// enrolment request itself (accepted at once with a token, otherwise pending until an
// administrator decides) and the renewal of the certificate before it expires.
#include <distrib/net/http.h>

#include "security/host_identity.h"

#include <filesystem>
#include <string>
#include <vector>

namespace distrib {

struct EnrolSettings {
  std::filesystem::path bundle;  ///< distribctl enrol-bundle: servers, CA, optional token
  std::string token;             ///< distrib-enrol-ID-SECRET (overrides the bundle's)
  std::string ca_file;           ///< a CA certificate given as a file
  std::string ca_fingerprint;    ///< "sha256:HEX": trust the CA a parent shows when it matches
  std::string name;              ///< the host name shown to administrators
  /// A relay's own DNS names and IP addresses: its certificate then serves them to its subtree.
  std::vector<std::string> names, addresses;
};

/// Makes `id` trust a CA, when it does not yet: the bundle's (checked against ca_fingerprint when
/// both are given), ca_file's, or the one GET /v1/ca on the first of `parents` answers when its
/// fingerprint is ca_fingerprint. Returns the parents to use: `parents`, or the bundle's when
/// `parents` is empty. Throws Error(invalid_argument) when nothing says which CA to trust and
/// Error(forbidden) when a fingerprint does not match.
std::vector<std::string> establish_trust(security::HostIdentity& id, const EnrolSettings& s,
                                         std::vector<std::string> parents, const std::string& bind_address);

/// The token to enrol with: the setting's, else the bundle's, else none.
std::string enrol_token(const EnrolSettings& s);

/// One enrolment request through `client` (a parent): true when the certificate came back and
/// is stored, false while the request waits for an administrator. Throws Error(forbidden) when
/// it was rejected or the host's certificate revoked (with the manager's words), other Errors
/// when the parent cannot be reached.
bool enrol_once(security::HostIdentity& id, const EnrolSettings& s, HttpClient& client);

/// Renews the certificate through `client` (which presents the current one) with a request for
/// the same key; stores the new certificate. Throws Error as enrol_once.
void renew_certificate(security::HostIdentity& id, const EnrolSettings& s, HttpClient& client);

}  // namespace distrib
