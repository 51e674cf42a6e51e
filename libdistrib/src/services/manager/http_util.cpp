// Answers and request checks shared by every manager route (http_util.h).
#include "services/manager/http_util.h"

#include "model/json_codec.h"

#include <boost/json/serialize.hpp>

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
  try {
    std::size_t used = 0;
    const long v = std::stol(it->second, &used);
    if (used != it->second.size() || v < lo || v > hi) throw std::out_of_range("range");
    return v;
  } catch (const std::exception&) {
    throw Error(ErrorKind::invalid_argument,
                std::string("query parameter ") + name + " must be a whole number from " +
                    std::to_string(lo) + " to " + std::to_string(hi) + ", not \"" + it->second + "\"");
  }
}

int query_clamped(const HttpRequest& req, const char* name, int fallback, int hi) {
  auto it = req.query.find(name);
  if (it == req.query.end()) return fallback;
  try {
    return std::clamp(std::stoi(it->second), 1, hi);
  } catch (const std::exception&) {
    throw Error(ErrorKind::invalid_argument, std::string("query parameter ") + name + " must be a number");
  }
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
