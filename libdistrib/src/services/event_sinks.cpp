// Event sink settings, the sink registry and the built-in sinks: file, syslog, webhook and exec
// (snmp lives in event_sink_snmp.cpp). Sinks only deliver; retries, cursors and filters belong to
// the EventDispatcher.
#include "services/event_sinks.h"

#include "services/process.h"
#include "util/hex.h"

#include <distrib/error.h>
#include <distrib/model/event.h>
#include <distrib/net/http.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <tuple>
#include <utility>

namespace distrib {
namespace {

std::string in_quotes(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

std::string errno_text(int err) {
  return std::generic_category().message(err);
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

[[noreturn]] void config_error(const EventSinkSettings& s, const std::string& what) {
  throw Error(ErrorKind::invalid_argument, "event sink " + in_quotes(s.name) + ": " + what);
}

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

/// Text from a peer, cut to `limit` bytes with control characters as spaces, for error messages.
std::string excerpt(std::string_view text, std::size_t limit) {
  std::string out(text.substr(0, limit));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  if (text.size() > limit) out += "...";
  return out;
}

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// "500ms", "10s", "2m": a whole number with a unit (a bare number would be ambiguous).
std::optional<std::chrono::milliseconds> parse_duration_ms(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 9) return std::nullopt;
  const auto number = std::stoll(std::string(text.substr(0, digits)));
  const auto unit = text.substr(digits);
  if (unit == "ms") return std::chrono::milliseconds(number);
  if (unit == "s") return std::chrono::seconds(number);
  if (unit == "m") return std::chrono::minutes(number);
  return std::nullopt;
}

/// Whole seconds for APIs that take seconds, never less than the sink's timeout and at least 1.
int whole_seconds(std::chrono::milliseconds timeout) {
  return static_cast<int>(std::max<std::int64_t>(1, (timeout.count() + 999) / 1000));
}

/// Closes the descriptor it owns.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// ------------------------------------------------------------------------------------------- file

/// Appends each event as one JSON line (event_to_json) to a file; flush() makes the lines durable.
class FileEventSink final : public EventSink {
 public:
  explicit FileEventSink(const EventSinkSettings& s) : path_(s.target) {
    if (path_.empty() || path_.front() != '/')
      config_error(s, "the file sink needs an absolute path, as in file:/var/log/distrib/events.jsonl, not " +
                          in_quotes(path_));
    const auto parent = std::filesystem::path(path_).parent_path();
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) config_error(s, "cannot create the directory " + parent.string() + ": " + ec.message());
    fd_.reset(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
    if (!fd_) {
      const int err = errno;
      config_error(s, "cannot open " + path_ + " for appending: " + errno_text(err));
    }
  }

  void deliver(const Event& e) override {
    if (!pending_.empty() && pending_id_ != e.id) {
      // The driver moved on (it gave up on that event): complete a line already begun, so the
      // file never holds a torn one, and forget a line never begun.
      if (started_) write_pending();
      pending_.clear();
    }
    if (pending_.empty()) {
      pending_ = event_to_json(e) + "\n";
      pending_id_ = e.id;
      started_ = false;
    }
    write_pending();
  }

  void flush() override {
    // Character devices and pipes (file:/dev/stderr) have nothing to sync.
    if (::fdatasync(fd_.get()) != 0 && errno != EINVAL && errno != EROFS) {
      const int err = errno;
      throw Error(ErrorKind::unavailable, "file " + path_ + ": fdatasync failed: " + errno_text(err));
    }
  }

 private:
  // A short write leaves the rest of the line in pending_: the retry of the same event
  // continues it instead of writing the line twice.
  void write_pending() {
    while (!pending_.empty()) {
      const auto n = ::write(fd_.get(), pending_.data(), pending_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        throw Error(ErrorKind::unavailable, "file " + path_ + ": cannot write: " + errno_text(err));
      }
      pending_.erase(0, static_cast<std::size_t>(n));
      started_ = true;
    }
  }

  std::string path_;
  UniqueFd fd_;
  std::string pending_;  ///< the part of the current line not yet written
  std::int64_t pending_id_ = 0;
  bool started_ = false;  ///< part of pending_'s line is already in the file
};

// ----------------------------------------------------------------------------------------- syslog

struct FacilityName {
  const char* name;
  int code;
};
constexpr FacilityName kFacilities[] = {
    {"kern", 0},    {"user", 1},    {"mail", 2},    {"daemon", 3},  {"auth", 4},      {"syslog", 5},
    {"lpr", 6},     {"news", 7},    {"uucp", 8},    {"cron", 9},    {"authpriv", 10}, {"ftp", 11},
    {"ntp", 12},    {"audit", 13},  {"alert", 14},  {"clock", 15},  {"local0", 16},   {"local1", 17},
    {"local2", 18}, {"local3", 19}, {"local4", 20}, {"local5", 21}, {"local6", 22},   {"local7", 23}};

int parse_facility(const EventSinkSettings& s, const std::string& text) {
  for (const auto& f : kFacilities)
    if (text == f.name) return f.code;
  if (all_digits(text) && text.size() <= 2 && std::stoi(text) <= 23) return std::stoi(text);
  config_error(s,
               "facility must be a name (kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, "
               "authpriv, ftp, ntp, audit, alert, clock, local0 to local7) or a number from 0 to 23, not " +
                   in_quotes(text));
}

/// A header field of RFC 5424: printable US-ASCII, `limit` characters at most, "-" when empty.
std::string header_field(std::string_view text, std::size_t limit) {
  if (text.empty()) return "-";
  std::string out(text.substr(0, limit));
  for (char& c : out)
    if (c < 33 || c > 126) c = '_';
  return out;
}

bool printable_ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 33 && c <= 126; });
}

std::string sd_escape(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '"' || c == '\\' || c == ']') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

/// HOST:PORT or [V6]:PORT; `what` names the syntax expected in errors.
std::pair<std::string, std::string> split_host_port(const EventSinkSettings& s, std::string_view text,
                                                    std::string_view what) {
  std::string host, port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos)
      config_error(s, "expected " + std::string(what) + ", not " + in_quotes(text));
    host = std::string(text.substr(1, close - 1));
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':')
        config_error(s, "expected " + std::string(what) + ", not " + in_quotes(text));
      port = std::string(text.substr(close + 2));
    }
  } else {
    const auto colon = text.rfind(':');
    host = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) port = std::string(text.substr(colon + 1));
  }
  if (host.empty() || !all_digits(port) || port.size() > 5 || std::stoi(port) < 1 || std::stoi(port) > 65535)
    config_error(s, "expected " + std::string(what) + " with a port from 1 to 65535, not " + in_quotes(text));
  return {host, port};
}

/// Sends each event as one RFC 5424 message to a syslog daemon: a datagram on a unix socket
/// (/dev/log) or UDP, or an octet-counted frame (RFC 6587) on TCP.
class SyslogEventSink final : public EventSink {
 public:
  explicit SyslogEventSink(const EventSinkSettings& s) : timeout_(s.timeout) {
    const std::string target = s.target.empty() ? "unix:/dev/log" : s.target;
    label_ = "syslog " + target;
    constexpr const char* kExpected = "unix:/PATH, udp:HOST:PORT or tcp:HOST:PORT";
    if (target.starts_with("unix:")) {
      kind_ = Kind::unix_socket;
      path_ = target.substr(5);
      if (path_.empty() || path_.front() != '/')
        config_error(s,
                     "syslog target " + in_quotes(target) + " needs an absolute socket path (unix:/dev/log)");
      if (path_.size() >= sizeof(sockaddr_un{}.sun_path))
        config_error(s, "syslog socket path " + path_ + " is too long");
    } else if (target.starts_with("udp:") || target.starts_with("tcp:")) {
      kind_ = target.starts_with("udp:") ? Kind::udp : Kind::tcp;
      std::tie(host_, port_) = split_host_port(s, std::string_view(target).substr(4),
                                               kind_ == Kind::udp ? "udp:HOST:PORT" : "tcp:HOST:PORT");
    } else {
      config_error(s, "syslog target must be " + std::string(kExpected) + ", not " + in_quotes(target));
    }
    const auto option = [&](const char* key) -> const std::string* {
      const auto it = s.options.find(key);
      return it == s.options.end() ? nullptr : &it->second;
    };
    if (const auto* f = option("facility")) facility_ = parse_facility(s, *f);
    if (const auto* a = option("app")) app_ = *a;
    if (app_.empty() || app_.size() > 48 || !printable_ascii(app_))
      config_error(s,
                   "app must be 1 to 48 printable ASCII characters without spaces, not " + in_quotes(app_));
    if (const auto* h = option("hostname")) {
      hostname_ = *h;
      if (hostname_.empty() || hostname_.size() > 255 || !printable_ascii(hostname_))
        config_error(s, "hostname must be 1 to 255 printable ASCII characters without spaces, not " +
                            in_quotes(hostname_));
    } else {
      char name[256] = {};
      hostname_ = ::gethostname(name, sizeof name - 1) == 0 && name[0] != '\0' ? name : "-";
    }
  }

  void deliver(const Event& e) override {
    const std::string message =
        format_syslog_5424(e, facility_, hostname_, app_, static_cast<int>(::getpid()));
    // A stream the daemon has closed (a restart, an idle timeout) still takes one write into the
    // void: look for its end first and connect afresh.
    if (fd_ && (kind_ == Kind::tcp || stream_) && peer_closed()) fd_.reset();
    if (!fd_) connect();
    if (kind_ == Kind::tcp) {
      send_all(std::to_string(message.size()) + " " + message);
    } else if (stream_) {
      send_all(message + '\0');  // what syslog(3) does on a stream /dev/log
    } else {
      const auto n = ::send(fd_.get(), message.data(), message.size(), MSG_NOSIGNAL);
      if (n < 0) fail("cannot send", errno);
      if (static_cast<std::size_t>(n) != message.size()) fail("the datagram was cut short", EMSGSIZE);
    }
  }

 private:
  enum class Kind { unix_socket, udp, tcp };

  [[noreturn]] void fail(const std::string& what, int err) {
    fd_.reset();  // connect afresh next time: the daemon may have restarted
    std::string cause = errno_text(err);
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINPROGRESS)
      cause = "timed out after " + std::to_string(timeout_.count()) + " ms";
    throw Error(ErrorKind::unavailable, label_ + ": " + what + ": " + cause);
  }

  bool peer_closed() const {
    char byte = 0;
    const auto n = ::recv(fd_.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }

  void set_send_timeout(int fd) const {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout_.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout_.count() % 1000) * 1000);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // also bounds a TCP connect
  }

  // /dev/log is a datagram socket under journald and rsyslog, a stream one under some syslog-ngs.
  void connect_unix() {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, sizeof addr.sun_path - 1);
    for (const int type : {SOCK_DGRAM, SOCK_STREAM}) {
      UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
      if (!fd) fail("cannot create a socket", errno);
      set_send_timeout(fd.get());
      if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
        fd_ = std::move(fd);
        stream_ = type == SOCK_STREAM;
        return;
      }
      const int err = errno;
      if (err != EPROTOTYPE || type == SOCK_STREAM) fail("cannot connect", err);
    }
  }

  void connect() {
    if (kind_ == Kind::unix_socket) return connect_unix();
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = kind_ == Kind::udp ? SOCK_DGRAM : SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(host_.c_str(), port_.c_str(), &hints, &found);
    if (rc != 0)
      throw Error(ErrorKind::unavailable, label_ + ": cannot resolve " + host_ + ": " + ::gai_strerror(rc));
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, &::freeaddrinfo);
    int err = EHOSTUNREACH;
    for (const addrinfo* a = list.get(); a != nullptr; a = a->ai_next) {
      UniqueFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
      if (!fd) {
        err = errno;
        continue;
      }
      set_send_timeout(fd.get());
      if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) == 0) {
        fd_ = std::move(fd);
        return;
      }
      err = errno;
    }
    fail("cannot connect", err);
  }

  void send_all(std::string_view data) {
    while (!data.empty()) {
      const auto n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      // A frame cut off by an error is discarded with the connection: the receiver never
      // sees half a message.
      if (n <= 0) fail("cannot send", n < 0 ? errno : EPIPE);
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  std::string label_;  ///< "syslog TARGET", for errors
  Kind kind_ = Kind::unix_socket;
  std::string path_, host_, port_;
  int facility_ = 3;  // daemon
  std::string app_ = "distribd";
  std::string hostname_;
  std::chrono::milliseconds timeout_;
  UniqueFd fd_;
  bool stream_ = false;  ///< a unix stream socket (NUL-terminated messages)
};

// ---------------------------------------------------------------------------------------- webhook

/// POSTs each event as JSON to a URL; any 2xx answer means delivered. With a secret, the body is
/// signed (X-Distrib-Signature: sha256=HMAC) so the receiver can tell it came from us.
class WebhookEventSink final : public EventSink {
 public:
  // client_settings() also sets path_ and label_, which are declared (so constructed) before client_.
  explicit WebhookEventSink(const EventSinkSettings& s) : client_(make_client(s, client_settings(s))) {
    const auto secret = s.options.find("secret");
    const auto secret_file = s.options.find("secret-file");
    if (secret != s.options.end() && secret_file != s.options.end())
      config_error(s, "give secret or secret-file, not both");
    if (secret != s.options.end()) {
      if (secret->second.empty()) config_error(s, "secret must not be empty");
      secret_ = secret->second;
    } else if (secret_file != s.options.end()) {
      const std::string& file = secret_file->second;
      std::ifstream in(file, std::ios::binary);
      if (!in) {
        const int err = errno;
        config_error(s, "cannot read secret-file " + file + ": " + errno_text(err));
      }
      std::ostringstream text;
      text << in.rdbuf();
      secret_ = trim(text.str());
      if (secret_.empty()) config_error(s, "secret-file " + file + " is empty");
    }
  }

  void deliver(const Event& e) override {
    const std::string body = event_to_json(e);
    std::vector<std::pair<std::string, std::string>> headers{{"X-Distrib-Event", e.type},
                                                             {"X-Distrib-Event-Id", std::to_string(e.id)}};
    if (!secret_.empty())
      headers.emplace_back("X-Distrib-Signature", "sha256=" + hmac_sha256_hex(secret_, body));
    HttpResponse res;
    try {
      res = client_.request("POST", path_, body, "application/json", headers);
    } catch (const Error& err) {
      throw Error(ErrorKind::unavailable, "webhook " + label_ + ": " + err.what());
    }
    if (res.status < 200 || res.status > 299)
      throw Error(ErrorKind::unavailable, "webhook " + label_ + ": HTTP " + std::to_string(res.status) +
                                              (res.body.empty() ? "" : ": " + excerpt(res.body, 200)));
  }

 private:
  HttpClientSettings client_settings(const EventSinkSettings& s) {
    const std::string& url = s.target;
    const auto scheme_end = url.find("://");
    if (!(url.starts_with("http://") || url.starts_with("https://")))
      config_error(s, "webhook target must be an http:// or https:// URL, not " + in_quotes(url));
    const auto path_start = url.find_first_of("/?#", scheme_end + 3);
    HttpClientSettings cs;
    cs.base_url = url.substr(0, path_start);
    path_ = path_start == std::string::npos ? "/" : url.substr(path_start);
    if (const auto hash = path_.find('#'); hash != std::string::npos) path_.erase(hash);  // never sent
    if (path_.empty() || path_.front() != '/') path_.insert(0, "/");
    // The query may carry a token: errors name the URL without it.
    label_ = cs.base_url + path_.substr(0, path_.find('?'));
    try {
      parse_base_url(cs.base_url);
    } catch (const Error& e) {
      config_error(s, e.what());
    }
    if (const auto ca = s.options.find("ca-file"); ca != s.options.end()) {
      if (!url.starts_with("https://")) config_error(s, "ca-file applies to https:// URLs only");
      cs.ca_file = ca->second;
    }
    cs.connect_timeout_seconds = whole_seconds(s.timeout);
    cs.timeout_seconds = whole_seconds(s.timeout);
    return cs;
  }

  static HttpClient make_client(const EventSinkSettings& s, const HttpClientSettings& cs) {
    try {
      return HttpClient(cs);
    } catch (const Error& e) {
      config_error(s, e.what());  // an unreadable ca-file
    }
  }

  std::string path_;   ///< path and query posted to
  std::string label_;  ///< the URL without its query, for errors
  std::string secret_;
  HttpClient client_;
};

// ------------------------------------------------------------------------------------------- exec

std::string last_line(std::string_view output) {
  while (!output.empty() && (output.back() == '\n' || output.back() == '\r' || output.back() == ' '))
    output.remove_suffix(1);
  const auto nl = output.rfind('\n');
  if (nl != std::string_view::npos) output.remove_prefix(nl + 1);
  return excerpt(output, 200);
}

/// Runs a command (/bin/sh -c, in "/", its own process group) with the event in its environment;
/// exit status 0 means delivered.
class ExecEventSink final : public EventSink {
 public:
  explicit ExecEventSink(const EventSinkSettings& s)
      : command_(trim(s.target)), timeout_(whole_seconds(s.timeout)) {
    if (command_.empty())
      config_error(s,
                   "exec needs a command, as in exec:/usr/local/libexec/distrib-event (it cannot contain "
                   "';', which separates options: put a longer command line in a script)");
  }

  void deliver(const Event& e) override {
    const std::map<std::string, std::string> env{
        {"DISTRIB_EVENT_ID", std::to_string(e.id)},
        {"DISTRIB_EVENT_TYPE", e.type},
        {"DISTRIB_EVENT_SEVERITY", std::string(to_string(e.severity))},
        {"DISTRIB_EVENT_TIME", format_rfc3339_ms(e.at_ms)},
        {"DISTRIB_EVENT_AT_MS", std::to_string(e.at_ms)},
        {"DISTRIB_EVENT_JOB", e.job_id == 0 ? std::string() : std::to_string(e.job_id)},
        {"DISTRIB_EVENT_HOST", e.host_id},
        {"DISTRIB_EVENT_SUBJECT", e.subject},
        {"DISTRIB_EVENT_MESSAGE", e.message},
        {"DISTRIB_EVENT_JSON", event_to_json(e)},
    };
    CommandResult r;
    try {
      r = run_command(command_, "/", env, std::chrono::seconds(timeout_), 4096);
    } catch (const Error& err) {
      throw Error(ErrorKind::unavailable, "exec " + command_ + ": " + err.what());
    }
    if (r.timed_out)
      throw Error(ErrorKind::unavailable,
                  "exec " + command_ + ": killed after " + std::to_string(timeout_) + " s (timeout)");
    if (r.exit_code != 0) {
      const auto line = last_line(r.output_tail);
      throw Error(ErrorKind::unavailable, "exec " + command_ + ": exit " + std::to_string(r.exit_code) +
                                              (line.empty() ? "" : ": " + line));
    }
  }

 private:
  std::string command_;
  int timeout_;  ///< seconds
};

}  // namespace

// ------------------------------------------------------------------------------ settings, registry

EventSinkSettings parse_event_sink(const std::string& spec) {
  constexpr const char* kSyntax = "NAME=TYPE:TARGET[;key=value]...";
  const auto eq = spec.find('=');
  if (eq == std::string::npos)
    throw Error(ErrorKind::invalid_argument, "event sink " + in_quotes(spec) + ": expected " + kSyntax +
                                                 ", e.g. ops=file:/var/log/distrib/events.jsonl");
  EventSinkSettings s;
  s.name = spec.substr(0, eq);
  if (s.name.empty() || s.name.size() > 64 ||
      s.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") != std::string::npos)
    // Without a name, the spec up to its options (which may hold a secret) says which one it is.
    throw Error(ErrorKind::invalid_argument,
                "event sink " + in_quotes(s.name.empty() ? spec.substr(0, spec.find(';')) : s.name) +
                    ": the name (before the first '=') must be 1 to 64 of a-z, 0-9, '_' and '-', as in " +
                    kSyntax);

  std::vector<std::string> parts;
  for (std::size_t start = eq + 1;;) {
    const auto semi = spec.find(';', start);
    parts.push_back(spec.substr(start, semi == std::string::npos ? std::string::npos : semi - start));
    if (semi == std::string::npos) break;
    start = semi + 1;
  }
  const auto colon = parts[0].find(':');
  s.type = parts[0].substr(0, colon);
  if (colon != std::string::npos) s.target = parts[0].substr(colon + 1);
  if (s.type.empty())
    config_error(s, "expected TYPE:TARGET after the name, as in ops=file:/var/log/distrib/events.jsonl");

  std::set<std::string> seen;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    const auto peq = part.find('=');
    if (peq == std::string::npos || peq == 0)
      config_error(
          s, "option " + in_quotes(part) + " is not key=value (options follow the target, separated by ';')");
    const std::string key = part.substr(0, peq);
    const std::string value = part.substr(peq + 1);
    if (!seen.insert(key).second) config_error(s, "option " + in_quotes(key) + " is given twice");
    if (key == "types") {
      try {
        s.filter.types = parse_event_type_patterns(value);
      } catch (const Error& e) {
        config_error(s, e.what());
      }
    } else if (key == "severity") {
      try {
        s.filter.min_severity = parse_severity(value);
      } catch (const Error& e) {
        config_error(s, e.what());
      }
    } else if (key == "max-attempts") {
      if (!all_digits(value) || value.size() > 9)
        config_error(s, "max-attempts must be a whole number >= 0, not " + in_quotes(value));
      s.max_attempts = std::stoi(value);
    } else if (key == "timeout") {
      const auto timeout = parse_duration_ms(value);
      if (!timeout || *timeout < std::chrono::milliseconds(100) || *timeout > std::chrono::minutes(10))
        config_error(s, "timeout must be a duration from 100ms to 10m such as 500ms, 10s or 2m, not " +
                            in_quotes(value));
      s.timeout = *timeout;
    } else {
      s.options.emplace(key, value);
    }
  }
  return s;
}

void EventSinkRegistry::add(const std::string& type, std::vector<std::string> options, Factory factory) {
  factories_.add(type, std::move(factory));
  options_[type] = std::move(options);
}

std::unique_ptr<EventSink> EventSinkRegistry::create(const EventSinkSettings& settings) const {
  if (!factories_.contains(settings.type))
    config_error(settings,
                 "unknown type " + in_quotes(settings.type) + " (known: " + factories_.known_list() + ")");
  const auto& known = options_.at(settings.type);
  for (const auto& [key, value] : settings.options) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::vector<std::string> keys = known;
    for (const char* common : {"types", "severity", "max-attempts", "timeout"}) keys.emplace_back(common);
    config_error(settings, "unknown option " + in_quotes(key) + " for type " + settings.type +
                               " (known: " + join(keys) + ")");
  }
  auto sink = factories_.make(settings.type, settings);
  if (!sink) config_error(settings, "the " + settings.type + " factory made no sink");
  return sink;
}

// -------------------------------------------------------------------------------------- built-ins

std::string format_syslog_5424(const Event& e, int facility, const std::string& hostname,
                               const std::string& app, int pid) {
  const int severity = e.severity == Severity::error ? 3 : e.severity == Severity::warning ? 4 : 6;
  std::string out = "<" + std::to_string(facility * 8 + severity) + ">1 ";
  out += format_rfc3339_ms(e.at_ms);
  out += ' ';
  out += header_field(hostname, 255);
  out += ' ';
  out += header_field(app, 48);
  out += ' ';
  out += std::to_string(pid);
  out += ' ';
  out += header_field(e.type, 32);
  out += " [distrib@53864 id=\"" + std::to_string(e.id) + "\" type=\"" + sd_escape(e.type) + "\"";
  if (e.job_id != 0) out += " job=\"" + std::to_string(e.job_id) + "\"";
  if (!e.host_id.empty()) out += " host=\"" + sd_escape(e.host_id) + "\"";
  if (!e.subject.empty()) out += " subject=\"" + sd_escape(e.subject) + "\"";
  out += ']';
  if (!e.message.empty()) {
    out += ' ';
    out += e.message;
  }
  return out;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len) == nullptr)
    throw Error(ErrorKind::internal, "HMAC-SHA256 failed");
  return util::to_hex(mac, len);
}

void register_builtin_event_sinks(EventSinkRegistry& registry) {
  registry.add("file", {}, [](const EventSinkSettings& s) { return std::make_unique<FileEventSink>(s); });
  registry.add("syslog", {"facility", "app", "hostname"},
               [](const EventSinkSettings& s) { return std::make_unique<SyslogEventSink>(s); });
  registry.add("webhook", {"secret", "secret-file", "ca-file"},
               [](const EventSinkSettings& s) { return std::make_unique<WebhookEventSink>(s); });
  registry.add("exec", {}, [](const EventSinkSettings& s) { return std::make_unique<ExecEventSink>(s); });
  register_snmp_event_sink(registry);
}

}  // namespace distrib
