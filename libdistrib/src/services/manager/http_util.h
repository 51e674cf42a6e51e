#pragma once
// What every manager route shares: JSON and error answers, the content-type check and one parser
// for numeric query parameters.
#include <distrib/error.h>
#include <distrib/net/http.h>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace distrib::manager {

/// The HTTP status of an error kind (invalid_argument 400, unauthorized 401, ...).
int status_of(ErrorKind kind) noexcept;
HttpResponse json_response(int status, const boost::json::value& v);
/// {"error": KIND, "message": ...} with the kind's status.
HttpResponse error_response(const Error& e);
/// Throws invalid_argument unless the body is declared application/json.
void require_json(const HttpRequest& req);
/// The whole number in query parameter `name`, `fallback` when absent or empty; throws
/// invalid_argument naming the parameter and the range when it is not a number from lo to hi.
long query_number(const HttpRequest& req, const char* name, long fallback, long lo, long hi);
/// The array `key` of a request body (empty when absent), refused with invalid_argument naming
/// it when it holds more than `max` items or an item that is not an object: a count checked
/// before any of it is worked on.
const boost::json::array& bounded_objects(const boost::json::object& body, std::string_view key,
                                          std::size_t max);

/// "a, b, c" (error messages listing names).
std::string join_list(const std::vector<std::string>& v);
/// The strings of array `key` in a request body; none when absent; throws invalid_argument
/// when it is not an array of strings.
std::vector<std::string> optional_strings(const boost::json::object& o, std::string_view key);
/// The text without trailing newlines and spaces.
std::string trim(std::string s);

}  // namespace distrib::manager
