#include <distrib/content/digest.h>
#include <distrib/error.h>
#include <distrib/model/group.h>
#include <distrib/model/inventory.h>
#include <distrib/model/units.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace distrib {

std::string_view to_string(InventoryScope scope) noexcept {
  switch (scope) {
    case InventoryScope::system:
      return "system";
    case InventoryScope::software:
      return "software";
    case InventoryScope::full:
      return "full";
  }
  return "full";
}

InventoryScope parse_inventory_scope(std::string_view text) {
  if (text == "system") return InventoryScope::system;
  if (text == "software") return InventoryScope::software;
  if (text == "full") return InventoryScope::full;
  throw Error(ErrorKind::invalid_argument,
              "unknown inventory scope \"" + std::string(text) + "\" (known: system, software, full)");
}

bool in_scope(InventoryScope scope, std::string_view key) noexcept {
  switch (scope) {
    case InventoryScope::system:
      return key.starts_with("system.") || key.starts_with("user.");
    case InventoryScope::software:
      return key.starts_with("software.");
    case InventoryScope::full:
      return true;
  }
  return true;
}

bool is_volatile_key(std::string_view key) noexcept {
  return key.ends_with(".free_bytes") || key.ends_with(".available_bytes") || key == "system.uptime_seconds";
}

void validate_inventory_key(std::string_view key) {
  const bool rooted = key.starts_with("system.") || key.starts_with("software.") || key.starts_with("user.");
  const bool clean =
      std::none_of(key.begin(), key.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
  if (!rooted || !clean || key.size() > 255 || key.back() == '.')
    throw Error(ErrorKind::invalid_argument,
                "inventory key \"" + std::string(key.substr(0, 80)) +
                    "\" is malformed (1-255 printable characters under system., software. or user.)");
}

std::string inventory_digest(const InventoryItems& items, InventoryScope scope) {
  Sha256 h;
  for (const auto& [k, v] : items) {
    if (is_volatile_key(k) || !in_scope(scope, k)) continue;
    h.update(k);
    h.update(std::string_view("\0", 1));
    h.update(v);
    h.update(std::string_view("\n", 1));
  }
  return h.finish();
}

std::string_view to_string(InventoryChange::Kind kind) noexcept {
  switch (kind) {
    case InventoryChange::Kind::added:
      return "added";
    case InventoryChange::Kind::removed:
      return "removed";
    case InventoryChange::Kind::changed:
      return "changed";
  }
  return "changed";
}

InventoryChange::Kind parse_inventory_change_kind(std::string_view text) {
  if (text == "added") return InventoryChange::Kind::added;
  if (text == "removed") return InventoryChange::Kind::removed;
  if (text == "changed") return InventoryChange::Kind::changed;
  throw Error(ErrorKind::invalid_argument, "unknown inventory change \"" + std::string(text) + "\"");
}

std::vector<InventoryChange> diff_inventory(const InventoryItems& before, const InventoryItems& after,
                                            InventoryScope scope) {
  std::vector<InventoryChange> out;
  auto b = before.begin();
  auto a = after.begin();
  auto relevant = [&](const std::string& k) { return in_scope(scope, k) && !is_volatile_key(k); };
  while (b != before.end() || a != after.end()) {
    if (a == after.end() || (b != before.end() && b->first < a->first)) {
      if (relevant(b->first)) out.push_back({InventoryChange::Kind::removed, b->first, b->second, {}, 0});
      ++b;
    } else if (b == before.end() || a->first < b->first) {
      if (relevant(a->first)) out.push_back({InventoryChange::Kind::added, a->first, {}, a->second, 0});
      ++a;
    } else {
      if (a->second != b->second && relevant(a->first))
        out.push_back({InventoryChange::Kind::changed, a->first, b->second, a->second, 0});
      ++a;
      ++b;
    }
  }
  return out;
}

// --- versions -------------------------------------------------------------------------------

namespace {

// dpkg's order of a non-digit character: '~' before everything (even the end), letters before
// other characters.
int char_order(char c) noexcept {
  if (std::isdigit(static_cast<unsigned char>(c))) return 0;
  if (std::isalpha(static_cast<unsigned char>(c))) return c;
  if (c == '~') return -1;
  if (c) return c + 256;
  return 0;
}

int compare_fragment(std::string_view a, std::string_view b) noexcept {
  std::size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    int first_diff = 0;
    while ((i < a.size() && !std::isdigit(static_cast<unsigned char>(a[i]))) ||
           (j < b.size() && !std::isdigit(static_cast<unsigned char>(b[j])))) {
      const int ac = i < a.size() ? char_order(a[i]) : 0;
      const int bc = j < b.size() ? char_order(b[j]) : 0;
      if (ac != bc) return ac - bc;
      ++i;
      ++j;
    }
    while (i < a.size() && a[i] == '0') ++i;
    while (j < b.size() && b[j] == '0') ++j;
    while (i < a.size() && j < b.size() && std::isdigit(static_cast<unsigned char>(a[i])) &&
           std::isdigit(static_cast<unsigned char>(b[j]))) {
      if (!first_diff) first_diff = a[i] - b[j];
      ++i;
      ++j;
    }
    if (i < a.size() && std::isdigit(static_cast<unsigned char>(a[i]))) return 1;
    if (j < b.size() && std::isdigit(static_cast<unsigned char>(b[j]))) return -1;
    if (first_diff) return first_diff;
  }
  return 0;
}

struct Version {
  long epoch = 0;
  std::string_view upstream, revision;
};

Version split_version(std::string_view v) noexcept {
  Version out;
  if (auto colon = v.find(':'); colon != std::string_view::npos) {
    long e = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + colon, e);
    if (ec == std::errc() && p == v.data() + colon) {
      out.epoch = e;
      v.remove_prefix(colon + 1);
    }
  }
  if (auto dash = v.rfind('-'); dash != std::string_view::npos) {
    out.upstream = v.substr(0, dash);
    out.revision = v.substr(dash + 1);
  } else {
    out.upstream = v;
  }
  return out;
}

}  // namespace

int compare_versions(std::string_view a, std::string_view b) noexcept {
  const auto va = split_version(a), vb = split_version(b);
  if (va.epoch != vb.epoch) return va.epoch < vb.epoch ? -1 : 1;
  if (int c = compare_fragment(va.upstream, vb.upstream)) return c < 0 ? -1 : 1;
  int c = compare_fragment(va.revision, vb.revision);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

// --- queries ----------------------------------------------------------------------------------

namespace {

std::string_view op_text(InventoryCondition::Op op) noexcept {
  using Op = InventoryCondition::Op;
  switch (op) {
    case Op::eq:
      return "=";
    case Op::ne:
      return "!=";
    case Op::lt:
      return "<";
    case Op::le:
      return "<=";
    case Op::gt:
      return ">";
    case Op::ge:
      return ">=";
    case Op::exists:
      return "exists";
    case Op::missing:
      return "missing";
  }
  return "=";
}

// A whole number or a byte size ("10GiB") as a number; nullopt otherwise. Anything with a dot
// ("1.10") is a version: 1.10 is newer than 1.9.
std::optional<double> as_number(std::string_view text) noexcept {
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text.front())) ||
      text.find('.') != std::string_view::npos)
    return std::nullopt;
  try {
    return static_cast<double>(parse_byte_size(text));
  } catch (const Error&) {
    return std::nullopt;
  }
}

class QueryParser {
 public:
  explicit QueryParser(std::string_view text) : text_(text) {}

  InventoryQuery parse() {
    InventoryQuery q;
    skip_space();
    if (pos_ == text_.size())
      fail("an empty query; write FIELD OP VALUE (for example system.os.version >= 12)");
    for (;;) {
      q.conditions.push_back(condition());
      skip_space();
      if (pos_ == text_.size()) break;
      const auto word = bare_word();
      if (word != "and" && word != "AND")
        fail("\"and\" between two conditions" +
             std::string(word.empty() ? "" : ", not \"" + std::string(word) + "\""));
      skip_space();
      if (pos_ == text_.size()) fail("a condition after \"and\"");
    }
    return q;
  }

 private:
  [[noreturn]] void fail(const std::string& expected) const {
    throw Error(ErrorKind::invalid_argument, "malformed inventory query at character " +
                                                 std::to_string(pos_ + 1) + ": expected " + expected +
                                                 " in \"" + std::string(text_) + "\"");
  }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  static bool field_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' || c == '*' ||
           c == '/' || c == '+' || c == ':' || c == '?';
  }
  std::string_view bare_word() {
    const auto start = pos_;
    while (pos_ < text_.size() && field_char(text_[pos_])) ++pos_;
    return text_.substr(start, pos_ - start);
  }
  InventoryCondition condition() {
    InventoryCondition c;
    const auto field_at = pos_;
    c.field = std::string(bare_word());
    if (c.field.empty()) fail("a field name (system..., software..., user...)");
    if (!(c.field.starts_with("system.") || c.field.starts_with("software.") ||
          c.field.starts_with("user."))) {
      pos_ = field_at;
      fail("a field under system., software. or user., not \"" + c.field + "\"");
    }
    skip_space();
    using Op = InventoryCondition::Op;
    static const std::pair<std::string_view, Op> ops[] = {{"!=", Op::ne}, {"<=", Op::le}, {">=", Op::ge},
                                                          {"==", Op::eq}, {"=", Op::eq},  {"<", Op::lt},
                                                          {">", Op::gt}};
    for (const auto& [t, op] : ops)
      if (text_.substr(pos_).starts_with(t)) {
        c.op = op;
        pos_ += t.size();
        skip_space();
        c.value = value();
        return c;
      }
    const auto word = bare_word();
    if (word == "exists")
      c.op = Op::exists;
    else if (word == "missing")
      c.op = Op::missing;
    else
      fail("an operator (=, !=, <, <=, >, >=, exists, missing) after \"" + c.field + "\"");
    return c;
  }
  std::string value() {
    if (pos_ < text_.size() && (text_[pos_] == '"' || text_[pos_] == '\'')) {
      const char quote = text_[pos_++];
      const auto end = text_.find(quote, pos_);
      if (end == std::string_view::npos) fail(std::string("a closing ") + quote);
      std::string v(text_.substr(pos_, end - pos_));
      pos_ = end + 1;
      return v;
    }
    const auto start = pos_;
    while (pos_ < text_.size() && !std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    if (pos_ == start) fail("a value");
    return std::string(text_.substr(start, pos_ - start));
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

bool has_glob(std::string_view s) noexcept {
  return s.find_first_of("*?") != std::string_view::npos;
}

}  // namespace

InventoryQuery parse_inventory_query(std::string_view text) {
  return QueryParser(text).parse();
}

std::string to_string(const InventoryQuery& query) {
  std::string out;
  for (const auto& c : query.conditions) {
    if (!out.empty()) out += " and ";
    out += c.field + " " + std::string(op_text(c.op));
    if (c.op == InventoryCondition::Op::exists || c.op == InventoryCondition::Op::missing) continue;
    // Bare when it reads back as one word; quoted otherwise, with the quote it does not contain
    // (a parsed value never holds both kinds together with white space).
    const bool bare = !c.value.empty() && c.value.front() != '"' && c.value.front() != '\'' &&
                      std::none_of(c.value.begin(), c.value.end(),
                                   [](char ch) { return std::isspace(static_cast<unsigned char>(ch)); });
    const char quote = c.value.find('"') == std::string::npos ? '"' : '\'';
    out += bare ? " " + c.value : std::string(" ") + quote + c.value + quote;
  }
  return out;
}

bool condition_holds(const InventoryCondition& c, std::string_view value) noexcept {
  using Op = InventoryCondition::Op;
  switch (c.op) {
    case Op::exists:
      return true;
    case Op::missing:
      return false;
    case Op::eq:
      return has_glob(c.value) ? glob_matches(c.value, value) : value == c.value;
    case Op::ne:
      return has_glob(c.value) ? !glob_matches(c.value, value) : value != c.value;
    default:
      break;
  }
  int cmp = 0;
  const auto a = as_number(value), b = as_number(c.value);
  if (a && b)
    cmp = *a < *b ? -1 : (*a > *b ? 1 : 0);
  else
    cmp = compare_versions(value, c.value);
  switch (c.op) {
    case Op::lt:
      return cmp < 0;
    case Op::le:
      return cmp <= 0;
    case Op::gt:
      return cmp > 0;
    case Op::ge:
      return cmp >= 0;
    default:
      return false;
  }
}

bool query_matches(const InventoryQuery& query, const InventoryItems& items) {
  for (const auto& c : query.conditions) {
    bool any = false;
    if (has_glob(c.field)) {
      for (const auto& [k, v] : items)
        if (glob_matches(c.field, k) && (c.op == InventoryCondition::Op::missing || condition_holds(c, v))) {
          any = true;
          break;
        }
    } else if (auto it = items.find(c.field); it != items.end()) {
      any = c.op == InventoryCondition::Op::missing || condition_holds(c, it->second);
    }
    if (c.op == InventoryCondition::Op::missing ? any : !any) return false;
  }
  return true;
}

// --- user fields ----------------------------------------------------------------------------

std::string_view to_string(InventoryFieldType type) noexcept {
  switch (type) {
    case InventoryFieldType::text:
      return "text";
    case InventoryFieldType::number:
      return "number";
    case InventoryFieldType::choice:
      return "choice";
  }
  return "text";
}

InventoryFieldType parse_inventory_field_type(std::string_view text) {
  if (text == "text" || text == "string") return InventoryFieldType::text;
  if (text == "number") return InventoryFieldType::number;
  if (text == "choice") return InventoryFieldType::choice;
  throw Error(ErrorKind::invalid_argument,
              "unknown field type \"" + std::string(text) + "\" (known: text, number, choice)");
}

void validate_inventory_field(const InventoryField& field) {
  validate_group_name(field.name, "inventory field");
  if (field.type == InventoryFieldType::choice && field.allowed.empty())
    throw Error(ErrorKind::invalid_argument,
                "inventory field \"" + field.name + "\" is a choice but lists no values (--values a,b,c)");
  if (field.type != InventoryFieldType::choice && !field.allowed.empty())
    throw Error(ErrorKind::invalid_argument,
                "inventory field \"" + field.name + "\" lists values but is not of type choice");
  for (const auto& v : field.allowed)
    if (v.empty() || v.size() > 255)
      throw Error(ErrorKind::invalid_argument,
                  "inventory field \"" + field.name + "\": allowed values must be 1-255 characters");
}

void check_field_value(const InventoryField& field, std::string_view value) {
  const auto bad = [&](const std::string& wants) {
    throw Error(ErrorKind::invalid_argument, "value \"" + std::string(value.substr(0, 80)) +
                                                 "\" of inventory field \"" + field.name + "\" is not " +
                                                 wants);
  };
  if (value.size() > 1024) bad("at most 1024 characters long");
  switch (field.type) {
    case InventoryFieldType::text:
      return;
    case InventoryFieldType::number: {
      double d = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), d);
      if (value.empty() || ec != std::errc() || p != value.data() + value.size()) bad("a number");
      return;
    }
    case InventoryFieldType::choice: {
      if (std::find(field.allowed.begin(), field.allowed.end(), value) != field.allowed.end()) return;
      std::string list;
      for (const auto& v : field.allowed) list += (list.empty() ? "" : ", ") + v;
      bad("one of: " + list);
    }
  }
}

void check_user_value(const std::vector<InventoryField>& fields, std::string_view name,
                      std::string_view value) {
  auto f =
      std::find_if(fields.begin(), fields.end(), [&](const InventoryField& x) { return x.name == name; });
  if (f == fields.end())
    throw Error(ErrorKind::invalid_argument,
                "no inventory field \"" + std::string(name) +
                    "\" is defined at the manager (distribctl inventory field add " + std::string(name) +
                    ")");
  check_field_value(*f, value);
}

std::map<std::string, std::string> parse_assignments(std::string_view text, std::string_view source) {
  std::map<std::string, std::string> out;
  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0)
      throw Error(ErrorKind::invalid_argument, std::string(source) + " line " + std::to_string(line_no) +
                                                   ": expected NAME=VALUE, got \"" +
                                                   std::string(line.substr(0, 80)) + "\"");
    auto name = line.substr(0, eq);
    while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.remove_suffix(1);
    auto value = line.substr(eq + 1);
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front()))) value.remove_prefix(1);
    out[std::string(name)] = std::string(value);
  }
  return out;
}

}  // namespace distrib
