#pragma once
// Active/standby managers of one cluster: the lease naming the active one and its changes of holder.
#include <cstdint>
#include <string>

namespace distrib {

/// The lease that names the active manager of a cluster (db-lease coordinator). Times are
/// milliseconds since the epoch on the nodes' clocks (keep them synchronised).
struct LeaseRecord {
  std::string name;
  std::string holder;      ///< node name; empty: nobody
  std::int64_t token = 0;  ///< increases at every change of holder
  std::int64_t expires_at_ms = 0;
  std::int64_t since_ms = 0;  ///< when the holder took it
};
/// One change of holder.
struct Takeover {
  std::string holder;
  std::string previous;
  std::int64_t token = 0;
  std::int64_t at_ms = 0;
  std::int64_t gap_ms = 0;  ///< from the previous holder's expiry (or release) to the takeover
};

}  // namespace distrib
