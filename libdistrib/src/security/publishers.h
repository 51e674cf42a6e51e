#pragma once
// Publisher signatures: who may say what runs. A publisher key (Ed25519, made by `distribctl keys
// create`) signs a package's whole manifest (payload digest, files, install command and
// directory, timeout) when it is created; agents carry out only manifests signed by a key they
// trust (policy: required once any key is trusted, or from the start when the agent says so).
//
// The keys an agent trusts come from its configuration (--publisher-key) and from the trusted
// set the top manager keeps (`distribctl keys trust|revoke`): a versioned list of keys and
// revoked key ids, signed by the manager's order-signing key (security/orders.h) and carried
// untouched by relays, in enrolment bundles and in every tier's answers. An agent takes a set
// only when it verifies and its version is newer than the one it holds, so no tier can add a
// key, drop a revocation or roll the set back.
#include <distrib/model/package.h>

#include "security/pki.h"

#include <cstdint>
#include <string>
#include <vector>

namespace distrib::security {

struct PublisherKeyPair {
  std::string private_pem;  ///< PKCS#8
  std::string public_pem;   ///< SubjectPublicKeyInfo
};
/// A new Ed25519 key pair.
PublisherKeyPair make_publisher_key();
/// "ed25519:" and the first 16 hex digits of SHA-256 of the raw public key. Throws
/// Error(invalid_argument) when `public_pem` is not an Ed25519 public key (at most 1 KiB).
std::string publisher_key_id(const std::string& public_pem);
/// The public key of a private one.
std::string publisher_public_key(const std::string& private_pem);

/// What a publisher signs: "distrib-package/1" and the manifest's canonical JSON without its
/// signature.
std::string manifest_statement(const Manifest& m);
/// Sets m.signed_by and m.signature.
void sign_manifest(Manifest& m, const std::string& private_pem);
/// Does the manifest's signature verify with `public_pem`?
bool manifest_signature_valid(const Manifest& m, const std::string& public_pem);

struct PublisherKey {
  std::string id, name, public_pem;
  std::int64_t added = 0;  ///< Unix seconds
};
struct PublisherSet {
  std::int64_t version = 0;  ///< 0: none yet
  std::vector<PublisherKey> keys;
  std::vector<std::string> revoked;  ///< key ids
};
constexpr std::size_t kMaxPublisherKeys = 256;
constexpr std::size_t kMaxRevokedPublishers = 4096;
/// A name for a key: 1-64 of [A-Za-z0-9._-]. Throws Error(invalid_argument).
void validate_publisher_name(const std::string& name);

std::string publisher_set_to_json(const PublisherSet& set);
/// Throws Error(invalid_argument) naming what is malformed or over a limit.
PublisherSet publisher_set_from_json(const std::string& text);

/// The set signed by the manager's order signer: {"statement", "signature", "signer"}.
std::string sign_publishers(const PublisherSet& set, const pki::SigningKey& key, const std::string& cert_pem);
/// The set a signed set states, when its signer chains to `ca_pem` and is the order signer.
/// Throws Error(integrity) naming why not.
PublisherSet verify_publishers(const std::string& signed_set, const std::string& ca_pem, std::int64_t now);

/// The publisher check an agent makes before it fetches a payload: throws Error(integrity)
/// naming why `m` may not run. `required`: unsigned manifests are refused even when no key is
/// trusted.
void check_publisher(const Manifest& m, const std::vector<PublisherKey>& trusted,
                     const std::vector<std::string>& revoked, bool required);

}  // namespace distrib::security
