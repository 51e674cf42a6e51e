#include <distrib/error.h>
#include <distrib/model/units.h>

#include <cstdio>
#include <ctime>

#include <cctype>
#include <cstdio>
#include <limits>

namespace distrib {

std::uint64_t parse_byte_size(std::string_view text) {
  const auto bad = [&]() -> Error {
    return Error(ErrorKind::invalid_argument,
                 "\"" + std::string(text) + "\" is not a size (examples: 1048576, 512KiB, 100MiB, 10GiB)");
  };
  std::size_t i = 0;
  std::uint64_t value = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    const auto digit = static_cast<std::uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) throw bad();
    value = value * 10 + digit;
    ++i;
  }
  if (i == 0) throw bad();
  while (i < text.size() && text[i] == ' ') ++i;
  std::string unit;
  for (; i < text.size(); ++i)
    unit.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(text[i]))));
  int shift = 0;
  if (unit.empty() || unit == "b")
    shift = 0;
  else if (unit == "k" || unit == "kb" || unit == "kib")
    shift = 10;
  else if (unit == "m" || unit == "mb" || unit == "mib")
    shift = 20;
  else if (unit == "g" || unit == "gb" || unit == "gib")
    shift = 30;
  else if (unit == "t" || unit == "tb" || unit == "tib")
    shift = 40;
  else
    throw bad();
  if (shift && value > (std::numeric_limits<std::uint64_t>::max() >> shift)) throw bad();
  return value << shift;
}

std::string format_byte_size(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

std::int64_t parse_duration_seconds(std::string_view text) {
  auto bad = [&] {
    return Error(ErrorKind::invalid_argument,
                 "\"" + std::string(text) + "\" is not a duration (e.g. 90s, 10m, 2h, 1d)");
  };
  if (text.empty()) throw bad();
  std::int64_t unit = 1;
  std::string_view digits = text;
  switch (text.back()) {
    case 's':
      unit = 1;
      digits.remove_suffix(1);
      break;
    case 'm':
      unit = 60;
      digits.remove_suffix(1);
      break;
    case 'h':
      unit = 3600;
      digits.remove_suffix(1);
      break;
    case 'd':
      unit = 86400;
      digits.remove_suffix(1);
      break;
    default:
      break;
  }
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string_view::npos)
    throw bad();
  return std::stoll(std::string(digits)) * unit;
}

std::int64_t parse_time_spec(std::string_view text, std::int64_t now) {
  auto bad = [&] {
    return Error(
        ErrorKind::invalid_argument,
        "\"" + std::string(text) +
            "\" is not a time (use +10m, @UNIXSECONDS, 2026-12-01T22:00:00Z or \"2026-12-01 22:00\")");
  };
  if (text.empty()) throw bad();
  if (text.front() == '+') return now + parse_duration_seconds(text.substr(1));
  if (text.front() == '@') {
    const auto d = text.substr(1);
    if (d.empty() || d.size() > 12 || d.find_first_not_of("0123456789") != std::string_view::npos)
      throw bad();
    return std::stoll(std::string(d));
  }
  std::tm tm{};
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  char sep = 0;
  char zone[4] = {};
  const std::string t(text);
  const int n = std::sscanf(t.c_str(), "%4d-%2d-%2d%c%2d:%2d:%2d%3s", &y, &mo, &d, &sep, &h, &mi, &s, zone);
  if (n < 6 || (sep != 'T' && sep != ' ')) throw bad();
  if (n == 6) s = 0;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 60)
    throw bad();
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  const std::string z(zone);
  if (n == 8 && z != "Z") throw bad();
  if (n == 8) return static_cast<std::int64_t>(timegm(&tm));
  tm.tm_isdst = -1;
  return static_cast<std::int64_t>(std::mktime(&tm));
}

}  // namespace distrib
