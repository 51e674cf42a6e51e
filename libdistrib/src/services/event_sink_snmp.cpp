// The snmp event sink: each event as an SNMPv2c trap through net-snmp's single-session API.
//
// Varbinds, under the base OID (default 1.3.6.1.4.1.8072.9999.7184, net-snmp's experimental arc):
//   sysUpTime.0       timeticks since the sink was created
//   snmpTrapOID.0     BASE.0.N, N = 1 info, 2 warning, 3 error
//   BASE.1.1 type, .1.2 severity, .1.3 time (RFC 3339), .1.4 event id (Counter64), .1.5 job id,
//   .1.6 host id, .1.7 subject, .1.8 message (strings; empty when not set)
#include "services/event_sinks.h"

#include <distrib/error.h>
#include <distrib/model/event.h>

#include <net-snmp/net-snmp-config.h>
#include <net-snmp/net-snmp-includes.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace distrib {
namespace {

constexpr const char* kDefaultBaseOid = "1.3.6.1.4.1.8072.9999.7184";
constexpr oid kSysUpTime[] = {1, 3, 6, 1, 2, 1, 1, 3, 0};
constexpr oid kSnmpTrapOid[] = {1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0};

// net-snmp keeps global state (request ids, the transport list, logging) and this build is not
// thread-safe (no NETSNMP_REENTRANT): every call into it from the sinks' delivery threads is
// serialised here.
std::mutex& library_mutex() {
  static std::mutex mutex;
  return mutex;
}

/// net-snmp's own messages go to our log instead of stderr.
int forward_log(int, int, void* server_arg, void*) {
  const auto* m = static_cast<const snmp_log_message*>(server_arg);
  if (m == nullptr || m->msg == nullptr) return 0;
  std::string text(m->msg);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (text.empty()) return 0;
  if (m->priority <= LOG_ERR)
    spdlog::error("net-snmp: {}", text);
  else if (m->priority == LOG_WARNING)
    spdlog::warn("net-snmp: {}", text);
  else if (m->priority <= LOG_INFO)
    spdlog::info("net-snmp: {}", text);
  else
    spdlog::debug("net-snmp: {}", text);
  return 0;
}

/// Once per process: no configuration or persistent files, no MIBs (traps are built from numeric
/// OIDs; loading the default MIB list prints hundreds of warnings where the MIBs are missing).
void init_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DONT_READ_CONFIGS, 1);
    netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_PERSISTENT_LOAD, 1);
    netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_PERSISTENT_SAVE, 1);
    // An empty module list, as the -Y option would set it; an operator's MIBS variable still wins.
    static char no_mibs[] = "mibs :";
    netsnmp_config_remember(no_mibs);
    snmp_register_callback(SNMP_CALLBACK_LIBRARY, SNMP_CALLBACK_LOGGING, forward_log, nullptr);
    snmp_enable_calllog();
    init_snmp("distribd");
  });
}

[[noreturn]] void settings_error(const EventSinkSettings& s, const std::string& what) {
  throw Error(ErrorKind::invalid_argument, "event sink \"" + s.name + "\": " + what);
}

/// "1.3.6.1.4.1.8072.9999.7184" (a leading '.' allowed) to sub-identifiers; empty when malformed.
std::vector<oid> parse_numeric_oid(std::string_view text) {
  if (text.starts_with('.')) text.remove_prefix(1);
  std::vector<oid> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto dot = std::min(text.find('.', start), text.size());
    const auto part = text.substr(start, dot - start);
    if (part.empty() || part.size() > 10 ||
        !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return {};
    const unsigned long long value = std::stoull(std::string(part));
    if (value > 0xffffffffULL) return {};  // sub-identifiers are 32-bit
    out.push_back(static_cast<oid>(value));
    start = dot + 1;
  }
  return out;
}

struct SessionCloser {
  void operator()(void* session) const noexcept { snmp_sess_close(session); }
};
struct PduFree {
  void operator()(netsnmp_pdu* pdu) const noexcept { snmp_free_pdu(pdu); }
};

/// Sends each event as an SNMPv2c trap to one manager (UDP, no acknowledgement: delivered means
/// sent).
class SnmpEventSink final : public EventSink {
 public:
  explicit SnmpEventSink(const EventSinkSettings& s) : started_(std::chrono::steady_clock::now()) {
    std::string_view target = s.target;
    std::string host, port = "162";
    if (target.starts_with('[')) {
      const auto close = target.find(']');
      if (close == std::string_view::npos || (close + 1 < target.size() && target[close + 1] != ':'))
        settings_error(s, "snmp target must be HOST or HOST:PORT, not \"" + s.target + "\"");
      host = std::string(target.substr(1, close - 1));
      if (close + 1 < target.size()) port = std::string(target.substr(close + 2));
    } else if (const auto colon = target.rfind(':'); colon != std::string_view::npos) {
      host = std::string(target.substr(0, colon));
      port = std::string(target.substr(colon + 1));
    } else {
      host = std::string(target);
    }
    if (host.empty())
      settings_error(s,
                     "snmp needs the trap receiver as HOST or HOST:PORT, as in snmp:nms.example.com or "
                     "snmp:192.0.2.7:162");
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(port) < 1 || std::stoi(port) > 65535)
      settings_error(
          s, "snmp target must be HOST or HOST:PORT with a port from 1 to 65535, not \"" + s.target + "\"");
    label_ = "snmp " + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
    // net-snmp's transport syntax; an IPv6 address needs udp6 and brackets.
    peername_ =
        host.find(':') != std::string::npos ? "udp6:[" + host + "]:" + port : "udp:" + host + ":" + port;

    const auto community = s.options.find("community");
    if (community != s.options.end()) {
      if (community->second.empty()) settings_error(s, "community must not be empty");
      community_ = community->second;
    }
    const auto base = s.options.find("oid");
    const std::string base_text = base == s.options.end() ? kDefaultBaseOid : base->second;
    base_ = parse_numeric_oid(base_text);
    if (base_.size() < 2 || base_.size() + 2 > MAX_OID_LEN)
      settings_error(s, "oid must be a numeric OID such as " + std::string(kDefaultBaseOid) + ", not \"" +
                            base_text + "\"");
    timeout_us_ = static_cast<long>(s.timeout.count()) * 1000;
  }

  ~SnmpEventSink() override {
    std::lock_guard lock(library_mutex());
    session_.reset();
  }
  SnmpEventSink(const SnmpEventSink&) = delete;
  SnmpEventSink& operator=(const SnmpEventSink&) = delete;

  void deliver(const Event& e) override {
    init_library();
    std::lock_guard lock(library_mutex());
    // Opened on first use (and again after a failure), so a name that does not resolve yet is a
    // delivery failure to retry, not a start-up error.
    if (!session_) open();
    std::unique_ptr<netsnmp_pdu, PduFree> pdu(snmp_pdu_create(SNMP_MSG_TRAP2));
    if (!pdu) throw Error(ErrorKind::internal, label_ + ": cannot create a PDU");

    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
    const u_long ticks = static_cast<u_long>(elapsed.count() / 10) & 0xffffffffUL;  // hundredths, wrapping
    add(pdu.get(), kSysUpTime, std::size(kSysUpTime), ASN_TIMETICKS, &ticks, sizeof ticks);
    const oid level = e.severity == Severity::error ? 3 : e.severity == Severity::warning ? 2 : 1;
    const auto trap = with(0, level);
    add(pdu.get(), kSnmpTrapOid, std::size(kSnmpTrapOid), ASN_OBJECT_ID, trap.data(),
        trap.size() * sizeof(oid));
    add_string(pdu.get(), 1, e.type);
    add_string(pdu.get(), 2, std::string(to_string(e.severity)));
    add_string(pdu.get(), 3, format_rfc3339_ms(e.at_ms));
    const auto id = static_cast<std::uint64_t>(e.id);
    counter64 id64{};
    id64.high = static_cast<u_long>(id >> 32);
    id64.low = static_cast<u_long>(id & 0xffffffffULL);
    const auto id_oid = with(1, 4);
    add(pdu.get(), id_oid.data(), id_oid.size(), ASN_COUNTER64, &id64, sizeof id64);
    add_string(pdu.get(), 5, e.job_id == 0 ? std::string() : std::to_string(e.job_id));
    add_string(pdu.get(), 6, e.host_id);
    add_string(pdu.get(), 7, e.subject);
    add_string(pdu.get(), 8, e.message);

    if (snmp_sess_send(session_.get(), pdu.get()) == 0) {
      const std::string why = session_error();
      session_.reset();
      throw Error(ErrorKind::unavailable,
                  label_ + ": cannot send the trap: " + why);  // the PDU is freed here
    }
    (void)pdu.release();  // sent: net-snmp freed it (a trap expects no response)
  }

 private:
  std::vector<oid> with(oid a, oid b) const {
    std::vector<oid> out = base_;
    out.push_back(a);
    out.push_back(b);
    return out;
  }

  void add(netsnmp_pdu* pdu, const oid* name, std::size_t length, u_char type, const void* value,
           std::size_t size) {
    if (snmp_pdu_add_variable(pdu, name, length, type, value, size) == nullptr)
      throw Error(ErrorKind::internal, label_ + ": cannot add a variable to the trap");
  }

  void add_string(netsnmp_pdu* pdu, oid field, const std::string& value) {
    const auto name = with(1, field);
    add(pdu, name.data(), name.size(), ASN_OCTET_STR, value.data(), value.size());
  }

  void open() {
    netsnmp_session settings;
    snmp_sess_init(&settings);
    settings.version = SNMP_VERSION_2c;
    settings.peername = peername_.data();  // copied by snmp_sess_open
    settings.community = reinterpret_cast<u_char*>(community_.data());
    settings.community_len = community_.size();
    settings.retries = 0;
    settings.timeout = timeout_us_;
    void* session = snmp_sess_open(&settings);
    if (session == nullptr) {
      int lib_error = 0, sys_error = 0;
      char* text = nullptr;
      snmp_error(&settings, &lib_error, &sys_error, &text);
      const std::string why = text != nullptr ? text : "unknown error";
      std::free(text);
      throw Error(ErrorKind::unavailable, label_ + ": cannot open a session: " + why);
    }
    session_.reset(session);
  }

  std::string session_error() {
    int lib_error = 0, sys_error = 0;
    char* text = nullptr;
    snmp_sess_error(session_.get(), &lib_error, &sys_error, &text);
    std::string why = text != nullptr ? text : "unknown error";
    std::free(text);
    return why;
  }

  std::string label_;  ///< "snmp HOST:PORT", for errors
  std::string peername_;
  std::string community_ = "public";
  std::vector<oid> base_;
  long timeout_us_ = 0;
  std::chrono::steady_clock::time_point started_;
  std::unique_ptr<void, SessionCloser> session_;
};

}  // namespace

void register_snmp_event_sink(EventSinkRegistry& registry) {
  registry.add("snmp", {"community", "oid"},
               [](const EventSinkSettings& s) { return std::make_unique<SnmpEventSink>(s); });
}

}  // namespace distrib
