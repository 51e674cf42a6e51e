#pragma once
// What the agent's part sources share: the includes every part uses, and short names for the JSON
// library and std::filesystem.
#include <distrib/content/chunk_store.h>
#include <distrib/content/digest.h>
#include <distrib/content/packager.h>
#include <distrib/error.h>
#include <distrib/model/inventory.h>
#include <distrib/model/units.h>
#include <distrib/net/http.h>
#include <distrib/services/agent.h>
#include <distrib/version.h>

#include "model/json_codec.h"
#include "services/parent_link.h"
#include "util/fs.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace distrib::agent {

namespace bj = boost::json;
namespace stdfs = std::filesystem;

/// Seconds a request to the parent may go without progress (no byte sent or received) before
/// it is abandoned and the parent tried again: a hung parent keeps its connections open.
inline constexpr int kDataTimeoutSeconds = 30;

}  // namespace distrib::agent
