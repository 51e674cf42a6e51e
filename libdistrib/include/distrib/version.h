#pragma once
namespace distrib {
/// Version of the library, e.g. "0.1.0".
const char* version() noexcept;
/// Version of the wire protocol spoken under /v1.
inline constexpr int kProtocolVersion = 1;
}  // namespace distrib
