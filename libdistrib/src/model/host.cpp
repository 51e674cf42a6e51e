#include <distrib/error.h>
#include <distrib/model/host.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <random>
#include <set>

namespace distrib {

std::string_view to_string(HostKeyMode mode) noexcept {
  switch (mode) {
    case HostKeyMode::name:
      return "name";
    case HostKeyMode::ip:
      return "ip";
    case HostKeyMode::host_id:
      return "host-id";
  }
  return "?";
}

HostKeyMode parse_host_key_mode(std::string_view text) {
  if (text == "name") return HostKeyMode::name;
  if (text == "ip") return HostKeyMode::ip;
  if (text == "host-id") return HostKeyMode::host_id;
  throw Error(ErrorKind::invalid_argument,
              "unknown host key mode \"" + std::string(text) + "\" (expected name, ip or host-id)");
}

std::string_view to_string(HostRole role) noexcept {
  switch (role) {
    case HostRole::agent:
      return "agent";
    case HostRole::relay:
      return "relay";
    case HostRole::manager:
      return "manager";
  }
  return "?";
}

HostRole parse_host_role(std::string_view text) {
  if (text == "agent") return HostRole::agent;
  if (text == "relay") return HostRole::relay;
  if (text == "manager") return HostRole::manager;
  throw Error(ErrorKind::invalid_argument,
              "unknown role \"" + std::string(text) + "\" (expected manager, relay or agent)");
}

namespace {
void check_text(const char* field, const std::string& value, std::size_t max, bool required) {
  if (required && value.empty())
    throw Error(ErrorKind::invalid_argument, std::string("host ") + field + " is empty");
  if (value.size() > max)
    throw Error(ErrorKind::invalid_argument, std::string("host ") + field + " is longer than " +
                                                 std::to_string(max) + " characters (" +
                                                 std::to_string(value.size()) + ")");
  for (const char c : value)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      throw Error(ErrorKind::invalid_argument, std::string("host ") + field + " holds control characters");
}
}  // namespace

void validate_host_fields(const Host& host) {
  if (!is_valid_host_id(host.host_id) || host.host_id == "00000000-0000-0000-0000-000000000000")
    throw Error(ErrorKind::invalid_argument,
                "host_id \"" + host.host_id.substr(0, 64) + "\" is not a host UUID (lower-case, not nil)");
  check_text("name", host.name, kMaxHostName, true);
  if (host.addresses.size() > kMaxAddresses)
    throw Error(ErrorKind::invalid_argument, "a host has at most " + std::to_string(kMaxAddresses) +
                                                 " addresses, not " + std::to_string(host.addresses.size()));
  for (const auto& a : host.addresses) check_text("address", a, kMaxAddress, true);
  check_text("os", host.os, kMaxOs, false);
  check_text("agent_version", host.agent_version, kMaxAgentVersion, false);
  if (host.role != HostRole::agent && host.role != HostRole::relay)
    throw Error(ErrorKind::invalid_argument, "a host registers as an agent or a relay, not as a manager");
}

std::vector<std::string> parent_path(const std::vector<Host>& hosts, const std::string& host_id) {
  std::map<std::string, const Host*> by_id;
  for (const auto& h : hosts) by_id[h.host_id] = &h;
  std::vector<std::string> path;
  std::set<std::string> seen;
  std::string at = host_id;
  while (!at.empty() && seen.insert(at).second) {
    path.push_back(at);
    auto it = by_id.find(at);
    if (it == by_id.end()) break;
    at = it->second->parent;
  }
  return path;
}

bool is_valid_host_id(std::string_view text) noexcept {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

std::string make_host_id() {
  std::random_device rd;
  std::uniform_int_distribution<unsigned> byte(0, 255);
  unsigned char b[16];
  for (auto& x : b) x = static_cast<unsigned char>(byte(rd));
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);  // RFC 4122 variant
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 0x0F]);
  }
  return out;
}

namespace {
std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Every key a host answers to in `mode`, normalised for comparison.
std::vector<std::string> keys_of(const Host& host, HostKeyMode mode) {
  switch (mode) {
    case HostKeyMode::name:
      return {lower(host.name)};
    case HostKeyMode::ip:
      return host.addresses;
    case HostKeyMode::host_id:
      return {lower(host.host_id)};
  }
  return {};
}

}  // namespace

std::string normalise_host_key(HostKeyMode mode, std::string_view key) {
  return mode == HostKeyMode::ip ? std::string(key) : lower(key);
}

bool host_matches(const Host& host, HostKeyMode mode, std::string_view key) {
  const auto wanted = normalise_host_key(mode, key);
  const auto keys = keys_of(host, mode);
  return std::find(keys.begin(), keys.end(), wanted) != keys.end();
}

DestinationResolution resolve_destinations(const std::vector<Host>& hosts, HostKeyMode mode,
                                           const std::vector<std::string>& keys) {
  std::multimap<std::string, const Host*> index;
  for (const auto& h : hosts)
    for (auto& k : keys_of(h, mode)) index.emplace(std::move(k), &h);

  DestinationResolution out;
  std::set<std::string> seen;
  for (const auto& key : keys) {
    auto [first, last] = index.equal_range(normalise_host_key(mode, key));
    const auto n = std::distance(first, last);
    if (n == 0) {
      out.unknown.push_back(key);
    } else if (n > 1) {
      out.ambiguous.push_back(key);
    } else if (seen.insert(first->second->host_id).second) {
      out.host_ids.push_back(first->second->host_id);
    }
  }
  return out;
}

std::vector<std::string> duplicate_keys(const std::vector<Host>& hosts, HostKeyMode mode) {
  std::map<std::string, int> counts;
  for (const auto& h : hosts)
    for (auto& k : keys_of(h, mode)) ++counts[k];
  std::vector<std::string> out;
  for (const auto& [k, n] : counts)
    if (n > 1) out.push_back(k);
  return out;
}

}  // namespace distrib
