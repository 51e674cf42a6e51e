#pragma once
// The agent's state and the declarations of its parts. Agent::Impl is one class whose member
// functions are defined by part, one source file each under services/agent/ (see the groups
// below and docs/ARCHITECTURE.md); agent.cpp keeps the public class.
#include <distrib/content/chunk_store.h>
#include <distrib/content/packager.h>
#include <distrib/error.h>
#include <distrib/model/units.h>
#include <distrib/net/http.h>
#include <distrib/services/agent.h>
#include <distrib/version.h>

#include "model/json_codec.h"
#include "services/parent_link.h"
#include "services/process.h"
#include "services/system_info.h"
#include "util/fs.h"

#include <spdlog/spdlog.h>

#include <distrib/content/digest.h>
#include <distrib/model/inventory.h>

#include <arpa/inet.h>
#include <fnmatch.h>
#include <glob.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

namespace distrib {

namespace bj = boost::json;
namespace stdfs = std::filesystem;

namespace agent_detail {

// Thrown inside entry processing when the manager says the entry is no longer ours to run.
struct EntryWithdrawn {
  EntryState state;
};

}  // namespace agent_detail
using agent_detail::EntryWithdrawn;

struct Agent::Impl {
  AgentSettings settings;
  std::string host_id;
  std::unique_ptr<ChunkStore> chunks;
  std::unique_ptr<ParentLink> link;
  std::unique_ptr<ClientSet> clients;
  HttpClient* http = nullptr;  // the current parent's client
  std::string parent_url;      // the parent registered with
  std::string server_id;       // its identifier: entry ids are only unique per server
  std::atomic<bool> stopping{false};
  // Orderly stop: installs timed "at agent stop" run until the deadline.
  std::atomic<bool> in_stop_phase{false};
  std::chrono::steady_clock::time_point stop_deadline;
  bool fresh_start = true;  // the first work answer after starting (at-start installs are due)
  std::unique_ptr<HttpClient> stop_client;
  std::mutex sleep_mutex;
  std::condition_variable sleep_cv;
  bool registered = false;
  int backoff_ms = 0;
  std::chrono::steady_clock::time_point outage_since;
  std::minstd_rand rng{std::random_device{}()};
  std::int64_t next_seq = 1;
  // Entry id → state the manager last confirmed (from report results).
  std::map<std::int64_t, EntryState> confirmed;

  // Inventory: collectors, and the thread that reports periodically and on change.
  std::vector<std::unique_ptr<InventoryCollector>> platform;
  std::vector<InventoryCollector*> collectors;
  std::thread inventory_thread;
  std::mutex inventory_mutex;
  std::condition_variable inventory_cv;
  bool inventory_poked = false;
  std::atomic<bool> registered_once{false};
  std::shared_ptr<HttpClient> inventory_client;  // the thread's current client (aborted on stop)

  stdfs::path outbox_dir() const { return settings.state_dir / "outbox"; }
  stdfs::path installed_file() const { return settings.state_dir / "installed.json"; }

  // --- small utilities ----------------------------------------------------------------

  // --- durable records ----------------------------------------------------------------

  // --- work ---------------------------------------------------------------------------

  // --- transfer: segments of whole chunks, one request per segment, paced when split ------

  struct Transfer {
    std::int64_t entry_id = 0;
    std::int32_t attempt = 1;
    SplitSpec offered;  // what the server offers for this hop
    TransferProgress progress;
    std::size_t fetched_chunks = 0;
  };

  // --- inventory ----------------------------------------------------------------------------

  stdfs::path fields_file() const { return settings.state_dir / "inventory-fields.json"; }
  stdfs::path inventory_state_file() const { return settings.state_dir / "inventory-state.json"; }

  // --- remote collection --------------------------------------------------------------------

  // --- parts: each group is defined in services/agent/<name>.cpp

  // link.cpp
  stdfs::path journal_dir() const;
  void sleep_ms(int ms);
  void failed_contact(const std::string& why);
  bj::object call(std::string_view method, std::string_view target, const bj::value& body);
  std::optional<EntryState> journal_state(std::int64_t entry_id, std::int32_t attempt);
  void write_journal(std::int64_t entry_id, std::int32_t attempt, EntryState state);
  void report(std::int64_t entry_id, std::int32_t attempt, EntryState state, std::string message = {},
              std::optional<int> exit_code = {}, std::string output_tail = {},
              TransferProgress progress = {});
  void flush_outbox();
  void register_with_parent();
  bj::object join_call(const std::string& group, const std::string& password, bool leave, const char* how);

  // transfer.cpp
  bool pause(int seconds);
  void fetch_chunks(const Manifest& m, std::vector<ChunkRef> wanted, Transfer& t);
  SplitSpec check_transfer(Transfer& t);
  bool pause_between_segments(Transfer& t, SplitSpec& split);
  bool transfer(const Manifest& m, Transfer& t);

  // install.cpp
  bj::object load_installed();
  stdfs::path install_target(const Manifest& m) const;
  void place_payload(const stdfs::path& archive, const stdfs::path& target, std::int64_t entry_id);
  void install(const bj::object& item, std::int64_t entry_id, std::int32_t attempt);

  // inventory.cpp
  void add_user_items(InventoryItems& items);
  static std::optional<std::vector<InventoryField>> cached_fields(const stdfs::path& state_dir);
  InventoryItems collect_inventory(InventoryScope scope);
  bj::object send_inventory(HttpClient& client, InventoryScope scope, const InventoryItems& items);
  void report_inventory_now(InventoryScope scope, std::int64_t entry_id, std::int32_t attempt);
  void poke_inventory();
  void inventory_check();
  void inventory_loop();

  // collection.cpp
  bool collect_allowed(const stdfs::path& canonical) const;
  void collect_files(const bj::object& item, std::int64_t entry_id, std::int32_t attempt);

  // loop.cpp
  bool abandoning() const;
  void process(const bj::object& item);
  void run();
  bool process_work(const bj::array& work);
  void stop_phase();
};

}  // namespace distrib
