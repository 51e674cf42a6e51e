#pragma once
// HTTP/1.1 (+TLS) server and client. Boost.Beast and Asio stay inside libdistrib's sources; this
// header uses plain types only.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace distrib {

/// The client certificate a TLS connection presented and the server verified against its client
/// CA. Empty (no fingerprint) when there was none: plain HTTP, or a client without one.
struct PeerCertificate {
  std::string subject;            ///< common name
  std::vector<std::string> uris;  ///< subjectAltName URIs (a distrib host's identity)
  std::string fingerprint;        ///< "sha256:HEX" of the certificate's DER
  std::uint64_t serial = 0;
  std::int64_t not_after = 0;  ///< Unix seconds
  bool present() const noexcept { return !fingerprint.empty(); }
};

struct HttpRequest {
  std::string method;  ///< "GET", "POST", ...
  std::string target;  ///< path and query as sent
  std::string path;    ///< percent-decoded path without the query
  std::map<std::string, std::string> query;
  std::string content_type;   ///< media type without parameters, lower-case
  std::string authorization;  ///< the Authorization header, verbatim
  std::string body;
  std::string remote_address;
  /// Every request header, names in lower case.
  std::map<std::string, std::string> headers;
  PeerCertificate peer;  ///< the verified client certificate of the connection, if any
  /// Why the body was not read (HttpServerSettings::check_before_body): the handler must refuse
  /// the request (the body is empty, not what was sent).
  std::string withheld;
  /// The body as a file the server wrote it to (HttpServerSettings::spool_dir_for); `body` is then
  /// empty. The server removes the file after the answer unless the handler moved it away.
  std::string body_file;
};

/// A response body written piece by piece while the connection stays open (server-sent events).
/// The handler keeps the shared pointer, writes from any thread and closes it when done; the
/// server sends each piece as it comes (chunked encoding) and ends the response after close().
class HttpStream {
 public:
  /// Queues `data`. Returns false once the client is gone or the stream was closed: stop writing.
  bool write(std::string data);
  void close();
  bool closed() const;
  /// Bytes queued and not yet taken by the server (a slow client makes it grow).
  std::size_t queued_bytes() const;

  // --- for the server
  /// Takes what was queued; `done` is set once close() was called and nothing is left.
  std::vector<std::string> take(bool& done);
  /// Called (from the writing thread) whenever something is queued or the stream is closed.
  void on_ready(std::function<void()> wake);
  /// The client is gone: writes fail from now on.
  void abandon();

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> queue_;
  std::size_t queued_bytes_ = 0;
  bool closed_ = false;
  bool gone_ = false;
  std::function<void()> wake_;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  /// When set, the body is streamed from this file instead of `body`.
  std::string file_path;
  std::vector<std::pair<std::string, std::string>> headers;
  /// When set, the body is this stream (status, content type and headers are sent first).
  std::shared_ptr<HttpStream> stream;
  /// When set, the body is `body` followed by these, written as they are (a gather list:
  /// buffers shared with a cache are sent without being copied into one body).
  std::vector<std::shared_ptr<const std::string>> parts;
};

/// Completes one request. Move-only; call exactly once, from any thread. Destroying it without a
/// call answers 500, so a handler that forgets can never leave a client hanging.
class Responder {
 public:
  struct State;
  explicit Responder(std::shared_ptr<State> state) noexcept;
  Responder(Responder&&) noexcept;
  Responder& operator=(Responder&&) noexcept;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  ~Responder();
  void operator()(HttpResponse response);
  /// Called with the response when it is given, on the answering thread, before it is sent
  /// (an audit trail, metrics). Set it before handing the responder on.
  void on_answer(std::function<void(const HttpResponse&)> hook);
  /// A long wait before the answer (a held poll): once `every` has passed without one, the server
  /// sends the header (200, chunked, this content type) and then `filler` every `every`, so the
  /// client sees a live peer and can give up on a silent one in seconds. The answer's body
  /// follows as the last chunk (its status can no longer be sent: the body must say it). Set it
  /// before handing the responder on.
  void heartbeat(std::string filler, std::chrono::milliseconds every, std::string content_type);

 private:
  std::shared_ptr<State> state_;
};

/// A request handler. It must not block: hand blocking work to another thread and call the
/// responder from there.
using HttpHandler = std::function<void(HttpRequest&&, Responder)>;

struct HttpServerSettings {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  ///< 0 picks a free port; see HttpServer::port()
  int threads = 2;
  std::string tls_cert_file;  ///< PEM; TLS is on when both files are set
  std::string tls_key_file;
  /// PEM CA certificate(s): clients may present a certificate issued by it (mutual TLS; checked
  /// in the handshake, shown in HttpRequest::peer). Empty: client certificates are not asked for.
  std::string tls_client_ca_file;
  /// With a client CA: refuse a handshake without a client certificate (otherwise optional).
  bool require_client_certificate = false;
  std::uint64_t body_limit = 1024 * 1024;  ///< bytes, for requests not matched below
  /// Optional per-request limit (method, path) → bytes; 0 means "use body_limit".
  std::function<std::uint64_t(std::string_view, std::string_view)> body_limit_for;
  int idle_timeout_seconds = 300;  ///< a connection silent this long is closed
  /// Once a request's first byte has arrived, its whole header must arrive within this time (a
  /// client sending it a byte at a time is dropped).
  int header_timeout_seconds = 15;
  /// A body must arrive at this rate at least (bytes per second; its time starts at the header
  /// timeout).
  std::uint64_t min_body_rate = 64 * 1024;
  /// Connections open at once: beyond it new ones are closed as they come. 0: the descriptor
  /// limit less 256 (what the process needs for its files and databases).
  std::uint64_t max_connections = 0;
  /// Connections open at once from one address (0: no limit besides max_connections).
  std::uint64_t max_connections_per_address = 0;
  /// Checks a request's head (method, target, headers, client certificate) before its body is
  /// read; called on network threads, so it must not block. A non-empty answer says why the body
  /// is not wanted: the request reaches the handler without it (HttpRequest::withheld) and the
  /// connection closes after the answer. Nothing is checked when unset.
  std::function<std::string(const HttpRequest& head)> check_before_body;
  /// Request bodies received or handled at once, counted by their declared length (a chunked body
  /// by its limit) until the answer is written: beyond it a request gets 503 with Retry-After
  /// before its body is read (one body is always let through). 0: no limit.
  std::uint64_t max_body_bytes_in_flight = 0;
  /// Optional (method, target) → a directory: the request's body is written to a new file there as
  /// it arrives (HttpRequest::body_file) instead of being held in memory, and it is not counted in
  /// max_body_bytes_in_flight. Empty answer: in memory. For routes whose bodies are large files.
  std::function<std::string(std::string_view, std::string_view)> spool_dir_for;
  /// Takes the address over from a predecessor that still holds it (an active/standby pair on
  /// one address: the old active may be stopped, not dead). Linux: the listener shares the
  /// address (SO_REUSEPORT) and steers every new connection to the newer of the two listeners,
  /// so a hung predecessor gets none; once it closes, this one holds the address alone. Two
  /// listeners at most: a pair.
  bool take_over_address = false;
};

class HttpServer {
 public:
  HttpServer(HttpServerSettings settings, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  /// Binds and starts the threads. Throws Error naming the address when it cannot bind or when
  /// the TLS files cannot be loaded.
  void start();
  /// Stops accepting, closes connections and joins the threads. Idempotent.
  void stop();
  std::uint16_t port() const noexcept;
  std::uint64_t open_connections() const noexcept;
  /// Connections closed as they came because a limit was reached (total or per address).
  std::uint64_t refused_connections() const noexcept;
  /// Reads the TLS certificate and key files again: connections made from now on present them
  /// (a renewed certificate); those open keep theirs. Throws Error naming a file it cannot use.
  void reload_certificate();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct HttpClientSettings {
  std::string base_url;      ///< "http://host:port" or "https://host:port"
  std::string ca_file;       ///< PEM bundle to verify the server; empty: system default paths
  std::string bind_address;  ///< local address for outgoing connections (optional)
  int connect_timeout_seconds = 10;
  int timeout_seconds = 120;  ///< per request, covering long polls
  std::string cert_file;      ///< PEM client certificate presented to the server (mutual TLS)
  std::string key_file;       ///< its private key
  /// Off: the server's certificate is not checked (only to read a CA certificate whose
  /// fingerprint the caller then checks itself).
  bool verify_server = true;
};

/// A blocking client keeping one connection alive between requests. Not thread-safe; use one
/// per thread.
class HttpClient {
 public:
  explicit HttpClient(HttpClientSettings settings);
  ~HttpClient();
  HttpClient(HttpClient&&) noexcept;
  HttpClient& operator=(HttpClient&&) noexcept;
  /// Sends a request and returns any response, whatever its status. Throws Error(unavailable)
  /// when the server cannot be reached or the connection fails (naming the URL and the cause).
  HttpResponse request(std::string_view method, std::string_view target, std::string_view body = {},
                       std::string_view content_type = "application/json",
                       std::string_view bearer_token = {});
  /// The same with extra request headers (name, value), e.g. a webhook's signature.
  HttpResponse request(std::string_view method, std::string_view target, std::string_view body,
                       std::string_view content_type,
                       const std::vector<std::pair<std::string, std::string>>& headers,
                       std::string_view bearer_token = {});
  /// Sends a GET-like request and hands a 2xx body to `on_body` piece by piece as it arrives
  /// (a server-sent event stream); `on_body` returns false to stop. Any other answer comes back
  /// whole in the response. Uses a connection of its own, closed at the end. Throws
  /// Error(unavailable) when the server cannot be reached or the connection breaks.
  HttpResponse stream(std::string_view method, std::string_view target,
                      const std::vector<std::pair<std::string, std::string>>& headers,
                      std::string_view bearer_token, const std::function<bool(std::string_view)>& on_body);
  /// Breaks off a request blocked in another thread (it fails with Error(unavailable)).
  /// The only member that may be called concurrently with request().
  void abort() noexcept;
  /// Per-request timeout for subsequent requests.
  void set_timeout(int seconds);
  const HttpClientSettings& settings() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Splits "scheme://host:port" into its parts; throws Error(invalid_argument) on anything else.
struct ParsedUrl {
  bool tls = false;
  std::string host;
  std::uint16_t port = 0;
};
ParsedUrl parse_base_url(std::string_view url);

/// Percent-encodes a path segment or query value.
std::string url_encode(std::string_view text);

}  // namespace distrib
