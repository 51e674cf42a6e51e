// The agent: register, long-poll, fetch and verify, install, report through a durable outbox.
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

namespace {

// Thrown inside entry processing when the manager says the entry is no longer ours to run.
struct EntryWithdrawn {
  EntryState state;
};

}  // namespace

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
  stdfs::path journal_dir() const {
    return settings.state_dir / "entries" / (server_id.empty() ? std::string("default") : server_id);
  }
  stdfs::path installed_file() const { return settings.state_dir / "installed.json"; }

  // --- small utilities ----------------------------------------------------------------

  // Should entry processing give up (a stop, or the stop phase's time is over)?
  bool abandoning() const {
    if (!stopping) return false;
    return !in_stop_phase || std::chrono::steady_clock::now() > stop_deadline;
  }

  void sleep_ms(int ms) {
    std::unique_lock lock(sleep_mutex);
    sleep_cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping.load(); });
  }

  void failed_contact(const std::string& why) {
    // Another parent to try: go to it at once; back off only when every parent failed.
    registered = false;
    if (!link->failed(link->current())) {
      spdlog::warn("{}; trying the next parent", why);
      return;
    }
    // Exponential backoff with jitter (a wait between half and all of the backoff), so that
    // thousands of agents do not return in step. The first 30 s of an outage retry at least
    // every second: a manager failing over to its standby is back within seconds.
    const auto now = std::chrono::steady_clock::now();
    if (backoff_ms == 0) outage_since = now;
    const int cap = now - outage_since < std::chrono::seconds(30) ? std::min(1000, settings.retry_max_ms)
                                                                  : settings.retry_max_ms;
    backoff_ms = backoff_ms == 0 ? settings.retry_min_ms : std::min(backoff_ms * 2, cap);
    std::uniform_int_distribution<int> jitter(backoff_ms / 2, backoff_ms);
    const int wait = jitter(rng);
    spdlog::warn("{}; retrying in {} ms (backoff {} ms)", why, wait, backoff_ms);
    sleep_ms(wait);
  }

  bj::object call(std::string_view method, std::string_view target, const bj::value& body) {
    if (!http) throw Error(ErrorKind::unavailable, "not registered with a parent yet");
    return call_parent(*http, method, target, body);
  }

  // --- durable records ----------------------------------------------------------------

  bj::object load_installed() {
    try {
      return json::parse_object(fs::read_file(installed_file()));
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::not_found) spdlog::warn("installed package record unreadable: {}", e.what());
      return {};
    }
  }

  std::optional<EntryState> journal_state(std::int64_t entry_id, std::int32_t attempt) {
    try {
      auto o = json::parse_object(fs::read_file(journal_dir() / (std::to_string(entry_id) + ".json")));
      if (json::get_int(o, "attempt", 1) != attempt) return std::nullopt;
      return parse_entry_state(json::get_string(o, "state"));
    } catch (const Error&) {
      return std::nullopt;
    }
  }

  void write_journal(std::int64_t entry_id, std::int32_t attempt, EntryState state) {
    fs::write_file_atomic(
        journal_dir() / (std::to_string(entry_id) + ".json"),
        bj::serialize(bj::object{
            {"entry_id", entry_id}, {"attempt", attempt}, {"state", std::string(to_string(state))}}));
  }

  // Queues a report durably (journal first, then outbox), then tries to deliver it.
  void report(std::int64_t entry_id, std::int32_t attempt, EntryState state, std::string message = {},
              std::optional<int> exit_code = {}, std::string output_tail = {},
              TransferProgress progress = {}) {
    EntryReport r;
    r.progress = progress;
    r.entry_id = entry_id;
    r.attempt = attempt;
    r.seq = next_seq++;
    r.state = state;
    r.message = std::move(message);
    r.exit_code = exit_code;
    r.output_tail = std::move(output_tail);
    fs::write_file_atomic(settings.state_dir / "seq", std::to_string(next_seq));
    write_journal(entry_id, attempt, state);
    char name[32];
    std::snprintf(name, sizeof name, "%016lld.json", static_cast<long long>(r.seq));
    auto record = json::to_json(r);
    record["server_id"] = server_id;
    fs::write_file_atomic(outbox_dir() / name, bj::serialize(record));
    try {
      flush_outbox();
    } catch (const Error& e) {
      spdlog::warn("report for entry {} kept in the outbox: {}", entry_id, e.what());
    }
    if (auto it = confirmed.find(entry_id); it != confirmed.end() &&
                                            (is_final(it->second) || it->second == EntryState::suspended) &&
                                            it->second != state)
      throw EntryWithdrawn{it->second};
  }

  // Sends every queued report in order; deletes those the manager acknowledged.
  void flush_outbox() {
    std::vector<stdfs::path> files;
    for (const auto& e : stdfs::directory_iterator(outbox_dir()))
      if (e.path().extension() == ".json") files.push_back(e.path());
    if (files.empty()) return;
    std::sort(files.begin(), files.end());
    for (std::size_t start = 0; start < files.size(); start += 500) {
      const auto end = std::min(files.size(), start + 500);
      bj::array reports;
      std::vector<stdfs::path> sent;
      for (std::size_t i = start; i < end; ++i) {
        try {
          auto record = json::parse_object(fs::read_file(files[i]));
          // Entry ids are only unique per server: a report waits for the server it belongs to.
          const auto owner = json::get_string(record, "server_id", false);
          if (!owner.empty() && owner != server_id) continue;
          reports.push_back(std::move(record));
          sent.push_back(files[i]);
        } catch (const Error& e) {
          spdlog::error("dropping unreadable outbox record {}: {}", files[i].string(), e.what());
          stdfs::remove(files[i]);
        }
      }
      if (reports.empty()) continue;
      auto res = call("POST", "/v1/agent/report", bj::object{{"host_id", host_id}, {"reports", reports}});
      for (const auto& v : json::get_array(res, "results")) {
        const auto& o = v.as_object();
        const auto entry = json::get_int(o, "entry_id");
        const auto state = parse_entry_state(json::get_string(o, "state"));
        confirmed[entry] = state;
        if (json::get_string(o, "outcome") == "refused")
          spdlog::info("entry {} is {} at the manager; report not applied", entry, to_string(state));
      }
      for (const auto& f : sent) {
        std::error_code ec;
        stdfs::remove(f, ec);
      }
    }
  }

  // --- work ---------------------------------------------------------------------------

  void register_with_parent() {
    parent_url = link->current();
    http = &clients->get(parent_url);
    http->set_timeout(120);
    const Host me = describe_this_host(host_id, HostRole::agent, settings.host_name, settings.bind_address);
    auto res = call("POST", "/v1/agent/register", json::to_json(me));
    server_id = json::get_string(res, "server_id", false);
    if (!server_id.empty() && !is_valid_host_id(server_id))
      throw Error(ErrorKind::unavailable, "parent " + parent_url + " sent a malformed server_id");
    stdfs::create_directories(journal_dir());
    confirmed.clear();
    registered = true;
    registered_once = true;
    spdlog::info("registered with {} as {} ({})", parent_url, me.name, host_id);
    // ID groups from the configuration: joined at every registration (joining twice is a no-op).
    for (const auto& g : settings.id_groups) {
      try {
        auto o = join_call(g.name, g.password, false, "config");
        if (json::get_int(o, "entries", 0) > 0 || json::get_bool(o, "joined"))
          spdlog::info("joined ID group {} ({} standing job(s) to receive)", g.name,
                       json::get_int(o, "entries", 0));
      } catch (const Error& e) {
        // Never fatal: work from the parent goes on; the join is tried again at the next registration.
        spdlog::error("cannot join ID group {} named in the configuration: {}", g.name, e.what());
      }
    }
  }

  bj::object join_call(const std::string& group, const std::string& password, bool leave, const char* how) {
    return call(
        "POST", "/v1/agent/join",
        bj::object{
            {"host_id", host_id}, {"group", group}, {"password", password}, {"leave", leave}, {"how", how}});
  }

  // --- transfer: segments of whole chunks, one request per segment, paced when split ------

  struct Transfer {
    std::int64_t entry_id = 0;
    std::int32_t attempt = 1;
    SplitSpec offered;  // what the server offers for this hop
    TransferProgress progress;
    std::size_t fetched_chunks = 0;
  };

  // Sleeps `seconds` unless stopping; false when the agent is stopping.
  bool pause(int seconds) {
    sleep_ms(seconds * 1000);
    return !abandoning();
  }

  // Fetches `digests` (missing here) in as few requests as the server allows; every chunk is
  // verified before it is stored; a bad one is fetched again up to chunk_retries times.
  void fetch_chunks(const Manifest& m, std::vector<ChunkRef> wanted, Transfer& t) {
    std::map<std::string, int> bad;
    while (!wanted.empty()) {
      if (abandoning()) return;
      bj::array digests;
      for (std::size_t i = 0; i < wanted.size() && i < 4096; ++i) digests.emplace_back(wanted[i].digest);
      auto res =
          http->request("POST", "/v1/content/chunks",
                        bj::serialize(bj::object{{"host_id", host_id}, {"digests", std::move(digests)}}));
      if (res.status == 429) {
        // The server is serving its maximum of transfers: come back when it says.
        int wait = 5;
        try {
          wait = static_cast<int>(std::clamp<std::int64_t>(
              json::get_int(json::parse_object(res.body), "retry_after", 5), 1, 300));
        } catch (const Error&) {
        }
        spdlog::info("package {} {}: server busy, coming back in {} s", m.name, m.version, wait);
        if (!pause(wait)) return;
        continue;
      }
      require_ok(res, "chunks of package \"" + m.name + "\" " + m.version);
      std::map<std::string, std::uint64_t> size_of;
      for (const auto& c : wanted) size_of[c.digest] = c.size;
      std::set<std::string> stored;
      std::string_view body = res.body;
      std::size_t frames = 0;
      while (!body.empty()) {
        const auto nl = body.find('\n');
        const auto sp = body.find(' ');
        if (nl == std::string_view::npos || sp == std::string_view::npos || sp > nl)
          throw Error(ErrorKind::unavailable, "malformed chunk batch from " + parent_url);
        const std::string digest(body.substr(0, sp));
        std::uint64_t len = 0;
        try {
          len = std::stoull(std::string(body.substr(sp + 1, nl - sp - 1)));
        } catch (const std::exception&) {
          throw Error(ErrorKind::unavailable, "malformed chunk batch from " + parent_url);
        }
        body.remove_prefix(nl + 1);
        if (len > body.size() || !size_of.count(digest))
          throw Error(ErrorKind::unavailable, "malformed chunk batch from " + parent_url);
        const auto bytes = body.substr(0, len);
        body.remove_prefix(len);
        ++frames;
        t.progress.bytes_received += static_cast<std::int64_t>(len);
        try {
          chunks->put_compressed(digest, bytes, std::min<std::uint64_t>(size_of[digest], kMaxChunkSize));
          stored.insert(digest);
          ++t.fetched_chunks;
        } catch (const Error& e) {
          if (e.kind() != ErrorKind::integrity) throw;
          ++t.progress.bad_chunks;
          const int tries = ++bad[digest];
          spdlog::warn("package {} {}: {} (fetch {} of {})", m.name, m.version, e.what(), tries,
                       std::max(1, settings.chunk_retries));
          if (tries >= std::max(1, settings.chunk_retries))
            throw Error(ErrorKind::integrity, std::string(e.what()) + " on each of " + std::to_string(tries) +
                                                  " fetches; the source copy is bad");
        }
      }
      if (frames == 0) throw Error(ErrorKind::unavailable, "empty chunk batch from " + parent_url);
      std::erase_if(wanted, [&](const ChunkRef& c) { return stored.count(c.digest) > 0; });
    }
  }

  // Asks the server whether the entry is still to be transferred and with which split.
  SplitSpec check_transfer(Transfer& t) {
    auto o = call("GET", "/v1/agent/transfer?host_id=" + host_id + "&entry_id=" + std::to_string(t.entry_id),
                  nullptr);
    const auto state = parse_entry_state(json::get_string(o, "state"));
    if (json::get_int(o, "attempt", t.attempt) != t.attempt || is_final(state) ||
        state == EntryState::suspended)
      throw EntryWithdrawn{state};
    if (auto it = o.find("split"); it != o.end()) return json::split_from_json(it->value());
    return {};
  }

  // Transfers the chunks of `m` this agent lacks, segment by segment. Returns false when the
  // agent is stopping (the chunks held so far stay: the next run fetches the rest only).
  // The pause between two segments, asking every 2 s whether the entry or its split changed.
  // Returns false when the agent is stopping; a changed split is stored in `split` and ends the
  // pause at once.
  bool pause_between_segments(Transfer& t, SplitSpec& split) {
    for (int left = split.interval_seconds; left > 0;) {
      const int step = std::min(left, 2);
      if (!pause(step)) return false;
      left -= step;
      const auto now = hop_split(check_transfer(t), settings.split_max);
      if (now != split) {
        split = now;
        return true;
      }
    }
    return true;
  }

  bool transfer(const Manifest& m, Transfer& t) {
    std::vector<std::uint64_t> sizes;
    for (const auto& c : m.chunks) sizes.push_back(c.size);
    auto split = hop_split(t.offered, settings.split_max);
    const auto segment_size = [&] { return split.enabled() ? split.size : settings.segment_bytes; };
    auto plan = plan_segments(sizes, segment_size());  // end (chunk index) of each segment
    t.progress.segments_total = static_cast<std::int64_t>(plan.size());
    if (split.enabled())
      spdlog::info("package {} {}: split distribution, {} segment(s) of at most {} every {} s", m.name,
                   m.version, plan.size(), format_byte_size(split.size), split.interval_seconds);
    std::size_t done = 0;  // segments finished
    std::size_t at = 0;    // first chunk after them
    bool fetched_any = false;
    while (done < plan.size()) {
      if (abandoning()) return false;
      std::vector<ChunkRef> wanted;
      std::set<std::string> seen;
      for (std::size_t i = at; i < plan[done]; ++i)
        if (!chunks->contains(m.chunks[i].digest) && seen.insert(m.chunks[i].digest).second)
          wanted.push_back(m.chunks[i]);
      if (!wanted.empty()) {
        if (fetched_any && split.enabled()) {
          const auto before = split;
          if (!pause_between_segments(t, split)) return false;
          if (split != before) {
            // complete-now (or a new limit): what is left is planned again with the new size.
            spdlog::info("package {} {}: split is now {}", m.name, m.version, to_string(split));
            plan.resize(done);
            const auto rest = plan_segments(sizes, segment_size(), at);
            plan.insert(plan.end(), rest.begin(), rest.end());
            t.progress.segments_total = static_cast<std::int64_t>(plan.size());
            continue;
          }
        }
        fetch_chunks(m, std::move(wanted), t);
        if (abandoning()) return false;
        fetched_any = true;
      }
      at = plan[done++];
      t.progress.segments_done = static_cast<std::int64_t>(done);
      if (fetched_any || done == plan.size())
        report(t.entry_id, t.attempt, EntryState::transferring,
               "segment " + std::to_string(done) + " of " + std::to_string(plan.size()), {}, {}, t.progress);
    }
    return true;
  }

  stdfs::path install_target(const Manifest& m) const {
    if (!m.install.directory.empty()) return m.install.directory;
    const auto root = settings.packages_dir.empty() ? settings.state_dir / "packages" : settings.packages_dir;
    return root / m.name / m.version;
  }

  // Puts the verified payload into place: extract beside the target, then swap directories.
  void place_payload(const stdfs::path& archive, const stdfs::path& target, std::int64_t entry_id) {
    std::error_code ec;
    stdfs::create_directories(target.parent_path(), ec);
    auto staging = target;
    staging += ".distrib-staging-" + std::to_string(entry_id);
    auto old = target;
    old += ".distrib-old-" + std::to_string(entry_id);
    stdfs::remove_all(staging, ec);
    extract_payload(archive, staging);
    const bool had = stdfs::exists(target, ec);
    if (had) stdfs::rename(target, old);
    try {
      stdfs::rename(staging, target);
    } catch (...) {
      if (had) stdfs::rename(old, target, ec);
      throw;
    }
    stdfs::remove_all(old, ec);
  }

  void process(const bj::object& item) {
    const auto entry_id = json::get_int(item, "entry_id");
    const auto attempt = static_cast<std::int32_t>(json::get_int(item, "attempt", 1));
    if (auto s = journal_state(entry_id, attempt); s && is_final(*s)) return;  // re-delivered work
    confirmed.erase(entry_id);  // a new attempt: what the server said of the last one is over
    try {
      const auto type_text = json::get_string(item, "type", false);
      switch (type_text.empty() ? JobType::install : parse_job_type(type_text)) {
        case JobType::install:
          return install(item, entry_id, attempt);
        case JobType::get_system_info:
          return report_inventory_now(InventoryScope::system, entry_id, attempt);
        case JobType::get_software_info:
          return report_inventory_now(InventoryScope::software, entry_id, attempt);
        case JobType::collect_files:
          return collect_files(item, entry_id, attempt);
        default:
          throw Error(ErrorKind::invalid_argument, "an agent does not run " + type_text + " jobs");
      }
    } catch (const EntryWithdrawn& w) {
      write_journal(entry_id, attempt, w.state);
      spdlog::info("entry {} was {} by the manager; stopped", entry_id, to_string(w.state));
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::unavailable) throw;  // transient: retried on the next poll
      spdlog::error("entry {}: {}", entry_id, e.what());
      try {
        report(entry_id, attempt, EntryState::failed, e.what());
      } catch (const EntryWithdrawn& w) {
        write_journal(entry_id, attempt, w.state);
      }
    }
  }

  void install(const bj::object& item, std::int64_t entry_id, std::int32_t attempt) {
    const auto& pkg = item.at("package").as_object();
    const auto name = json::get_string(pkg, "name");
    const auto version = json::get_string(pkg, "version");
    const auto digest = json::get_string(pkg, "payload_digest", false);
    {
      auto installed = load_installed();
      if (!digest.empty() && installed.contains(digest)) {
        report(entry_id, attempt, EntryState::succeeded, "already installed; nothing to do");
        return;
      }
      report(entry_id, attempt, EntryState::transferring);
      Manifest m = manifest_from_json(bj::serialize(
          call("GET", "/v1/content/manifests/" + url_encode(name) + "/" + url_encode(version), nullptr)));
      validate_manifest(m);
      if (!digest.empty() && m.payload_digest != digest)
        throw Error(ErrorKind::integrity, "manifest payload digest does not match the job's");

      Transfer t;
      t.entry_id = entry_id;
      t.attempt = attempt;
      if (auto sp = item.find("split"); sp != item.end()) t.offered = json::split_from_json(sp->value());
      if (!transfer(m, t)) return;  // stopping: resumes from the chunks already held
      const auto fetched = t.fetched_chunks;
      const auto work = settings.state_dir / "work";
      stdfs::create_directories(work);
      const auto archive = work / (std::to_string(entry_id) + ".tar");
      try {
        assemble_payload(m, *chunks, archive);
      } catch (const Error& e) {
        // A chunk that went bad on our disk is dropped so the next attempt fetches it again.
        for (const auto& c : m.chunks) {
          try {
            chunks->read_verified(c.digest, kMaxChunkSize);
          } catch (const Error&) {
            chunks->remove(c.digest);
          }
        }
        throw;
      }
      report(entry_id, attempt, EntryState::transferred,
             std::to_string(fetched) + " of " + std::to_string(m.chunks.size()) + " chunk(s) fetched" +
                 (t.progress.bad_chunks ? ", " + std::to_string(t.progress.bad_chunks) +
                                              " failed verification and were fetched again"
                                        : ""),
             {}, {}, t.progress);
      report(entry_id, attempt, EntryState::installing);

      const auto target = install_target(m);
      std::error_code ec;
      place_payload(archive, target, entry_id);
      stdfs::remove(archive, ec);

      std::optional<int> exit_code;
      std::string tail;
      if (!m.install.command.empty()) {
        auto timeout = std::chrono::seconds(m.install.timeout_seconds);
        if (in_stop_phase) {
          // An install during shutdown gets what is left of the stop budget at most.
          const auto left = std::chrono::duration_cast<std::chrono::seconds>(
              stop_deadline - std::chrono::steady_clock::now());
          timeout = std::max(std::chrono::seconds(1), std::min(timeout, left));
        }
        auto result = run_command(m.install.command, target,
                                  {{"DISTRIB_PACKAGE_NAME", m.name},
                                   {"DISTRIB_PACKAGE_VERSION", m.version},
                                   {"DISTRIB_INSTALL_DIR", target.string()},
                                   {"DISTRIB_ENTRY_ID", std::to_string(entry_id)}},
                                  timeout, settings.output_tail_bytes);
        exit_code = result.exit_code;
        tail = result.output_tail;
        if (result.timed_out) {
          report(entry_id, attempt, EntryState::failed,
                 "install command timed out after " + std::to_string(timeout.count()) + " s", exit_code,
                 tail);
          return;
        }
        if (result.exit_code != 0) {
          report(entry_id, attempt, EntryState::failed,
                 "install command exited with " + std::to_string(result.exit_code), exit_code, tail);
          return;
        }
      }
      installed[m.payload_digest] = bj::object{{"name", m.name},
                                               {"version", m.version},
                                               {"directory", target.string()},
                                               {"installed_at", fs::now_unix()}};
      fs::write_file_atomic(installed_file(), bj::serialize(installed));
      poke_inventory();  // the software inventory changed
      report(entry_id, attempt, EntryState::succeeded, "installed in " + target.string(), exit_code, tail);
    }
  }

  // --- inventory ----------------------------------------------------------------------------

  stdfs::path fields_file() const { return settings.state_dir / "inventory-fields.json"; }
  stdfs::path inventory_state_file() const { return settings.state_dir / "inventory-state.json"; }

  // User inventory values: the configured file, then what `set_user_inventory` stored. Values
  // that do not fit the definitions last received are left out (and logged).
  void add_user_items(InventoryItems& items) {
    std::map<std::string, std::string> values;
    auto read = [&](const stdfs::path& file) {
      try {
        for (auto& [k, v] : parse_assignments(fs::read_file(file), file.string())) values[k] = v;
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::not_found) spdlog::warn("user inventory: {}", e.what());
      }
    };
    if (!settings.user_inventory_file.empty()) read(settings.user_inventory_file);
    read(settings.state_dir / "user-inventory");
    const auto fields = cached_fields(settings.state_dir);
    for (const auto& [k, v] : values) {
      if (v.empty()) continue;
      if (fields) {
        try {
          check_user_value(*fields, k, v);
        } catch (const Error& e) {
          spdlog::warn("user inventory value left out: {}", e.what());
          continue;
        }
      }
      items["user." + k] = v;
    }
  }

  // Field definitions the agent last received; nullopt when it never did.
  static std::optional<std::vector<InventoryField>> cached_fields(const stdfs::path& state_dir) {
    try {
      auto o = json::parse_object(fs::read_file(state_dir / "inventory-fields.json"));
      std::vector<InventoryField> out;
      for (const auto& v : json::get_array(o, "fields")) {
        const auto& f = v.as_object();
        out.push_back({json::get_string(f, "name"), parse_inventory_field_type(json::get_string(f, "type")),
                       json::get_string_array(f, "values", false),
                       json::get_string(f, "description", false)});
      }
      return out;
    } catch (const Error&) {
      return std::nullopt;
    }
  }

  InventoryItems collect_inventory(InventoryScope scope) {
    std::vector<std::string> errors;
    auto items = run_collectors(collectors, scope, errors);
    for (const auto& e : errors) spdlog::warn("inventory collector {}", e);
    if (scope != InventoryScope::system) {
      // Packages distrib installed: the newest install of each name.
      std::map<std::string, std::pair<std::int64_t, std::string>> newest;
      for (const auto& [digest, v] : load_installed()) {
        if (!v.is_object()) continue;
        const auto& o = v.as_object();
        const auto name = json::get_string(o, "name", false);
        const auto at = json::get_int(o, "installed_at", 0);
        if (!name.empty() && (!newest.count(name) || newest[name].first <= at))
          newest[name] = {at, json::get_string(o, "version", false)};
      }
      for (const auto& [name, v] : newest) items["software.distrib." + name] = v.second;
    }
    if (scope != InventoryScope::software) add_user_items(items);
    std::erase_if(items, [](const auto& kv) {
      try {
        validate_inventory_key(kv.first);
        return false;
      } catch (const Error& e) {
        spdlog::warn("inventory item left out: {}", e.what());
        return true;
      }
    });
    return items;
  }

  bj::object send_inventory(HttpClient& client, InventoryScope scope, const InventoryItems& items) {
    bj::object o;
    for (const auto& [k, v] : items) o[k] = v;
    auto res = call_parent(client, "POST", "/v1/agent/inventory",
                           bj::object{{"host_id", host_id},
                                      {"scope", std::string(to_string(scope))},
                                      {"collected_at", fs::now_unix()},
                                      {"items", std::move(o)}});
    if (auto it = res.find("rejected"); it != res.end() && it->value().is_array())
      for (const auto& v : it->value().as_array())
        if (v.is_string())
          spdlog::warn("inventory value refused by the manager: {}", std::string(v.as_string()));
    return res;
  }

  void report_inventory_now(InventoryScope scope, std::int64_t entry_id, std::int32_t attempt) {
    const auto items = collect_inventory(scope);
    const auto res = send_inventory(*http, scope, items);
    const auto changes = json::get_int(res, "changes", 0);
    report(entry_id, attempt, EntryState::succeeded,
           std::to_string(items.size()) + " " + std::string(to_string(scope)) + " item(s) reported" +
               (json::get_bool(res, "first") ? " (first inventory)"
                                             : ", " + std::to_string(changes) + " changed"));
  }

  void poke_inventory() {
    std::lock_guard lock(inventory_mutex);
    inventory_poked = true;
    inventory_cv.notify_all();
  }

  // One periodic check: fetch the field definitions, collect everything, send when something
  // changed since the last report the parent stored, or when the periodic report is due. A
  // report owed (a failed send) survives restarts in the state file.
  void inventory_check() {
    auto cs = link->client_settings(link->current());
    auto client = std::make_shared<HttpClient>(cs);
    client->set_timeout(60);
    {
      std::lock_guard lock(inventory_mutex);
      inventory_client = client;
    }
    try {
      auto fields = call_parent(*client, "GET", "/v1/agent/inventory-fields", nullptr);
      fs::write_file_atomic(fields_file(), bj::serialize(fields));
    } catch (const Error& e) {
      spdlog::debug("inventory field definitions not refreshed: {}", e.what());
    }
    const auto items = collect_inventory(InventoryScope::full);
    const auto digest = inventory_digest(items);
    bj::object st;
    try {
      st = json::parse_object(fs::read_file(inventory_state_file()));
    } catch (const Error&) {
    }
    const auto now = fs::now_unix();
    const bool owed = json::get_bool(st, "owed");
    const bool changed = json::get_string(st, "digest", false) != digest;
    const bool periodic = settings.inventory_interval_seconds > 0 &&
                          now - json::get_int(st, "sent_at", 0) >= settings.inventory_interval_seconds;
    if (!owed && !changed && !periodic) return;
    st["owed"] = true;
    fs::write_file_atomic(inventory_state_file(), bj::serialize(st));
    const auto res = send_inventory(*client, InventoryScope::full, items);
    fs::write_file_atomic(inventory_state_file(),
                          bj::serialize(bj::object{{"digest", digest}, {"sent_at", now}, {"owed", false}}));
    spdlog::info("inventory reported: {} items ({}), {} change(s) at the manager", items.size(),
                 changed ? "changed" : (owed ? "owed" : "periodic"), json::get_int(res, "changes", 0));
  }

  void inventory_loop() {
    bool failed = false;
    bool first = true;
    while (!stopping) {
      {
        std::unique_lock lock(inventory_mutex);
        const int wait = first    ? 0
                         : failed ? std::min(settings.inventory_check_seconds, 10)
                                  : settings.inventory_check_seconds;
        inventory_cv.wait_for(lock, std::chrono::seconds(wait),
                              [&] { return stopping.load() || inventory_poked; });
        inventory_poked = false;
      }
      if (stopping) break;
      if (!registered_once) {
        sleep_ms(500);
        continue;
      }
      first = false;
      try {
        inventory_check();
        failed = false;
      } catch (const std::exception& e) {
        if (stopping) break;
        failed = true;
        spdlog::warn("inventory report kept for later: {}", e.what());
      }
    }
  }

  // --- remote collection --------------------------------------------------------------------

  bool collect_allowed(const stdfs::path& canonical) const {
    const auto text = canonical.string();
    for (const auto& a : settings.collect_allow) {
      if (a.find_first_of("*?[") != std::string::npos) {
        if (::fnmatch(a.c_str(), text.c_str(), FNM_PATHNAME) == 0) return true;
        continue;
      }
      std::error_code ec;
      auto base = stdfs::weakly_canonical(a, ec).string();
      if (ec) continue;
      while (base.size() > 1 && base.back() == '/') base.pop_back();
      if (text == base || text.starts_with(base == "/" ? base : base + "/")) return true;
    }
    return false;
  }

  void collect_files(const bj::object& item, std::int64_t entry_id, std::int32_t attempt) {
    const auto job_id = json::get_int(item, "job_id");
    auto it = item.find("collect");
    if (it == item.end() || !it->value().is_object())
      throw Error(ErrorKind::invalid_argument, "collect-files work arrived without the paths to collect");
    const auto spec = json::collect_from_json(it->value().as_object());
    std::string allow_list;
    for (const auto& a : settings.collect_allow) allow_list += (allow_list.empty() ? "" : ", ") + a;
    if (settings.collect_allow.empty())
      throw Error(ErrorKind::forbidden,
                  "this agent collects no files: its configuration allows none (--collect-allow DIR)");
    // Everything is checked before anything is sent: a refused path fails the entry whole.
    std::vector<std::pair<std::string, std::uint64_t>> files;
    std::set<std::string> seen;
    std::vector<std::string> problems, unmatched;
    std::uint64_t total = 0;
    auto consider = [&](const stdfs::path& p) {
      std::error_code ec;
      const auto canon = stdfs::canonical(p, ec);
      if (ec) return problems.push_back(p.string() + ": " + ec.message());
      if (!collect_allowed(canon))
        return problems.push_back(p.string() + " is outside this agent's collection allowlist (" +
                                  allow_list + ")");
      if (!stdfs::is_regular_file(canon, ec) || !seen.insert(canon.string()).second) return;
      const auto size = stdfs::file_size(canon, ec);
      if (ec) return problems.push_back(canon.string() + ": " + ec.message());
      if (size > spec.max_file_bytes)
        return problems.push_back(canon.string() + " is " + format_byte_size(size) +
                                  ", over the per-file limit of " + format_byte_size(spec.max_file_bytes));
      total += size;
      files.emplace_back(canon.string(), size);
    };
    for (const auto& pattern : spec.paths) {
      glob_t g{};
      const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
      if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) unmatched.push_back(pattern);
      for (std::size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) {
        const stdfs::path match = g.gl_pathv[i];
        std::error_code ec;
        if (stdfs::is_directory(match, ec)) {
          const auto canon = stdfs::canonical(match, ec);
          if (!ec && !collect_allowed(canon)) {
            problems.push_back(match.string() + " is outside this agent's collection allowlist (" +
                               allow_list + ")");
            continue;
          }
          for (auto d = stdfs::recursive_directory_iterator(
                   match, stdfs::directory_options::skip_permission_denied, ec);
               !ec && d != stdfs::recursive_directory_iterator(); d.increment(ec))
            if (d->is_regular_file(ec)) consider(d->path());
        } else {
          consider(match);
        }
      }
      ::globfree(&g);
    }
    if (total > spec.max_total_bytes)
      problems.push_back("the files add up to " + format_byte_size(total) + ", over the per-host limit of " +
                         format_byte_size(spec.max_total_bytes));
    if (!problems.empty()) {
      std::string all;
      for (const auto& x : problems) all += (all.empty() ? "" : "; ") + x;
      throw Error(ErrorKind::forbidden, "nothing collected: " + all);
    }
    if (files.empty()) {
      std::string all;
      for (const auto& x : unmatched) all += (all.empty() ? "" : ", ") + x;
      throw Error(ErrorKind::not_found, "nothing collected: no file matches " + all);
    }
    report(entry_id, attempt, EntryState::transferring, std::to_string(files.size()) + " file(s) to send");
    std::uint64_t sent = 0;
    for (const auto& [path, size] : files) {
      const auto data = fs::read_file(path);
      if (data.size() > spec.max_file_bytes)
        throw Error(ErrorKind::forbidden,
                    "nothing more collected: " + path + " grew to " + format_byte_size(data.size()) +
                        ", over the per-file limit of " + format_byte_size(spec.max_file_bytes));
      auto res = http->request("POST",
                               "/v1/agent/collect?host_id=" + host_id + "&job_id=" + std::to_string(job_id) +
                                   "&path=" + url_encode(path) + "&sha256=" + sha256_hex(data),
                               data, "application/octet-stream");
      if (res.status == 400 || res.status == 403 || res.status == 422)
        throw Error(ErrorKind::invalid_argument, json::error_message(res.body, res.status));
      require_ok(res, "upload of " + path);
      sent += data.size();
    }
    report(
        entry_id, attempt, EntryState::succeeded,
        std::to_string(files.size()) + " file(s), " + format_byte_size(sent) + " collected" +
            (unmatched.empty() ? "" : " (no match for " + std::to_string(unmatched.size()) + " pattern(s))"));
  }

  void run() {
    if (settings.inventory_check_seconds > 0) inventory_thread = std::thread([this] { inventory_loop(); });
    while (!stopping) {
      try {
        if (link->maybe_return_to_primary()) registered = false;
        if (!registered) register_with_parent();
        flush_outbox();
        http->set_timeout(settings.poll_timeout_seconds + 15);
        // The first contact after starting asks for at-start installs too, and does not wait.
        const auto target = "/v1/agent/work?host_id=" + host_id +
                            (fresh_start ? std::string("&start=1&wait=0")
                                         : "&wait=" + std::to_string(settings.poll_timeout_seconds));
        auto res = call("GET", target, nullptr);
        http->set_timeout(120);
        backoff_ms = 0;
        const bool did_something = process_work(json::get_array(res, "work"));
        fresh_start = false;
        // Work the manager still lists but this agent already finished: let reports catch up.
        if (!json::get_array(res, "work").empty() && !did_something) sleep_ms(settings.retry_max_ms);
      } catch (const Error& e) {
        if (stopping) break;
        failed_contact(e.what());
      } catch (const std::exception& e) {
        if (stopping) break;
        failed_contact(std::string("unexpected: ") + e.what());
      }
    }
    stop_phase();
    try {
      flush_outbox();
    } catch (...) {
    }
    if (inventory_thread.joinable()) inventory_thread.join();
  }

  // Processes work items in order; returns whether any was new.
  bool process_work(const bj::array& work) {
    bool did_something = false;
    for (const auto& item : work) {
      if (abandoning()) break;
      const auto& o = item.as_object();
      const auto before = journal_state(json::get_int(o, "entry_id"),
                                        static_cast<std::int32_t>(json::get_int(o, "attempt", 1)));
      if (before && is_final(*before)) continue;
      process(o);
      did_something = true;
    }
    return did_something;
  }

  // Orderly stop: one last contact asks for installs timed "at agent stop" and runs them within
  // the stop budget. A parent that cannot be reached ends it: they run at the next stop.
  void stop_phase() {
    if (settings.stop_install_seconds <= 0 || !registered || parent_url.empty()) return;
    stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(settings.stop_install_seconds);
    in_stop_phase = true;
    try {
      auto cs = link->client_settings(parent_url);
      cs.connect_timeout_seconds = 3;
      cs.timeout_seconds = 15;
      stop_client = std::make_unique<HttpClient>(cs);
      http = stop_client.get();
      flush_outbox();
      auto res = call("GET", "/v1/agent/work?host_id=" + host_id + "&stopping=1&wait=0", nullptr);
      const auto& work = json::get_array(res, "work");
      if (!work.empty()) {
        spdlog::info("stopping: {} install(s) timed at agent stop (up to {} s)", work.size(),
                     settings.stop_install_seconds);
        process_work(work);
      }
    } catch (const std::exception& e) {
      spdlog::warn("stopping: installs timed at agent stop not run now ({}); they run at the next stop",
                   e.what());
    }
    in_stop_phase = false;
  }
};

Agent::Agent(AgentSettings settings) : impl_(std::make_unique<Impl>()) {
  auto& i = *impl_;
  i.settings = std::move(settings);
  auto& s = i.settings;
  if (s.parents.empty()) throw Error(ErrorKind::invalid_argument, "agent needs a parent URL (--server)");
  ParentLink::Settings ls;
  ls.urls = s.parents;
  ls.ca_file = s.ca_file;
  ls.bind_address = s.bind_address;
  ls.recheck_seconds = s.parent_recheck_seconds;
  i.link = std::make_unique<ParentLink>(ls);
  i.clients = std::make_unique<ClientSet>(*i.link);
  fs::ensure_writable_dir(s.state_dir, "state directory");
  fs::ensure_writable_dir(i.outbox_dir(), "outbox directory");
  fs::ensure_writable_dir(s.state_dir / "entries", "entry journal directory");
  i.chunks = std::make_unique<ChunkStore>(s.state_dir / "chunks");
  i.platform = platform_collectors();
  for (const auto& c : i.platform) i.collectors.push_back(c.get());
  for (const auto& c : s.collectors)
    if (c) i.collectors.push_back(c.get());

  i.host_id = fs::load_or_create_host_id(s.state_dir / "host-id");
  try {
    i.next_seq = std::stoll(fs::read_file(s.state_dir / "seq"));
  } catch (...) {
    i.next_seq = 1;
  }
  // Sequence numbers only grow, even if the seq file was lost: never below a queued report's.
  for (const auto& e : stdfs::directory_iterator(i.outbox_dir())) {
    try {
      i.next_seq = std::max<std::int64_t>(i.next_seq, std::stoll(e.path().stem().string()) + 1);
    } catch (...) {
    }
  }
}

Agent::~Agent() = default;
const std::string& Agent::host_id() const noexcept {
  return impl_->host_id;
}
void Agent::run() {
  impl_->run();
}
JoinOutcome Agent::join_group(const std::string& group, const std::string& password, bool leave) {
  auto& i = *impl_;
  for (std::size_t tries = 0;; ++tries) {
    try {
      i.register_with_parent();
      break;
    } catch (const Error& e) {
      i.registered = false;
      if (e.kind() != ErrorKind::unavailable || tries + 1 >= i.settings.parents.size()) throw;
      i.link->failed(i.link->current());
    }
  }
  auto o = i.join_call(group, password, leave, "command");
  JoinOutcome out;
  out.group = group;
  out.owner = json::get_string(o, "owner", false);
  const char* key = leave ? "left" : "joined";
  out.changed = json::get_bool(o, key);
  out.entries = json::get_int(o, leave ? "cancelled" : "entries", 0);
  return out;
}

void Agent::stop() {
  impl_->stopping = true;
  impl_->sleep_cv.notify_all();
  impl_->clients->abort();
  std::lock_guard lock(impl_->inventory_mutex);
  impl_->inventory_cv.notify_all();
  if (impl_->inventory_client) impl_->inventory_client->abort();
}

void Agent::set_user_inventory(const std::filesystem::path& state_dir,
                               const std::map<std::string, std::string>& values) {
  const auto fields = Impl::cached_fields(state_dir);
  for (const auto& [k, v] : values) {
    validate_group_name(k, "inventory field");
    if (!v.empty() && fields) check_user_value(*fields, k, v);
  }
  const auto file = state_dir / "user-inventory";
  std::map<std::string, std::string> all;
  try {
    all = parse_assignments(fs::read_file(file), file.string());
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::not_found) throw;
  }
  for (const auto& [k, v] : values) {
    if (v.empty())
      all.erase(k);
    else
      all[k] = v;
  }
  std::string text = "# user inventory values (distribd --set-inventory NAME=VALUE)\n";
  for (const auto& [k, v] : all) {
    if (v.find('\n') != std::string::npos)
      throw Error(ErrorKind::invalid_argument, "value of " + k + " spans several lines");
    text += k + "=" + v + "\n";
  }
  fs::write_file_atomic(file, text);
}

}  // namespace distrib
