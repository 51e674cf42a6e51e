// Answers and request checks shared by every manager route (http_util.h).
#include "services/manager/http_util.h"

#include "model/json_codec.h"

#include <boost/json/serialize.hpp>

#include <charconv>

#include <algorithm>

namespace distrib::manager {

int status_of(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::invalid_argument:
      return 400;
    case ErrorKind::unauthorized:
      return 401;
    case ErrorKind::forbidden:
      return 403;
    case ErrorKind::not_found:
      return 404;
    case ErrorKind::conflict:
      return 409;
    case ErrorKind::integrity:
      return 422;
    case ErrorKind::unavailable:
      return 503;
    case ErrorKind::internal:
      return 500;
    case ErrorKind::insufficient_storage:
      return 507;
  }
  return 500;
}

HttpResponse json_response(int status, const boost::json::value& v) {
  return HttpResponse{status, "application/json", boost::json::serialize(v), {}, {}};
}

HttpResponse error_response(const Error& e) {
  return HttpResponse{
      status_of(e.kind()), "application/json", json::error_body(to_string(e.kind()), e.what()), {}, {}};
}

void require_json(const HttpRequest& req) {
  if (req.content_type != "application/json")
    throw Error(ErrorKind::invalid_argument,
                "content type must be application/json, not \"" + req.content_type + "\"");
}

long query_number(const HttpRequest& req, const char* name, long fallback, long lo, long hi) {
  auto it = req.query.find(name);
  if (it == req.query.end() || it->second.empty()) return fallback;
  // Digits only (an optional minus): "1e3", " 5", "+5" and "5x" are not numbers here.
  long v = 0;
  const auto& text = it->second;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi)
    throw Error(ErrorKind::invalid_argument, std::string("query parameter ") + name +
                                                 " must be a whole number from " + std::to_string(lo) +
                                                 " to " + std::to_string(hi) + ", not \"" +
                                                 text.substr(0, 40) + "\"");
  return v;
}

const boost::json::array& bounded_objects(const boost::json::object& body, std::string_view key,
                                          std::size_t max) {
  static const boost::json::array none;
  if (!body.contains(key)) return none;
  const auto& arr = json::get_array(body, key);
  if (arr.size() > max)
    throw Error(ErrorKind::invalid_argument, "at most " + std::to_string(max) + " " + std::string(key) +
                                                 " in one request, not " + std::to_string(arr.size()));
  for (const auto& v : arr)
    if (!v.is_object()) throw Error(ErrorKind::invalid_argument, std::string(key) + " must contain objects");
  return arr;
}

std::string join_list(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

std::vector<std::string> optional_strings(const boost::json::object& o, std::string_view key) {
  return o.contains(key) ? json::get_string_array(o, key) : std::vector<std::string>{};
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace distrib::manager
