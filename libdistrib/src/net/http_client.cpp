// Blocking HTTP/1.1 client on Beast with one kept-alive connection (plain or TLS).
#include <distrib/error.h>
#include <distrib/net/http.h>

#include "net/asio_fwd.h"

#include <sys/socket.h>
#include <atomic>
#include <optional>

namespace distrib {

using namespace net;

ParsedUrl parse_base_url(std::string_view url) {
  ParsedUrl out;
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    out.tls = true;
    rest = url.substr(8);
  } else {
    throw Error(ErrorKind::invalid_argument,
                "server URL \"" + std::string(url) + "\" must start with http:// or https://");
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos)
    throw Error(ErrorKind::invalid_argument, "server URL \"" + std::string(url) + "\" must not have a path");
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos)
      throw Error(ErrorKind::invalid_argument, "server URL \"" + std::string(url) + "\" is malformed");
    out.host = std::string(rest.substr(1, close - 1));
    if (close + 1 < rest.size() && rest[close + 1] == ':') port_text = rest.substr(close + 2);
  } else {
    const auto colon = rest.rfind(':');
    out.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
  }
  if (out.host.empty())
    throw Error(ErrorKind::invalid_argument, "server URL \"" + std::string(url) + "\" has no host");
  if (port_text.empty()) {
    out.port = out.tls ? 443 : 80;
  } else {
    unsigned long p = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || p > 65535)
        throw Error(ErrorKind::invalid_argument, "server URL \"" + std::string(url) + "\" has a bad port");
      p = p * 10 + static_cast<unsigned long>(c - '0');
    }
    if (p == 0 || p > 65535)
      throw Error(ErrorKind::invalid_argument, "server URL \"" + std::string(url) + "\" has a bad port");
    out.port = static_cast<std::uint16_t>(p);
  }
  return out;
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

struct HttpClient::Impl {
  HttpClientSettings settings;
  ParsedUrl url;
  asio::io_context io;
  std::optional<asio::ssl::context> tls;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  bool connected = false;
  std::atomic<int> fd{-1};
  std::atomic<bool> aborted{false};
  bool request_sent = false;  // the last exchange sent its whole request (the server may have acted)

  beast::tcp_stream& lowest() { return secure ? beast::get_lowest_layer(*secure) : *plain; }

  void reset() {
    fd = -1;
    secure.reset();
    plain.reset();
    buffer.clear();
    connected = false;
  }

  // Runs one asynchronous operation to its end on this thread. Beast's stream deadlines
  // (expires_after) apply only to asynchronous operations: a blocking read from a peer that
  // stopped answering (a hung process keeps its connections open) would never end.
  template <class Start>
  beast::error_code run_op(Start&& start) {
    beast::error_code result = asio::error::would_block;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    io.restart();
    io.run();
    return result;
  }
  // A deadline for the next step: no progress for timeout_seconds ends the request.
  void arm() { lowest().expires_after(std::chrono::seconds(settings.timeout_seconds)); }

  // Sends the request; each piece written renews the deadline, so a large body only fails when
  // the peer stops taking it.
  template <class Stream>
  beast::error_code send(Stream& stream, http::request<http::string_body>& req) {
    http::request_serializer<http::string_body> sr{req};
    beast::error_code ec;
    while (!ec && !sr.is_done()) {
      arm();
      ec = run_op([&](auto h) { http::async_write_some(stream, sr, std::move(h)); });
    }
    return ec;
  }

  // Reads what has arrived into `parser` (renewing the deadline), up to the whole message.
  template <class Stream, class Parser>
  beast::error_code receive_some(Stream& stream, Parser& parser) {
    arm();
    return run_op([&](auto h) { http::async_read_some(stream, buffer, parser, std::move(h)); });
  }

  [[noreturn]] void fail(std::string_view what, const beast::error_code& ec) {
    reset();
    throw Error(ErrorKind::unavailable,
                "cannot reach " + settings.base_url + ": " + std::string(what) + ": " + ec.message());
  }

  void connect() {
    reset();
    beast::error_code ec;
    tcp::resolver resolver(io);
    auto results = resolver.resolve(url.host, std::to_string(url.port), ec);
    if (ec) fail("name resolution failed", ec);
    beast::tcp_stream stream(io);
    if (!settings.bind_address.empty()) {
      auto addr = asio::ip::make_address(settings.bind_address, ec);
      if (ec)
        throw Error(ErrorKind::invalid_argument,
                    "bind address \"" + settings.bind_address + "\" is not an IP address");
      stream.socket().open(addr.is_v4() ? tcp::v4() : tcp::v6(), ec);
      if (!ec) stream.socket().bind(tcp::endpoint(addr, 0), ec);
      if (ec) fail("cannot bind to " + settings.bind_address, ec);
    }
    stream.expires_after(std::chrono::seconds(settings.connect_timeout_seconds));
    if (!settings.bind_address.empty()) {
      ec = asio::error::host_not_found;
      for (const auto& r : results) {
        ec = run_op([&](auto h) { stream.async_connect(r.endpoint(), std::move(h)); });
        if (!ec || !stream.socket().is_open()) break;  // a timed-out attempt closed the bound socket
      }
    } else {
      ec = run_op([&](auto h) { stream.async_connect(results, std::move(h)); });
    }
    if (ec) fail(ec == beast::error::timeout ? "connect timed out" : "connect failed", ec);
    stream.socket().set_option(tcp::no_delay(true), ec);
    fd = stream.socket().native_handle();
    if (aborted) fail("aborted", asio::error::operation_aborted);
    if (url.tls) {
      secure.emplace(std::move(stream), *tls);
      if (!SSL_set_tlsext_host_name(secure->native_handle(), url.host.c_str())) {
        // Host is an IP address: SNI is optional.
      }
      if (settings.verify_server) {
        secure->set_verify_mode(asio::ssl::verify_peer);
        secure->set_verify_callback(asio::ssl::host_name_verification(url.host));
      } else {
        secure->set_verify_mode(asio::ssl::verify_none);
      }
      beast::get_lowest_layer(*secure).expires_after(std::chrono::seconds(settings.connect_timeout_seconds));
      ec = run_op([&](auto h) { secure->async_handshake(asio::ssl::stream_base::client, std::move(h)); });
      if (ec) fail("TLS handshake failed", ec);
    } else {
      plain.emplace(std::move(stream));
    }
    connected = true;
  }

  // Like exchange, but a 2xx body goes to `on_body` piece by piece as it arrives (it returns
  // false to stop); other bodies are collected. The connection is not reused afterwards.
  template <class Stream>
  HttpResponse exchange_stream(Stream& stream, http::request<http::string_body>& req,
                               const std::function<bool(std::string_view)>& on_body) {
    beast::error_code ec = send(stream, req);
    if (ec) fail("sending the request failed", ec);
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    arm();
    ec = run_op([&](auto h) { http::async_read_header(stream, buffer, parser, std::move(h)); });
    if (ec) fail(ec == beast::error::timeout ? "no answer (timed out)" : "reading the response failed", ec);
    HttpResponse out;
    out.status = static_cast<int>(parser.get().result_int());
    out.content_type = std::string(parser.get()[http::field::content_type]);
    for (const auto& f : parser.get())
      out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    const bool ok = out.status / 100 == 2;
    std::vector<char> piece(64 * 1024);
    while (!parser.is_done()) {
      parser.get().body().data = piece.data();
      parser.get().body().size = piece.size();
      ec = receive_some(stream, parser);  // what has arrived, not the whole body
      if (ec == http::error::need_buffer) ec = {};
      if (ec)
        fail(ec == beast::error::timeout ? "the answer stalled (timed out)" : "reading the response failed",
             ec);
      const auto n = piece.size() - parser.get().body().size;
      if (n == 0) continue;
      if (!ok) {
        if (out.body.size() < (1u << 20)) out.body.append(piece.data(), n);
      } else if (!on_body(std::string_view(piece.data(), n))) {
        break;
      }
    }
    reset();
    return out;
  }

  template <class Stream>
  HttpResponse exchange(Stream& stream, http::request<http::string_body>& req) {
    request_sent = false;
    const auto write_error = send(stream, req);
    request_sent = !write_error;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64ull * 1024 * 1024);
    // A server refusing a request early (413) answers before reading it all: read the answer
    // even when sending failed. Each piece that arrives renews the deadline: a long body only
    // fails when it stalls.
    beast::error_code ec;
    while (!ec && !parser.is_done()) ec = receive_some(stream, parser);
    if (ec)
      fail(write_error ? "sending the request failed"
           : ec == beast::error::timeout
               ? "no answer within " + std::to_string(settings.timeout_seconds) + " s (timed out)"
               : "reading the response failed",
           write_error ? write_error : ec);
    auto res = parser.release();
    HttpResponse out;
    out.status = static_cast<int>(res.result_int());
    out.content_type = std::string(res[http::field::content_type]);
    for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    out.body = std::move(res.body());
    if (!res.keep_alive()) reset();
    return out;
  }
};

HttpClient::HttpClient(HttpClientSettings settings) : impl_(std::make_unique<Impl>()) {
  impl_->settings = std::move(settings);
  impl_->url = parse_base_url(impl_->settings.base_url);
  if (impl_->url.tls) {
    impl_->tls.emplace(asio::ssl::context::tls_client);
    beast::error_code ec;
    if (impl_->settings.ca_file.empty()) {
      impl_->tls->set_default_verify_paths(ec);
    } else {
      impl_->tls->load_verify_file(impl_->settings.ca_file, ec);
      if (ec)
        throw Error(ErrorKind::invalid_argument,
                    "cannot load CA file " + impl_->settings.ca_file + ": " + ec.message());
    }
    const auto& cert = impl_->settings.cert_file;
    const auto& key = impl_->settings.key_file;
    if (cert.empty() != key.empty())
      throw Error(ErrorKind::invalid_argument,
                  "a client certificate needs both a certificate file and a key file");
    if (!cert.empty()) {
      impl_->tls->use_certificate_chain_file(cert, ec);
      if (ec)
        throw Error(ErrorKind::invalid_argument,
                    "cannot load client certificate " + cert + ": " + ec.message());
      impl_->tls->use_private_key_file(key, asio::ssl::context::pem, ec);
      if (ec) throw Error(ErrorKind::invalid_argument, "cannot load client key " + key + ": " + ec.message());
    }
  }
}
HttpClient::~HttpClient() = default;
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;

void HttpClient::abort() noexcept {
  impl_->aborted = true;
  const int fd = impl_->fd.load();
  if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
}

void HttpClient::set_timeout(int seconds) {
  impl_->settings.timeout_seconds = seconds;
}
const HttpClientSettings& HttpClient::settings() const noexcept {
  return impl_->settings;
}

HttpResponse HttpClient::request(std::string_view method, std::string_view target, std::string_view body,
                                 std::string_view content_type, std::string_view bearer_token) {
  return request(method, target, body, content_type, {}, bearer_token);
}

HttpResponse HttpClient::request(std::string_view method, std::string_view target, std::string_view body,
                                 std::string_view content_type,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 std::string_view bearer_token) {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, impl_->url.host + ":" + std::to_string(impl_->url.port));
  req.set(http::field::user_agent, "distrib");
  if (!bearer_token.empty()) req.set(http::field::authorization, "Bearer " + std::string(bearer_token));
  for (const auto& [name, value] : headers) req.set(name, value);
  if (!body.empty() || method == "POST" || method == "PUT") {
    req.set(http::field::content_type, content_type);
    req.body() = std::string(body);
  }
  req.keep_alive(true);
  req.prepare_payload();
  // A kept-alive connection may have been closed by the server meanwhile: one fresh retry, unless
  // the request may have been acted on — a whole POST sent and no answer — since the server may
  // have applied it before the connection broke (RFC 9110, 9.2.2: only idempotent methods are
  // retried on their own). The caller learns that the outcome is unknown.
  const bool reused = impl_->connected;
  const bool idempotent = method != "POST" && method != "PATCH";
  for (int attempt = 0;; ++attempt) {
    if (impl_->aborted)
      throw Error(ErrorKind::unavailable, "request to " + impl_->settings.base_url + " aborted");
    if (!impl_->connected) impl_->connect();
    try {
      return impl_->secure ? impl_->exchange(*impl_->secure, req) : impl_->exchange(*impl_->plain, req);
    } catch (const Error& e) {
      if (!reused || attempt > 0) throw;
      if (!idempotent && impl_->request_sent)
        throw Error(ErrorKind::unavailable,
                    std::string(e.what()) + " (the request was sent: it may or may not have been applied)");
    }
  }
}

}  // namespace distrib

namespace distrib {

HttpResponse HttpClient::stream(std::string_view method, std::string_view target,
                                const std::vector<std::pair<std::string, std::string>>& headers,
                                std::string_view bearer_token,
                                const std::function<bool(std::string_view)>& on_body) {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, impl_->url.host + ":" + std::to_string(impl_->url.port));
  req.set(http::field::user_agent, "distrib");
  if (!bearer_token.empty()) req.set(http::field::authorization, "Bearer " + std::string(bearer_token));
  for (const auto& [name, value] : headers) req.set(name, value);
  req.keep_alive(false);
  req.prepare_payload();
  if (impl_->aborted)
    throw Error(ErrorKind::unavailable, "request to " + impl_->settings.base_url + " aborted");
  impl_->connect();  // a fresh connection: the stream keeps it to the end
  return impl_->secure ? impl_->exchange_stream(*impl_->secure, req, on_body)
                       : impl_->exchange_stream(*impl_->plain, req, on_body);
}

}  // namespace distrib
