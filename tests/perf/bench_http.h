#pragma once
// What the simulated agents of the benchmarks share: one HTTP request on a kept-alive stream
// (plain or TLS), from a coroutine.
#include "net/asio_fwd.h"

#include <string>
#include <utility>

namespace bench {

/// Sends one request and reads its answer: status and body; status -1 when the connection failed.
template <class Stream>
boost::asio::awaitable<std::pair<int, std::string>> http_call(Stream& stream, boost::beast::flat_buffer& buf,
                                                              boost::beast::http::verb verb,
                                                              const std::string& target,
                                                              std::string body = {}) {
  namespace asio = boost::asio;
  namespace http = boost::beast::http;
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "manager");
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
  }
  req.prepare_payload();
  boost::beast::error_code e;
  co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, e));
  if (e) co_return std::make_pair(-1, std::string());
  http::response<http::string_body> res;
  co_await http::async_read(stream, buf, res, asio::redirect_error(asio::use_awaitable, e));
  if (e) co_return std::make_pair(-1, std::string());
  co_return std::make_pair(static_cast<int>(res.result_int()), std::move(res.body()));
}

}  // namespace bench
