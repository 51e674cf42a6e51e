#pragma once
// What the manager's facility sources share: the includes every facility uses, and short names
// for the JSON library and the clock.
#include <distrib/content/chunk_store.h>
#include <distrib/content/digest.h>
#include <distrib/content/packager.h>
#include <distrib/error.h>
#include <distrib/model/inventory.h>
#include <distrib/model/units.h>
#include <distrib/net/http.h>
#include <distrib/services/manager.h>
#include <distrib/version.h>

#include "model/json_codec.h"
#include "services/manager/context.h"
#include "services/manager/http_util.h"
#include "services/manager/router.h"
#include "util/fs.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>

namespace distrib::manager {

namespace bj = boost::json;
using Clock = std::chrono::steady_clock;

}  // namespace distrib::manager
