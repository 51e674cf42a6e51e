// HTTP/1.1 server on Beast with C++20 coroutines. One coroutine per connection on its own strand;
// handlers complete requests through a Responder from any thread.
// Longer than our usual file (~950 lines): it is one connection's life — admission and limits
// (the administrators' reserve, the spare descriptor), TLS, reading with deadlines, the answer
// (plain, file, gather list, stream, or a held answer's heartbeats) — whose steps share the
// coroutine's state; split, each part would need that state passed around.
#include <distrib/content/digest.h>
#include <distrib/error.h>
#include <distrib/net/http.h>

#include "model/json_codec.h"
#include "net/asio_fwd.h"
#include "util/random.h"

#include <spdlog/spdlog.h>
#include <boost/url/parse.hpp>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <fcntl.h>
#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace distrib {

using namespace net;

std::string der_of(X509* cert) {
  unsigned char* der = nullptr;
  const int n = i2d_X509(cert, &der);
  if (n <= 0) return {};
  std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(n));
  OPENSSL_free(der);
  return out;
}

// The verified client certificate of a TLS connection (empty when it presented none).
PeerCertificate peer_of(SSL* ssl) {
  PeerCertificate out;
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (!cert || SSL_get_verify_result(ssl) != X509_V_OK) return out;
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0)
    out.subject = cn;
  if (auto* names =
          static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
      if (g->type != GEN_URI) continue;
      const auto* u = g->d.uniformResourceIdentifier;
      out.uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(u)),
                            static_cast<std::size_t>(ASN1_STRING_length(u)));
    }
    GENERAL_NAMES_free(names);
  }
  std::uint64_t serial = 0;
  if (ASN1_INTEGER_get_uint64(&serial, X509_get0_serialNumber(cert)) == 1) out.serial = serial;
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
    out.not_after = static_cast<std::int64_t>(timegm(&tm));
  out.fingerprint = "sha256:" + sha256_hex(der_of(cert));
  ERR_clear_error();
  return out;
}

struct Responder::State {
  explicit State(asio::any_io_executor ex, std::shared_ptr<asio::io_context> keep)
      : timer(ex, asio::steady_timer::time_point::max()), io(std::move(keep)) {}
  std::mutex mutex;
  std::optional<HttpResponse> response;
  asio::steady_timer timer;
  std::shared_ptr<asio::io_context> io;  // keeps the executor valid for late responders
  std::function<void(const HttpResponse&)> on_answer;
  // heartbeat(): filler sent every `heartbeat_every` while the answer is awaited (0: none).
  std::string heartbeat_filler, heartbeat_type;
  std::chrono::milliseconds heartbeat_every{0};
};

Responder::Responder(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
Responder::Responder(Responder&&) noexcept = default;
Responder& Responder::operator=(Responder&& other) noexcept {
  if (this != &other) {
    if (state_)
      (*this)(HttpResponse{
          500, "application/json", json::error_body("internal", "request was not answered"), {}, {}});
    state_ = std::move(other.state_);
  }
  return *this;
}
Responder::~Responder() {
  if (state_) {
    try {
      (*this)(HttpResponse{
          500, "application/json", json::error_body("internal", "request was not answered"), {}, {}});
    } catch (...) {
    }
  }
}

void Responder::heartbeat(std::string filler, std::chrono::milliseconds every, std::string content_type) {
  if (!state_) return;
  std::lock_guard lock(state_->mutex);
  state_->heartbeat_filler = std::move(filler);
  state_->heartbeat_every = every;
  state_->heartbeat_type = std::move(content_type);
}

void Responder::on_answer(std::function<void(const HttpResponse&)> hook) {
  if (!state_) return;
  std::lock_guard lock(state_->mutex);
  state_->on_answer = std::move(hook);
}

void Responder::operator()(HttpResponse response) {
  auto state = std::move(state_);
  if (!state) return;
  std::function<void(const HttpResponse&)> hook;
  {
    std::lock_guard lock(state->mutex);
    if (state->response) return;
    hook = std::move(state->on_answer);
  }
  if (hook) {
    try {
      hook(response);
    } catch (...) {
    }
  }
  {
    std::lock_guard lock(state->mutex);
    state->response = std::move(response);
  }
  asio::post(state->timer.get_executor(), [state] { state->timer.cancel(); });
}

bool HttpStream::write(std::string data) {
  std::function<void()> wake;
  {
    std::lock_guard lock(mutex_);
    if (closed_ || gone_) return false;
    queued_bytes_ += data.size();
    queue_.push_back(std::move(data));
    wake = wake_;
  }
  if (wake) wake();
  return true;
}

void HttpStream::close() {
  std::function<void()> wake;
  {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
    wake = wake_;
  }
  if (wake) wake();
}

bool HttpStream::closed() const {
  std::lock_guard lock(mutex_);
  return closed_ || gone_;
}

std::size_t HttpStream::queued_bytes() const {
  std::lock_guard lock(mutex_);
  return queued_bytes_;
}

std::vector<std::string> HttpStream::take(bool& done) {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  out.swap(queue_);
  queued_bytes_ = 0;
  done = closed_ || gone_;
  return out;
}

void HttpStream::on_ready(std::function<void()> wake) {
  std::lock_guard lock(mutex_);
  wake_ = std::move(wake);
}

void HttpStream::abandon() {
  std::lock_guard lock(mutex_);
  gone_ = true;
  queue_.clear();
  queued_bytes_ = 0;
  wake_ = nullptr;
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

HttpResponse error_response(int status, std::string_view kind, std::string_view message) {
  return HttpResponse{status, "application/json", json::error_body(kind, message), {}, {}};
}

// Fills the plain request from Beast's; returns false when the target cannot be parsed.
bool convert(const http::request_header<>& in, HttpRequest& out) {
  out.method = std::string(in.method_string());
  out.target = std::string(in.target());
  auto parsed = boost::urls::parse_origin_form(in.target());
  if (!parsed) return false;
  out.path = parsed->path();
  for (auto param : parsed->params()) out.query[param.key] = param.value;
  auto ct = lower(in[http::field::content_type]);
  if (auto semi = ct.find(';'); semi != std::string::npos) ct.resize(semi);
  while (!ct.empty() && ct.back() == ' ') ct.pop_back();
  out.content_type = std::move(ct);
  out.authorization = std::string(in[http::field::authorization]);
  for (const auto& field : in) out.headers[lower(field.name_string())] = std::string(field.value());
  return true;
}

}  // namespace

struct HttpServer::Impl {
  HttpServerSettings settings;
  HttpHandler handler;
  std::shared_ptr<asio::io_context> io = std::make_shared<asio::io_context>();
  std::optional<asio::ssl::context> tls;
  // A certificate read again after it was renewed (reload_certificate), set on each new
  // connection; none until then.
  struct Identity {
    X509* cert = nullptr;
    EVP_PKEY* key = nullptr;
    ~Identity() {
      X509_free(cert);
      EVP_PKEY_free(key);
    }
  };
  std::mutex identity_mutex;
  std::shared_ptr<Identity> reloaded;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::atomic<std::uint64_t> connections{0};
  // Connection limits (admit/leave): open connections per address, how many were refused.
  std::mutex limits_mutex;
  std::unordered_map<std::string, std::uint64_t> per_address;
  std::uint64_t total_limit = 0;
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> in_reserve{0};            // connections admitted in the reserve
  std::atomic<std::uint32_t> reserve_retry_spread{0};  // Retry-After 5..30 s, spread
  std::chrono::steady_clock::time_point last_reserve_log{};
  // A descriptor held for the moment the process has none left: closed to accept and close the
  // connections waiting in the backlog (they would hang there otherwise), then taken again.
  int spare_fd = -1;
  std::uint64_t dropped_at_limit = 0;
  std::chrono::steady_clock::time_point last_drop_log{};
  // Request bodies being received or handled, by their declared length.
  std::mutex bodies_mutex;
  std::uint64_t body_bytes = 0;
  std::chrono::steady_clock::time_point last_budget_log{};

  // Holds `bytes` of the body budget until the request's answer is written.
  // A body written to a file: removed at the end of its request unless the handler moved it.
  struct Spooled {
    std::string dir, path;
    ~Spooled() {
      if (!path.empty()) ::unlink(path.c_str());
    }
  };
  struct BodyReservation {
    Impl& impl;
    std::uint64_t bytes = 0;
    ~BodyReservation() {
      if (bytes == 0) return;
      std::lock_guard lock(impl.bodies_mutex);
      impl.body_bytes -= bytes;
    }
  };
  bool reserve_body(BodyReservation& r, std::uint64_t bytes, const std::string& remote) {
    std::lock_guard lock(bodies_mutex);
    if (body_bytes + bytes > settings.max_body_bytes_in_flight && body_bytes > 0) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last_budget_log > std::chrono::seconds(10)) {
        last_budget_log = now;
        spdlog::warn(
            "request body of {} bytes from {} refused for now: {} bytes of bodies are being received "
            "(the limit is {})",
            bytes, remote, body_bytes, settings.max_body_bytes_in_flight);
      }
      return false;
    }
    body_bytes += bytes;
    r.bytes = bytes;
    return true;
  }
  std::chrono::steady_clock::time_point last_refusal_log{};
  std::uint16_t port = 0;
  bool running = false;

  // The status line and headers of an answer whose `size` bytes of body follow separately.
  template <class Stream>
  asio::awaitable<bool> write_head(Stream& stream, const HttpResponse& r, unsigned version, bool keep_alive,
                                   std::uint64_t size) {
    http::response<http::empty_body> res{static_cast<http::status>(r.status), version};
    res.set(http::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) res.set(k, v);
    res.keep_alive(keep_alive);
    res.content_length(size);
    http::response_serializer<http::empty_body> sr(res);
    beast::error_code ec;
    co_await http::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  template <class Stream>
  asio::awaitable<bool> write_response(Stream& stream, HttpResponse&& r, unsigned version, bool keep_alive) {
    beast::error_code ec;
    if (r.stream) co_return co_await write_stream(stream, std::move(r), version);
    if (!r.file_path.empty()) {
      const int fd = ::open(r.file_path.c_str(), O_RDONLY | O_CLOEXEC);
      struct stat st {};
      if (fd < 0 || ::fstat(fd, &st) != 0) {
        if (fd >= 0) ::close(fd);
        co_return co_await write_response(
            stream, error_response(404, "not_found", "content is not available"), version, keep_alive);
      }
      struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
      } closer{fd};
      const auto size = static_cast<std::uint64_t>(st.st_size);
      if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
        // Plain TCP: headers through Beast, the body with sendfile(2), as static file servers do.
        if (!co_await write_head(stream, r, version, keep_alive, size)) co_return false;
        auto& sock = stream.socket();
        sock.native_non_blocking(true, ec);
        off_t offset = 0;
        while (!ec && static_cast<std::uint64_t>(offset) < size) {
          const auto n =
              ::sendfile(sock.native_handle(), fd, &offset, size - static_cast<std::uint64_t>(offset));
          if (n > 0) continue;
          if (n == 0) co_return false;  // file shrank underneath us
          if (errno == EINTR) continue;
          if (errno != EAGAIN) co_return false;
          // A stalled reader gets the idle timeout, like every other wait.
          asio::steady_timer guard(sock.get_executor(), std::chrono::seconds(settings.idle_timeout_seconds));
          guard.async_wait([&sock](const beast::error_code& e) {
            if (!e) sock.cancel();
          });
          co_await sock.async_wait(tcp::socket::wait_write, asio::redirect_error(asio::use_awaitable, ec));
          guard.cancel();
        }
      } else {
        // TLS: the bytes must pass through the encryption layer; one read, one write.
        std::string body(size, '\0');
        std::size_t got = 0;
        while (got < size) {
          const auto n = ::pread(fd, body.data() + got, size - got, static_cast<off_t>(got));
          if (n <= 0) break;
          got += static_cast<std::size_t>(n);
        }
        body.resize(got);
        http::response<http::string_body> res{static_cast<http::status>(r.status), version};
        res.set(http::field::content_type, r.content_type);
        for (auto& [k, v] : r.headers) res.set(k, v);
        res.body() = std::move(body);
        res.keep_alive(keep_alive);
        res.prepare_payload();
        co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      }
    } else if (!r.parts.empty()) {
      // A gather list: the header, then `body` and every part as they are, in one write (writev
      // on plain TCP), with no body assembled from them.
      std::uint64_t size = r.body.size();
      std::vector<asio::const_buffer> buffers;
      buffers.reserve(r.parts.size() + 1);
      if (!r.body.empty()) buffers.emplace_back(asio::buffer(r.body));
      for (const auto& p : r.parts) {
        size += p->size();
        buffers.emplace_back(asio::buffer(*p));
      }
      if (!co_await write_head(stream, r, version, keep_alive, size)) co_return false;
      co_await asio::async_write(stream, buffers, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      http::response<http::string_body> res{static_cast<http::status>(r.status), version};
      res.set(http::field::content_type, r.content_type);
      for (auto& [k, v] : r.headers) res.set(k, v);
      res.body() = std::move(r.body);
      res.keep_alive(keep_alive);
      res.prepare_payload();
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return !ec;
  }

  // A streamed body: the header, then each piece as a chunk as soon as it is queued, then the
  // last chunk. The connection is not reused afterwards.
  template <class Stream>
  asio::awaitable<bool> write_stream(Stream& stream, HttpResponse&& r, unsigned version) {
    beast::error_code ec;
    auto body = r.stream;
    // However this ends (client gone, server stopped and the coroutine destroyed), the writer
    // learns it at its next write.
    struct Abandon {
      std::shared_ptr<HttpStream> b;
      ~Abandon() { b->abandon(); }
    } abandon_on_exit{body};
    http::response<http::empty_body> res{static_cast<http::status>(r.status), version};
    res.set(http::field::content_type, r.content_type);
    res.set(http::field::cache_control, "no-cache");
    for (auto& [k, v] : r.headers) res.set(k, v);
    res.keep_alive(false);
    res.chunked(true);
    http::response_serializer<http::empty_body> sr(res);
    beast::get_lowest_layer(stream).expires_never();
    co_await http::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor,
                                                      asio::steady_timer::time_point::max());
    std::weak_ptr<asio::steady_timer> weak = timer;
    body->on_ready([weak] {
      if (auto t = weak.lock())
        asio::post(t->get_executor(), [weak] {
          if (auto t2 = weak.lock()) t2->cancel();
        });
    });
    for (;;) {
      bool done = false;
      auto pieces = body->take(done);
      for (auto& piece : pieces) {
        if (piece.empty()) continue;
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(settings.idle_timeout_seconds));
        co_await asio::async_write(stream, http::make_chunk(asio::buffer(piece)),
                                   asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return false;
      }
      if (done) break;
      if (!pieces.empty()) continue;  // more may have come while writing
      // Woken by on_ready; wait in slices so a stop of the server is not held up.
      timer->expires_after(std::chrono::seconds(1));
      co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    co_await asio::async_write(stream, http::make_chunk_last(),
                               asio::redirect_error(asio::use_awaitable, ec));
    co_return false;  // never reused
  }

  // Reads and discards what the client is still sending (briefly), so that closing does not
  // reset the connection before the client has read our error response.
  template <class Stream>
  asio::awaitable<void> linger(Stream& stream) {
    beast::error_code ec;
    beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_send, ec);
    std::vector<char> sink(64 * 1024);
    std::uint64_t total = 0;
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    while (!ec && total < 64ull * 1024 * 1024) {
      total += co_await beast::get_lowest_layer(stream).async_read_some(
          asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  template <class Stream>
  // `peer` is passed as a named object, never a default argument: GCC 12 destroys a coroutine's
  // default-argument temporaries twice.
  asio::awaitable<void> serve(Stream& stream, std::string remote, PeerCertificate peer, bool reserve) {
    beast::flat_buffer buffer;
    const auto idle = std::chrono::seconds(settings.idle_timeout_seconds);
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(16 * 1024);
      parser.body_limit(boost::none);  // the real limit depends on the route; set after the header
      beast::error_code ec;
      // A connection may stay silent for the idle timeout; once a request starts, its header has
      // the header timeout (a byte-at-a-time sender is dropped within seconds).
      beast::get_lowest_layer(stream).expires_after(idle);
      if (buffer.size() == 0) {
        const auto n = co_await stream.async_read_some(buffer.prepare(16 * 1024),
                                                       asio::redirect_error(asio::use_awaitable, ec));
        buffer.commit(n);
      }
      if (!ec) {
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(settings.header_timeout_seconds));
        co_await http::async_read_header(stream, buffer, parser,
                                         asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec) {
        if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
            ec == asio::error::operation_aborted || ec == asio::error::eof ||
            ec == asio::error::connection_reset || ec == asio::ssl::error::stream_truncated)
          co_return;
        co_await write_response(
            stream, error_response(400, "invalid_argument", "malformed HTTP request: " + ec.message()), 11,
            false);
        co_return;
      }
      const auto& head = parser.get();
      // A connection in the reserve kept for administrators (near the descriptor limit) serves
      // requests with credentials only; every other caller hears at once when to come back.
      if (reserve && head.find(http::field::authorization) == head.end()) {
        auto busy = error_response(503, "unavailable",
                                   "the server is at its connection limit; connect again in a few seconds");
        busy.headers.emplace_back("Retry-After", std::to_string(5 + reserve_retry_spread++ % 26));
        co_await write_response(stream, std::move(busy), head.version(), false);
        co_await linger(stream);
        co_return;
      }
      std::uint64_t limit = 0;
      if (settings.body_limit_for) limit = settings.body_limit_for(head.method_string(), head.target());
      if (limit == 0) limit = settings.body_limit;
      parser.body_limit(limit);
      // The declared length was parsed with the header, before the limit was known.
      const auto declared = parser.content_length();
      const bool has_body = declared ? *declared > 0 : parser.chunked();
      // A body written to a file as it arrives (large files): disk, not memory.
      Spooled spooled;
      if (has_body && settings.spool_dir_for)
        spooled.dir = settings.spool_dir_for(head.method_string(), head.target());
      // Before a body is read: does the handler want it at all (who is sending it, for whom), and
      // is there room for it among the bodies being received?
      std::string withheld;
      BodyReservation reservation{*this};
      if (has_body && !(declared && *declared > limit)) {
        if (settings.check_before_body) {
          HttpRequest head_only;
          if (convert(head, head_only)) {
            head_only.remote_address = remote;
            head_only.peer = peer;
            withheld = settings.check_before_body(head_only);
          }
        }
        if (withheld.empty() && settings.max_body_bytes_in_flight && spooled.dir.empty() &&
            !reserve_body(reservation, declared ? *declared : limit, remote)) {
          auto busy = error_response(503, "unavailable",
                                     "the server is receiving too many request bodies at once; send it again "
                                     "in a few seconds");
          busy.headers.emplace_back("Retry-After", "5");
          co_await write_response(stream, std::move(busy), head.version(), false);
          co_await linger(stream);
          co_return;
        }
      }
      std::optional<http::request_parser<http::file_body>> file_parser;
      bool spool_failed = false;
      if (!(declared && *declared > limit) && withheld.empty()) {
        const auto expected = declared ? *declared : limit;
        beast::get_lowest_layer(stream).expires_after(
            std::chrono::seconds(settings.header_timeout_seconds) +
            std::chrono::seconds(expected / std::max<std::uint64_t>(1, settings.min_body_rate)));
        if (!spooled.dir.empty()) {
          // The same parser, its header read, continues with a file as the body.
          file_parser.emplace(std::move(parser));
          file_parser->body_limit(limit);
          spooled.path = spooled.dir + "/body-" + util::random_hex(12, "a spooled body's file name");
          file_parser->get().body().open(spooled.path.c_str(), beast::file_mode::write_new, ec);
          if (ec) {
            spool_failed = true;
          } else {
            co_await http::async_read(stream, buffer, *file_parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
            // The disk, not the peer: full, failing, or read-only.
            spool_failed = ec == beast::errc::no_space_on_device || ec == beast::errc::io_error ||
                           ec == beast::errc::file_too_large || ec == beast::errc::read_only_file_system;
          }
          beast::error_code closed;
          file_parser->get().body().file().close(closed);
        } else {
          co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
        }
      }
      beast::get_lowest_layer(stream).expires_never();
      if (spool_failed) {
        spdlog::warn("a request body could not be written to {}: {}", spooled.dir, ec.message());
        co_await write_response(stream,
                                error_response(507, "insufficient_storage",
                                               "the server could not store the request body (" +
                                                   ec.message() + "); send it again later"),
                                head.version(), false);
        co_await linger(stream);
        co_return;
      }
      if (ec == http::error::body_limit || (declared && *declared > limit)) {
        co_await write_response(
            stream,
            error_response(413, "invalid_argument",
                           "request body exceeds the limit of " + std::to_string(limit) + " bytes"),
            head.version(), false);
        co_await linger(stream);
        co_return;
      }
      if (ec) {
        if (ec == asio::error::operation_aborted || ec == asio::error::eof ||
            ec == http::error::end_of_stream || ec == asio::error::connection_reset)
          co_return;
        co_await write_response(
            stream, error_response(400, "invalid_argument", "malformed HTTP request: " + ec.message()), 11,
            false);
        co_return;
      }
      std::optional<http::request<http::string_body>> in_memory;
      std::optional<http::request<http::file_body>> on_disk;
      if (file_parser)
        on_disk.emplace(file_parser->release());
      else
        in_memory.emplace(parser.release());
      const http::request_header<>& req = in_memory ? static_cast<const http::request_header<>&>(*in_memory)
                                                    : static_cast<const http::request_header<>&>(*on_disk);
      // A body not read leaves the connection unusable for another request.
      const bool keep_alive =
          withheld.empty() && (in_memory ? in_memory->keep_alive() : on_disk->keep_alive());
      const unsigned version = req.version();

      HttpRequest plain;
      HttpResponse response;
      if (!convert(req, plain)) {
        response = error_response(400, "invalid_argument", "malformed request target");
      } else {
        if (in_memory)
          plain.body = std::move(in_memory->body());
        else
          plain.body_file = spooled.path;
        plain.withheld = withheld;
        plain.remote_address = remote;
        plain.peer = peer;
        auto state = std::make_shared<Responder::State>(co_await asio::this_coro::executor, io);
        try {
          handler(std::move(plain), Responder(state));
        } catch (const std::exception& e) {
          Responder{state}(error_response(500, "internal", e.what()));
        }
        bool heartbeats_sent = false;  // the header went out: the answer follows as the last chunk
        std::optional<http::response<http::empty_body>> chunked_head;
        std::optional<http::response_serializer<http::empty_body>> chunked_sr;
        for (;;) {
          std::chrono::milliseconds every{0};
          std::string filler, type;
          {
            std::lock_guard lock(state->mutex);
            if (state->response) break;
            every = state->heartbeat_every;
            filler = state->heartbeat_filler;
            type = state->heartbeat_type;
            if (every.count() > 0) state->timer.expires_after(every);
          }
          co_await state->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          if (every.count() <= 0 || ec == asio::error::operation_aborted) continue;
          {
            std::lock_guard lock(state->mutex);
            if (state->response) break;
          }
          // Still no answer after `every`: show the client this peer is alive.
          beast::get_lowest_layer(stream).expires_after(idle);
          if (!heartbeats_sent) {
            chunked_head.emplace(http::status::ok, version);
            chunked_head->set(http::field::content_type, type);
            chunked_head->set(http::field::cache_control, "no-cache");
            chunked_head->keep_alive(keep_alive);
            chunked_head->chunked(true);
            chunked_sr.emplace(*chunked_head);
            co_await http::async_write_header(stream, *chunked_sr,
                                              asio::redirect_error(asio::use_awaitable, ec));
            if (ec) co_return;
            heartbeats_sent = true;
          }
          co_await asio::async_write(stream, http::make_chunk(asio::buffer(filler)),
                                     asio::redirect_error(asio::use_awaitable, ec));
          if (ec) co_return;
        }
        if (heartbeats_sent) {
          auto answer = std::move(*state->response);
          state.reset();
          for (const auto& p : answer.parts) answer.body += *p;  // one chunk: the whole answer
          beast::get_lowest_layer(stream).expires_after(idle);
          if (!answer.body.empty())
            co_await asio::async_write(stream, http::make_chunk(asio::buffer(answer.body)),
                                       asio::redirect_error(asio::use_awaitable, ec));
          if (!ec)
            co_await asio::async_write(stream, http::make_chunk_last(),
                                       asio::redirect_error(asio::use_awaitable, ec));
          if (ec || !keep_alive) co_return;
          continue;
        }
        response = std::move(*state->response);
        // Let go of it here: the state keeps the io_context alive, and a connection waiting for its
        // next request must not. GCC 12 keeps this variable in the coroutine frame beyond its
        // block: without the reset, connections idle at stop() were never freed (~30 KiB each).
        state.reset();
      }
      beast::get_lowest_layer(stream).expires_after(idle);
      if (!co_await write_response(stream, std::move(response), version, keep_alive)) co_return;
      if (!withheld.empty()) co_await linger(stream);  // the client reads the answer, not a reset
      if (!keep_alive) co_return;
    }
  }

  asio::awaitable<void> session(tcp::socket socket) {
    beast::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    std::string remote = ec ? std::string() : ep.address().to_string();
    const auto admission = admit(remote);
    if (admission == Admission::refused) {
      socket.close(ec);
      co_return;
    }
    struct Count {
      Impl& impl;
      const std::string& remote;
      ~Count() { impl.leave(remote); }
    } count{*this, remote};
    socket.set_option(tcp::no_delay(true), ec);
    try {
      if (tls) {
        beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *tls);
        std::shared_ptr<Identity> renewed;
        {
          std::lock_guard lock(identity_mutex);
          renewed = reloaded;
        }
        if (renewed && (SSL_use_certificate(stream.native_handle(), renewed->cert) != 1 ||
                        SSL_use_PrivateKey(stream.native_handle(), renewed->key) != 1))
          co_return;
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
        co_await stream.async_handshake(asio::ssl::stream_base::server,
                                        asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          spdlog::debug("TLS handshake with {} failed: {}", remote, ec.message());
          co_return;
        }
        const auto peer = peer_of(stream.native_handle());
        co_await serve(stream, remote, peer, admission == Admission::reserve);
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(5));
        co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
      } else {
        beast::tcp_stream stream(std::move(socket));
        const PeerCertificate nobody;
        co_await serve(stream, remote, nobody, admission == Admission::reserve);
        stream.socket().shutdown(tcp::socket::shutdown_send, ec);
      }
    } catch (const std::exception& e) {
      spdlog::warn("connection from {} ended with an error: {}", remote, e.what());
    }
  }

  // Counts a new connection from `remote`, or refuses it when a limit is reached (logged at most
  // every 10 s). The last kAdminReserve connections below the limit are the reserve: admitted,
  // but serving only requests with credentials (serve), so an administrator can still reach a
  // server that agents have filled.
  enum class Admission { refused, normal, reserve };
  static constexpr std::uint64_t kAdminReserve = 64;
  Admission admit(const std::string& remote) {
    std::lock_guard lock(limits_mutex);
    auto& mine = per_address[remote];
    const bool over_total = connections >= total_limit;
    const bool over_address =
        settings.max_connections_per_address != 0 && mine >= settings.max_connections_per_address;
    if (over_total || over_address) {
      if (mine == 0) per_address.erase(remote);
      ++refused;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_refusal_log > std::chrono::seconds(10)) {
        last_refusal_log = now;
        spdlog::warn("connection from {} refused: {} ({} refused so far)", remote,
                     over_total ? fmt::format("{} connections are open (the limit)", total_limit)
                                : fmt::format("{} connections from that address are open (the limit)",
                                              settings.max_connections_per_address),
                     refused.load());
      }
      return Admission::refused;
    }
    ++mine;
    ++connections;
    const bool reserve = total_limit > 2 * kAdminReserve && connections > total_limit - kAdminReserve;
    if (reserve) {
      ++in_reserve;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_reserve_log > std::chrono::seconds(10)) {
        last_reserve_log = now;
        spdlog::warn(
            "{} connections are open, {} below the limit: new connections serve administrators only "
            "({} so far), others are told to come back (503)",
            connections.load(), total_limit - connections.load(), in_reserve.load());
      }
    }
    return reserve ? Admission::reserve : Admission::normal;
  }
  void leave(const std::string& remote) {
    std::lock_guard lock(limits_mutex);
    --connections;
    if (auto it = per_address.find(remote); it != per_address.end() && --it->second == 0)
      per_address.erase(it);
  }

  // Out of descriptors: every connection waiting to be accepted is accepted and closed at once
  // with the spare descriptor (its client sees the connection end, not a silent hang); logged once
  // per 10 s with the count.
  void drop_waiting_connections() {
    if (spare_fd >= 0) {
      ::close(spare_fd);
      spare_fd = -1;
    }
    for (;;) {
      const int fd = ::accept4(acceptor->native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) break;
      ::close(fd);
      ++dropped_at_limit;
    }
    spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_drop_log > std::chrono::seconds(10)) {
      last_drop_log = now;
      spdlog::warn(
          "the process has no file descriptors left ({} connections open): {} connection(s) closed at once "
          "so far; raise the limit (LimitNOFILE) or spread agents over relays",
          connections.load(), dropped_at_limit);
    }
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      beast::error_code ec;
      tcp::socket socket = co_await acceptor->async_accept(asio::make_strand(*io),
                                                           asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
        if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
          drop_waiting_connections();
        } else {
          spdlog::warn("accept failed: {}", ec.message());
        }
        // Back off briefly rather than spin.
        asio::steady_timer t(*io, std::chrono::milliseconds(50));
        co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      auto ex = socket.get_executor();
      asio::co_spawn(ex, session(std::move(socket)), asio::detached);
    }
  }
};

HttpServer::HttpServer(HttpServerSettings settings, HttpHandler handler) : impl_(std::make_unique<Impl>()) {
  impl_->settings = std::move(settings);
  impl_->handler = std::move(handler);
}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::start() {
  auto& s = impl_->settings;
  // Every connected agent holds a descriptor: raise the soft limit as far as allowed.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  impl_->total_limit = s.max_connections;
  if (impl_->total_limit == 0 && ::getrlimit(RLIMIT_NOFILE, &rl) == 0)
    impl_->total_limit = rl.rlim_cur > 512 ? rl.rlim_cur - 256 : rl.rlim_cur / 2;
  if (!s.tls_cert_file.empty() || !s.tls_key_file.empty()) {
    if (s.tls_cert_file.empty() || s.tls_key_file.empty())
      throw Error(ErrorKind::invalid_argument, "TLS needs both a certificate file and a key file");
    impl_->tls.emplace(asio::ssl::context::tls_server);
    impl_->tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                            asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                            asio::ssl::context::no_tlsv1_1);
    // Idle connections (agents in a long poll) give their 2 x 16 KiB record buffers back.
    SSL_CTX_set_mode(impl_->tls->native_handle(), SSL_MODE_RELEASE_BUFFERS);
    beast::error_code ec;
    impl_->tls->use_certificate_chain_file(s.tls_cert_file, ec);
    if (ec)
      throw Error(ErrorKind::invalid_argument,
                  "cannot load TLS certificate " + s.tls_cert_file + ": " + ec.message());
    impl_->tls->use_private_key_file(s.tls_key_file, asio::ssl::context::pem, ec);
    if (ec)
      throw Error(ErrorKind::invalid_argument, "cannot load TLS key " + s.tls_key_file + ": " + ec.message());
    if (!s.tls_client_ca_file.empty()) {
      impl_->tls->load_verify_file(s.tls_client_ca_file, ec);
      if (ec)
        throw Error(ErrorKind::invalid_argument,
                    "cannot load the client CA " + s.tls_client_ca_file + ": " + ec.message());
      auto* ctx = impl_->tls->native_handle();
      if (auto* names = SSL_load_client_CA_file(s.tls_client_ca_file.c_str()))
        SSL_CTX_set_client_CA_list(ctx, names);
      static constexpr unsigned char kSessionContext[] = "distrib";
      SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
      impl_->tls->set_verify_mode(
          asio::ssl::verify_peer |
          (s.require_client_certificate ? asio::ssl::verify_fail_if_no_peer_cert : 0));
    } else if (s.require_client_certificate) {
      throw Error(ErrorKind::invalid_argument, "requiring client certificates needs a client CA file");
    }
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(s.address, ec);
  if (ec)
    throw Error(ErrorKind::invalid_argument, "listen address \"" + s.address + "\" is not an IP address");
  tcp::endpoint ep(address, s.port);
  auto& acc = impl_->acceptor.emplace(*impl_->io);
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && s.take_over_address) {
    const int one = 1;
    if (::setsockopt(acc.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      ec.assign(errno, boost::system::system_category());
  }
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec && s.take_over_address) {
    // The group's listeners are numbered in the order they joined: this one is the last. A
    // program answering 1 picks it while a predecessor is still open; alone, 1 is out of range
    // and the kernel picks the only listener.
    sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, 1}};
    sock_fprog prog{1, code};
    if (::setsockopt(acc.native_handle(), SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0)
      spdlog::warn(
          "listener on {}:{}: cannot steer new connections to it ({}); a stopped predecessor "
          "still gets some until it closes",
          s.address, s.port, std::strerror(errno));
  }
  if (ec)
    throw Error(ErrorKind::unavailable,
                "cannot listen on " + s.address + ":" + std::to_string(s.port) + ": " + ec.message());
  impl_->port = acc.local_endpoint().port();
  if (impl_->spare_fd < 0) impl_->spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  asio::co_spawn(*impl_->io, impl_->accept_loop(), asio::detached);
  impl_->running = true;
  for (int i = 0; i < std::max(1, s.threads); ++i)
    impl_->threads.emplace_back([io = impl_->io] {
      for (;;) {
        try {
          io->run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("network thread: {}", e.what());
        }
      }
    });
}

void HttpServer::stop() {
  if (!impl_ || !impl_->running) return;
  impl_->running = false;
  asio::post(*impl_->io, [this] {
    beast::error_code ec;
    impl_->acceptor->close(ec);
  });
  impl_->io->stop();
  for (auto& t : impl_->threads)
    if (t.joinable()) t.join();
  impl_->threads.clear();
  if (impl_->spare_fd >= 0) {
    ::close(impl_->spare_fd);
    impl_->spare_fd = -1;
  }
}

std::uint16_t HttpServer::port() const noexcept {
  return impl_->port;
}
std::uint64_t HttpServer::open_connections() const noexcept {
  return impl_->connections;
}

std::uint64_t HttpServer::refused_connections() const noexcept {
  return impl_->refused;
}

void HttpServer::reload_certificate() {
  const auto& s = impl_->settings;
  if (!impl_->tls) return;
  auto id = std::make_shared<Impl::Identity>();
  if (FILE* f = std::fopen(s.tls_cert_file.c_str(), "r")) {
    id->cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
  }
  if (FILE* f = std::fopen(s.tls_key_file.c_str(), "r")) {
    id->key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
    std::fclose(f);
  }
  if (!id->cert || !id->key || X509_check_private_key(id->cert, id->key) != 1) {
    ERR_clear_error();
    throw Error(ErrorKind::invalid_argument,
                "cannot reload TLS certificate " + s.tls_cert_file + " with key " + s.tls_key_file);
  }
  std::lock_guard lock(impl_->identity_mutex);
  impl_->reloaded = std::move(id);
}

}  // namespace distrib
