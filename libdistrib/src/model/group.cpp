#include <distrib/content/digest.h>
#include <distrib/error.h>
#include <distrib/model/group.h>

#include "util/random.h"

#include <openssl/crypto.h>

#include <arpa/inet.h>
#include <cctype>
#include <cstring>

namespace distrib {

void validate_group_name(std::string_view name, std::string_view what) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorKind::invalid_argument,
                 std::string(what) + " name \"" + std::string(name) + "\" " + why);
  };
  if (name.empty() || name.size() > 64) throw bad("must be 1 to 64 characters");
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) throw bad("must start with a letter or digit");
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_')
      throw bad("may only hold letters, digits, '.', '-' and '_'");
}

void validate_description(std::string_view text, std::string_view what) {
  if (text.size() > kMaxDescriptionLength)
    throw Error(ErrorKind::invalid_argument, std::string(what) + " description is longer than " +
                                                 std::to_string(kMaxDescriptionLength) + " bytes (" +
                                                 std::to_string(text.size()) + ")");
  for (const char ch : text)
    if (const auto c = static_cast<unsigned char>(ch); (c < 0x20 && c != '\t') || c == 0x7f)
      throw Error(ErrorKind::invalid_argument,
                  std::string(what) + " description holds control characters; write it on one line");
}

std::string_view to_string(JoinMethod how) noexcept {
  switch (how) {
    case JoinMethod::config:
      return "config";
    case JoinMethod::command:
      return "command";
    case JoinMethod::admin:
      return "admin";
    case JoinMethod::policy:
      return "policy";
  }
  return "?";
}

JoinMethod parse_join_method(std::string_view text) {
  for (auto m : {JoinMethod::config, JoinMethod::command, JoinMethod::admin, JoinMethod::policy})
    if (to_string(m) == text) return m;
  throw Error(ErrorKind::invalid_argument, "unknown join method \"" + std::string(text) +
                                               "\" (expected config, command, admin or policy)");
}

namespace {

char fold(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool glob_at(std::string_view p, std::string_view t) {
  std::size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
      continue;
    }
    if (pi < p.size() && p[pi] == '[') {
      // Character class: [abc], [a-z], [!x].
      std::size_t j = pi + 1;
      bool negate = j < p.size() && (p[j] == '!' || p[j] == '^');
      if (negate) ++j;
      bool matched = false;
      const std::size_t first = j;
      while (j < p.size() && (p[j] != ']' || j == first)) {
        if (j + 2 < p.size() && p[j + 1] == '-' && p[j + 2] != ']') {
          if (fold(t[ti]) >= fold(p[j]) && fold(t[ti]) <= fold(p[j + 2])) matched = true;
          j += 3;
        } else {
          if (fold(t[ti]) == fold(p[j])) matched = true;
          ++j;
        }
      }
      if (j < p.size() && matched != negate) {
        pi = j + 1;
        ++ti;
        continue;
      }
    } else if (pi < p.size() && (p[pi] == '?' || fold(p[pi]) == fold(t[ti]))) {
      ++pi;
      ++ti;
      continue;
    }
    if (star == std::string_view::npos) return false;
    pi = star + 1;
    ti = ++mark;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

// Parses "addr" or "addr/bits" into bytes and a prefix length.
bool parse_cidr(std::string_view text, unsigned char (&bytes)[16], int& family, int& bits) {
  std::string s(text);
  bits = -1;
  if (auto slash = s.find('/'); slash != std::string::npos) {
    const auto b = s.substr(slash + 1);
    if (b.empty() || b.size() > 3 || b.find_first_not_of("0123456789") != std::string::npos) return false;
    bits = std::stoi(b);
    s.resize(slash);
  }
  std::memset(bytes, 0, 16);
  if (::inet_pton(AF_INET, s.c_str(), bytes) == 1) {
    family = AF_INET;
    if (bits < 0) bits = 32;
    return bits <= 32;
  }
  if (::inet_pton(AF_INET6, s.c_str(), bytes) == 1) {
    family = AF_INET6;
    if (bits < 0) bits = 128;
    return bits <= 128;
  }
  return false;
}

}  // namespace

bool glob_matches(std::string_view pattern, std::string_view text) noexcept {
  return glob_at(pattern, text);
}

bool address_in_range(std::string_view address, std::string_view cidr) noexcept {
  unsigned char a[16], r[16];
  int fa = 0, fr = 0, ba = 0, br = 0;
  if (!parse_cidr(address, a, fa, ba) || !parse_cidr(cidr, r, fr, br) || fa != fr) return false;
  for (int i = 0; i < br; ++i) {
    const unsigned char mask = static_cast<unsigned char>(0x80u >> (i % 8));
    if ((a[i / 8] & mask) != (r[i / 8] & mask)) return false;
  }
  return true;
}

void validate_join_policy(const JoinPolicy& p) {
  if (!p.ip_range.empty()) {
    unsigned char b[16];
    int f = 0, bits = 0;
    if (!parse_cidr(p.ip_range, b, f, bits))
      throw Error(ErrorKind::invalid_argument, "join policy IP range \"" + p.ip_range +
                                                   "\" is not an address or CIDR range (e.g. 10.1.0.0/16)");
  }
  if (p.name_pattern.size() > 255)
    throw Error(ErrorKind::invalid_argument, "join policy name pattern is longer than 255 characters");
}

bool policy_matches(const JoinPolicy& p, const Host& host) {
  if (!p.name_pattern.empty() && glob_matches(p.name_pattern, host.name)) return true;
  if (!p.ip_range.empty())
    for (const auto& a : host.addresses)
      if (address_in_range(a, p.ip_range)) return true;
  return false;
}

std::string hash_join_password(std::string_view password) {
  const auto salt = util::random_hex(12, "salt");
  return "sha256$" + salt + "$" + sha256_hex(salt + std::string(password));
}

bool check_join_password(std::string_view password, std::string_view hash) {
  if (!hash.starts_with("sha256$")) return false;
  const auto rest = hash.substr(7);
  const auto dollar = rest.find('$');
  if (dollar == std::string_view::npos) return false;
  const std::string salt(rest.substr(0, dollar));
  const auto expected = rest.substr(dollar + 1);
  const auto got = sha256_hex(salt + std::string(password));
  return got.size() == expected.size() && CRYPTO_memcmp(got.data(), expected.data(), got.size()) == 0;
}

}  // namespace distrib
