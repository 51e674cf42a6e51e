#pragma once
// The manager's certificate authority and server certificate on disk (STATE_DIR/pki/): made at
// the first start, reused after. The CA's key never leaves the directory (the keys are mode 0600;
// the certificates are public); agents, relays and administrators trust the CA certificate (ca.crt), which
// `distribctl` and the enrolment bundle hand out.
#include "security/pki.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace distrib::security {

struct TlsFiles {
  std::filesystem::path ca_cert, ca_key, server_cert, server_key;
  std::filesystem::path signer_cert, signer_key;  ///< signs the orders agents carry out
};

/// The CA (valid 10 years) and a server certificate (valid 1 year) for `names` (DNS names) and
/// `addresses` (IP addresses) under `dir`, made when missing. The server certificate is issued
/// again when it expires within 30 days, does not chain to the CA, or does not cover every name
/// and address asked for. The order-signing key and certificate (security/orders.h) likewise. Throws Error
/// naming the file it cannot read or write.
TlsFiles ensure_manager_tls(const std::filesystem::path& dir, const std::vector<std::string>& names,
                            const std::vector<std::string>& addresses);

/// The CA that issues host certificates, read from its files.
pki::Authority load_authority(const TlsFiles& files);

/// A random positive 63-bit certificate serial.
std::uint64_t random_serial();

/// Splits server names given by an operator into DNS names and IP addresses.
void split_names(const std::vector<std::string>& given, std::vector<std::string>& names,
                 std::vector<std::string>& addresses);

}  // namespace distrib::security
