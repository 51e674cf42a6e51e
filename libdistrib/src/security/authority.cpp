// The manager's CA and server certificate on disk (authority.h).
#include "security/authority.h"

#include <distrib/error.h>

#include "security/pki.h"
#include "util/fs.h"
#include "util/random.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <ctime>

namespace distrib::security {

std::uint64_t random_serial() {
  return std::stoull(util::random_hex(8, "certificate serial"), nullptr, 16) >> 1;  // positive, 63 bits
}

namespace {

void write_private(const std::filesystem::path& p, const std::string& pem) {
  fs::write_file_atomic(p, pem);
  ::chmod(p.c_str(), 0600);
}

bool present(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}

// Does the certificate chain to the CA, live 30 more days and cover every name and address?
bool server_cert_fits(const std::string& ca_pem, const std::string& cert_pem,
                      const std::vector<std::string>& names, const std::vector<std::string>& addresses) {
  try {
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    if (!pki::verify(ca_pem, cert_pem, now + 30LL * 86400).empty()) return false;
    const auto info = pki::inspect_certificate(cert_pem);
    const auto has = [](const std::vector<std::string>& v, const std::string& x) {
      return std::find(v.begin(), v.end(), x) != v.end();
    };
    for (const auto& n : names)
      if (!has(info.names, n)) return false;
    for (const auto& a : addresses)
      if (!has(info.addresses, a)) return false;
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

void split_names(const std::vector<std::string>& given, std::vector<std::string>& names,
                 std::vector<std::string>& addresses) {
  for (const auto& g : given) {
    unsigned char buf[16];
    const bool ip = ::inet_pton(AF_INET, g.c_str(), buf) == 1 || ::inet_pton(AF_INET6, g.c_str(), buf) == 1;
    auto& into = ip ? addresses : names;
    if (!g.empty() && std::find(into.begin(), into.end(), g) == into.end()) into.push_back(g);
  }
}

TlsFiles ensure_manager_tls(const std::filesystem::path& dir, const std::vector<std::string>& names,
                            const std::vector<std::string>& addresses) {
  fs::ensure_writable_dir(dir, "PKI directory");
  ::chmod(dir.c_str(), 0755);  // the CA certificate is public; the keys are 0600
  TlsFiles f{dir / "ca.crt",     dir / "ca.key",     dir / "server.crt",
             dir / "server.key", dir / "signer.crt", dir / "signer.key"};
  // Nodes of a cluster share the directory and may start together: one makes the CA.
  const int lock = ::open((dir / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0) throw Error(ErrorKind::internal, "cannot open " + (dir / ".lock").string());
  ::flock(lock, LOCK_EX);
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};
  pki::Authority ca;
  if (present(f.ca_cert) && present(f.ca_key)) {
    ca.cert_pem = fs::read_file(f.ca_cert);
    ca.key_pem = fs::read_file(f.ca_key);
  } else {
    ca = pki::create_authority("distrib CA " + util::random_hex(4, "CA name"), 3650);
    write_private(f.ca_key, ca.key_pem);
    fs::write_file_atomic(f.ca_cert, ca.cert_pem);
    spdlog::info("certificate authority created in {} (fingerprint {})", dir.string(),
                 pki::inspect_certificate(ca.cert_pem).fingerprint);
  }
  const bool have = present(f.server_cert) && present(f.server_key);
  if (!have || !server_cert_fits(ca.cert_pem, fs::read_file(f.server_cert), names, addresses)) {
    const auto key = have ? fs::read_file(f.server_key) : pki::generate_key();
    const auto cert = pki::issue_server(ca, key, names, addresses, 365, random_serial());
    write_private(f.server_key, key);
    fs::write_file_atomic(f.server_cert, cert);
    spdlog::info("server certificate issued for {}{}{}", fmt::join(names, ", "),
                 names.empty() || addresses.empty() ? "" : ", ", fmt::join(addresses, ", "));
  }
  // The order signer: renewed when it expires within 30 days (agents check it at each order).
  const bool have_signer = present(f.signer_cert) && present(f.signer_key);
  bool signer_ok = false;
  if (have_signer) {
    const auto info = pki::inspect_certificate(fs::read_file(f.signer_cert));
    signer_ok = pki::is_order_signer(info) && info.not_after > fs::now_unix() + 30 * 86400 &&
                pki::verify(ca.cert_pem, fs::read_file(f.signer_cert), fs::now_unix()).empty();
  }
  if (!signer_ok) {
    const auto key = have_signer ? fs::read_file(f.signer_key) : pki::generate_key();
    write_private(f.signer_key, key);
    fs::write_file_atomic(f.signer_cert, pki::issue_signer(ca, key, 365, random_serial()));
    spdlog::info("order-signing certificate issued in {}", dir.string());
  }
  return f;
}

pki::Authority load_authority(const TlsFiles& files) {
  return pki::Authority{fs::read_file(files.ca_cert), fs::read_file(files.ca_key)};
}

}  // namespace distrib::security
