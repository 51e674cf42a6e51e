#pragma once
// Internals of the built-in event sinks (services/event_sinks.cpp, event_sink_snmp.cpp), visible
// to the unit tests.
#include <distrib/services/events.h>

#include <string>
#include <string_view>

namespace distrib {

/// One RFC 5424 syslog message (no framing, no trailing newline):
///   <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [distrib@53864 id="…" type="…" …] MSG
/// PRI = facility * 8 + the severity (info 6, warning 4, error 3); MSGID is the event type;
/// job, host and subject parameters only when set; header fields are cut to the RFC's lengths
/// and anything outside printable US-ASCII in them becomes '_'.
std::string format_syslog_5424(const Event& e, int facility, const std::string& hostname,
                               const std::string& app, int pid);

/// Lower-case hex HMAC-SHA256 of `data` keyed with `key` (the webhook's X-Distrib-Signature).
std::string hmac_sha256_hex(std::string_view key, std::string_view data);

/// The snmp sink (SNMPv2c traps through net-snmp); called by register_builtin_event_sinks.
void register_snmp_event_sink(EventSinkRegistry& registry);

}  // namespace distrib
