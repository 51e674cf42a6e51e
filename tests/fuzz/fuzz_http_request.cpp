// The request path of the manager's HTTP server up to a handler: Beast's parser with the
// server's header limit (16 KiB), the route's body limit taken from the header before the body
// is read (as HttpServer does), the check on the request's head before its body (a request refused
// there must be refused by dispatch too, never reach a handler), the target decoded as the server
// decodes it, then the route table: realms, access checks and path parameters. The handlers and checks are
// stand-ins; the parsing and routing are the product's.
#include <distrib/error.h>
#include <distrib/net/http.h>

#include "services/manager/router.h"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

#include <cstddef>
#include <cstdint>

using namespace distrib;
using namespace distrib::manager;
namespace http = boost::beast::http;

// The Responder without a server (http_server.cpp is not part of this build): answers go nowhere.
struct distrib::Responder::State {};
Responder::Responder(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
Responder::Responder(Responder&&) noexcept = default;
Responder& Responder::operator=(Responder&&) noexcept = default;
Responder::~Responder() = default;
void Responder::operator()(HttpResponse) {}
void Responder::on_answer(std::function<void(const HttpResponse&)>) {}

namespace {
const Router& table() {
  static const Router t = [] {
    Router r;
    auto ok = [](HttpRequest&& req, Responder& res, const PathSegments& p) {
      if (p.empty() || req.method.empty()) __builtin_trap();  // a route runs only when matched
      if (!req.withheld.empty()) __builtin_trap();            // and never without the body it wanted
      res(HttpResponse{});
    };
    const char* routes[][3] = {{"GET", "/v1/agent/work", "agent"},
                               {"POST", "/v1/agent/report", "agent"},
                               {"POST", "/v1/agent/collect", "agent"},
                               {"GET", "/v1/content/chunks/{digest}", "agent"},
                               {"GET", "/v1/content/manifests/{name}/{version}", "agent"},
                               {"POST", "/v1/relay/sync", "relay"},
                               {"GET", "/v1/jobs/{id}", "view"},
                               {"POST", "/v1/jobs/{id}/cancel", "operate"},
                               {"PUT", "/v1/chunks/{digest}", "operate"},
                               {"DELETE", "/v1/publishers/{id}", "administer"},
                               {"GET", "/v1/status", "open"}};
    for (const auto& [method, pattern, who] : routes) {
      const std::string_view w(who);
      const Access a = w == "agent"     ? Access::agent
                       : w == "relay"   ? Access::relay
                       : w == "view"    ? Access::view
                       : w == "operate" ? Access::operate
                       : w == "open"    ? Access::open
                                        : Access::administer;
      HeadCheck early;
      if (std::string_view(pattern) == "/v1/agent/collect")  // a host sends only its own files
        early = [](const HttpRequest& req) {
          const auto host = req.query.find("host_id");
          const auto self = req.headers.find("x-host");
          if (host == req.query.end() || self == req.headers.end() || host->second != self->second)
            throw Error(ErrorKind::forbidden, "not this host's files");
        };
      r.add(Route{method, pattern, a, ok, std::string_view(method) == "PUT" ? 16u << 20 : 0, early});
    }
    r.realm("/v1/agent", Access::agent);
    r.realm("/v1/relay", Access::relay);
    r.realm("/v1/content", Access::agent);
    r.realm("/v1", Access::view);
    // Stand-in credentials: a request with "Authorization: good" is an operator; hosts need a
    // header naming themselves.
    r.authenticate([](const HttpRequest& req) {
      if (req.authorization != "good") throw Error(ErrorKind::unauthorized, "no credentials");
      return Principal{Access::operate, "fuzz"};
    });
    r.check(Access::agent, [](const HttpRequest& req) {
      if (!req.headers.contains("x-host")) throw Error(ErrorKind::forbidden, "not a host");
    });
    r.check(Access::relay, [](const HttpRequest&) { throw Error(ErrorKind::forbidden, "not a relay"); });
    return r;
  }();
  return t;
}
// The request as HttpServer hands it on (the body aside).
bool to_request(const http::request<http::string_body>& in, HttpRequest& req) {
  req.method = std::string(in.method_string());
  req.target = std::string(in.target());
  auto parsed = boost::urls::parse_origin_form(in.target());
  if (!parsed) return false;  // 400
  req.path = parsed->path();
  for (auto param : parsed->params()) req.query[param.key] = param.value;
  req.authorization = std::string(in[http::field::authorization]);
  for (const auto& field : in) req.headers[std::string(field.name_string())] = std::string(field.value());
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(boost::none);
  boost::beast::error_code ec;
  std::size_t used = parser.put(boost::asio::buffer(data, size), ec);
  if (ec && ec != http::error::need_more) return 0;
  if (!parser.is_header_done()) return 0;
  const auto& head = parser.get();
  std::uint64_t limit = table().body_limit(head.method_string(), head.target());
  if (limit == 0) limit = 4u << 20;
  if (parser.content_length() && *parser.content_length() > limit) return 0;  // 413 at once
  parser.body_limit(limit);
  // Refused on its head alone: the request goes on without its body and must be refused.
  if (HttpRequest h; to_request(head, h)) {
    if (auto why = table().check_before_body(h); !why.empty()) {
      h.withheld = std::move(why);
      try {
        Responder r(nullptr);
        table().dispatch(std::move(h), r);
      } catch (const Error&) {
        return 0;
      }
      __builtin_trap();  // dispatched without an error
    }
  }
  while (!ec && used < size && !parser.is_done()) {
    const auto n = parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (n == 0) break;
    used += n;
  }
  if (ec == http::error::need_more) parser.put_eof(ec);
  if (ec || !parser.is_done()) return 0;
  const auto& in = parser.get();
  HttpRequest req;
  if (!to_request(in, req)) return 0;
  if (in.body().size() > limit) __builtin_trap();
  req.body = in.body();
  try {
    Responder r(nullptr);
    table().dispatch(std::move(req), r);
  } catch (const Error&) {
  }
  return 0;
}
