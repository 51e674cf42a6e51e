#include <distrib/error.h>
#include <distrib/model/package.h>

#include "model/json_codec.h"

#include <map>
#include <vector>

namespace distrib {

namespace {
bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool valid_token(std::string_view s, std::size_t max, std::string_view extra) {
  if (s.empty() || s.size() > max || !is_alnum(s.front())) return false;
  for (char c : s)
    if (!is_alnum(c) && extra.find(c) == std::string_view::npos) return false;
  return true;
}
std::vector<std::string_view> split_path(std::string_view p) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= p.size()) {
    auto end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    parts.push_back(p.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}
}  // namespace

bool is_valid_package_name(std::string_view name) noexcept {
  return valid_token(name, 128, "._+-");
}
bool is_valid_package_version(std::string_view version) noexcept {
  return valid_token(version, 64, "._+~-");
}

void validate_package_identity(std::string_view name, std::string_view version) {
  if (!is_valid_package_name(name))
    throw Error(ErrorKind::invalid_argument,
                "invalid package name \"" + std::string(name) + "\" (letters, digits and ._+- only)");
  if (!is_valid_package_version(version))
    throw Error(ErrorKind::invalid_argument,
                "invalid package version \"" + std::string(version) + "\" (letters, digits and ._+~- only)");
}

bool is_safe_relative_path(std::string_view path) noexcept {
  if (path.empty() || path.front() == '/') return false;
  if (path.find('\0') != std::string_view::npos || path.find('\\') != std::string_view::npos) return false;
  // A trailing slash (directories in tar) is allowed.
  if (path.back() == '/') path.remove_suffix(1);
  for (auto part : split_path(path))
    if (part.empty() || part == "." || part == "..") return false;
  return true;
}

bool is_contained_symlink(std::string_view link_path, std::string_view target) noexcept {
  if (target.empty() || target.front() == '/' || !is_safe_relative_path(link_path)) return false;
  // Depth of the directory holding the link, then walk the target's components.
  long depth = static_cast<long>(split_path(link_path).size()) - 1;
  for (auto part : split_path(target)) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (--depth < 0) return false;
    } else {
      ++depth;
    }
  }
  return true;
}

namespace {
using LinkMap = std::map<std::string, std::string, std::less<>>;

std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += '/';
    out += p;
  }
  return out;
}

// Walks `target` from `dir` (components below the root), following the tree's links; `dir` ends
// as the place it resolves to. False when the walk leaves the root or follows more than 40 links.
bool walk(const LinkMap& links, std::vector<std::string>& dir, std::string_view target, int& hops) {
  if (target.empty() || target.front() == '/') return false;
  for (auto part : split_path(target)) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (dir.empty()) return false;
      dir.pop_back();
      continue;
    }
    dir.emplace_back(part);
    const auto link = links.find(joined(dir));
    if (link == links.end()) continue;
    if (++hops > 40) return false;
    dir.pop_back();  // a link's target is relative to the directory holding it
    if (!walk(links, dir, link->second, hops)) return false;
  }
  return true;
}
}  // namespace

std::string first_escaping_symlink(const std::vector<std::pair<std::string, std::string>>& links) {
  LinkMap map;
  for (const auto& [path, target] : links) {
    auto p = path;
    while (!p.empty() && p.back() == '/') p.pop_back();
    map.emplace(std::move(p), target);
  }
  for (const auto& [path, target] : map) {
    if (!is_safe_relative_path(path)) return path;
    std::vector<std::string> dir;
    for (auto part : split_path(path)) dir.emplace_back(part);
    dir.pop_back();
    int hops = 0;
    if (!walk(map, dir, target, hops)) return path;
  }
  return {};
}

bool is_sha256_hex(std::string_view text) noexcept {
  if (text.size() != 64) return false;
  for (char c : text)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

void validate_manifest(const Manifest& m) {
  auto fail = [&](const std::string& what) {
    throw Error(ErrorKind::invalid_argument, "package \"" + m.name + "\" " + m.version + ": " + what);
  };
  validate_package_identity(m.name, m.version);
  if (m.format != "tar") fail("unsupported payload format \"" + m.format + "\"");
  if (!is_sha256_hex(m.payload_digest)) fail("payload digest is not a SHA-256 hex string");
  std::uint64_t total = 0;
  for (const auto& c : m.chunks) {
    if (!is_sha256_hex(c.digest)) fail("chunk digest \"" + c.digest + "\" is not SHA-256 hex");
    if (c.size == 0 || c.size > 16 * 1024 * 1024) fail("chunk " + c.digest + " has a bad size");
    total += c.size;
  }
  if (total != m.payload_size) fail("chunk sizes do not add up to the payload size");
  std::vector<std::pair<std::string, std::string>> links;
  for (const auto& f : m.files) {
    if (!is_safe_relative_path(f.path)) fail("unsafe path \"" + f.path + "\"");
    if (f.type == "symlink") links.emplace_back(f.path, f.link_target);
    if (f.type == "symlink" && !is_contained_symlink(f.path, f.link_target))
      fail("symlink \"" + f.path + "\" points outside the package");
    if (f.type != "file" && f.type != "dir" && f.type != "symlink")
      fail("entry \"" + f.path + "\" has unknown type \"" + f.type + "\"");
  }
  if (const auto bad = first_escaping_symlink(links); !bad.empty())
    fail("symlink \"" + bad + "\" resolves outside the package (or loops) through other links");
  if (!m.install.directory.empty() && m.install.directory.front() != '/')
    fail("install directory must be an absolute path");
  if (m.install.timeout_seconds == 0) fail("install timeout must be positive");
}

std::string manifest_to_json(const Manifest& manifest) {
  return boost::json::serialize(json::to_json(manifest));
}

Manifest manifest_from_json(std::string_view text) {
  return json::manifest_from_json_object(json::parse_object(text));
}

}  // namespace distrib
