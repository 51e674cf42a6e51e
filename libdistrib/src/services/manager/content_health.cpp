// The health of the content held here: verified reads, quarantine, reports of bad chunks from
// below, the failure counters and the online scrub.
#include "services/manager/content_health.h"

#include "services/manager/uplink.h"
#include "services/upstream.h"

namespace distrib::manager {

namespace {
constexpr std::size_t kMaxReportedDigests = 64;
constexpr std::size_t kMaxFailureLabels = 1000;
constexpr auto kReverifyEvery = std::chrono::seconds(10);  // per digest, on reports from below
constexpr std::uint64_t kDefaultScrubRate = 64ull << 20;
constexpr std::size_t kMaxListed = 1000;  // digests listed in a scrub's answer
}  // namespace

void ContentHealth::register_routes(Router& t) {
  t.add(Route{"POST", "/v1/content/bad-chunks", Access::agent, bind(this, &ContentHealth::bad_chunks)});
  t.add(Route{"POST", "/v1/content/verify", Access::operate, bind(this, &ContentHealth::verify_start)});
  t.add(Route{"GET", "/v1/content/verify", Access::view, bind(this, &ContentHealth::verify_status)});
}

void ContentHealth::stop() {
  scrub_stop_ = true;
  if (scrub_thread_.joinable()) scrub_thread_.join();
}

auto ContentHealth::read(const std::string& digest) -> ByteCache::Bytes {
  if (auto cached = hot_->get(digest)) return cached;
  std::string compressed;
  try {
    compressed = ctx_.chunks->read_compressed(digest);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::not_found) return nullptr;
    throw;
  }
  try {
    verify_chunk(digest, compressed, kMaxChunkSize);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::integrity) throw;
    corrupt(digest, e.what());
    return nullptr;
  }
  auto bytes = std::make_shared<const std::string>(std::move(compressed));
  hot_->put(digest, bytes);
  return bytes;
}

bool ContentHealth::reverify(const std::string& digest) {
  hot_->erase(digest);
  return read(digest) != nullptr;
}

void ContentHealth::replaced(const std::string& digest) {
  hot_->erase(digest);
}

// A chunk of this server's store is corrupt: aside with it, counted, told; a relay fetches it again.
void ContentHealth::corrupt(const std::string& digest, const std::string& why) {
  hot_->erase(digest);
  ctx_.chunks->quarantine(digest);
  ++quarantined_;
  count_failure(ctx_.role(), "store");
  const bool relay = uplink_.chunk_source() != nullptr;
  Event ev;
  ev.type = "content.corrupt";
  ev.severity = Severity::warning;
  ev.host_id = ctx_.my_id;
  ev.subject = digest;
  ev.message = std::string(ctx_.role()) + " " + ctx_.my_id + ": " + why + " in its store; quarantined, " +
               (relay ? "fetching it again from the parent"
                      : "upload the package again (distribctl package create) to repair it");
  spdlog::warn("{}", ev.message);
  try {
    ctx_.store->record_events({ev});
  } catch (const std::exception& e) {
    spdlog::warn("content.corrupt event not recorded: {}", e.what());
  }
  if (relay)
    uplink_.chunk_source()->fetch(digest, [digest](const std::string& error) {
      if (error.empty()) spdlog::info("chunk {} fetched again from the parent", short_digest(digest));
    });
}

void ContentHealth::count_failure(const std::string& tier, const std::string& peer, std::uint64_t n) {
  std::lock_guard lock(mutex_);
  auto key = std::make_pair(tier, peer);
  if (!failures_.count(key) && failures_.size() >= kMaxFailureLabels) key.second = "(others)";
  failures_[key] += n;
}

auto ContentHealth::failures() -> std::map<std::pair<std::string, std::string>, std::uint64_t> {
  std::lock_guard lock(mutex_);
  auto out = failures_;
  // Chunks that arrived bad from the parent (a relay's fetches count them).
  if (const auto* upstream = uplink_.chunk_source(); upstream && upstream->bad() > 0)
    out[{ctx_.role(), "parent"}] = upstream->bad();
  return out;
}

// A host below received chunks that failed verification: the copies here are verified again
// (each at most every 10 s, however many report it) before anyone else gets them.
void ContentHealth::bad_chunks(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  const auto body = json::parse_object(req.body);
  const auto digests = json::get_string_array(body, "digests");
  if (digests.empty() || digests.size() > kMaxReportedDigests)
    throw Error(ErrorKind::invalid_argument,
                "digests must list between 1 and " + std::to_string(kMaxReportedDigests) + " chunk digests");
  for (const auto& d : digests)
    if (!is_sha256_hex(d)) throw Error(ErrorKind::invalid_argument, "\"" + d + "\" is not a chunk digest");
  const auto caller = ctx_.callers.of(req);
  const auto host_id = ctx_.callers.requester(req, json::get_string(body, "host_id", false));
  const std::string tier = caller ? caller->role : "agent";
  return ctx_.blocking(std::move(r), [this, digests, host_id, tier] {
    std::string peer = "(unregistered)";
    if (!host_id.empty())
      if (auto h = ctx_.store->find_host(host_id)) peer = h->name;
    count_failure(tier, peer, digests.size());
    bj::array good, bad, skipped;
    const auto now = Clock::now();
    for (const auto& d : std::set<std::string>(digests.begin(), digests.end())) {
      {
        std::lock_guard lock(mutex_);
        if (reverified_.size() > 10000)
          std::erase_if(reverified_, [&](const auto& kv) { return now - kv.second > kReverifyEvery; });
        auto& last = reverified_[d];
        if (last != Clock::time_point{} && now - last < kReverifyEvery) {
          skipped.emplace_back(d);
          continue;
        }
        last = now;
      }
      if (!ctx_.chunks->contains(d)) {
        skipped.emplace_back(d);
        continue;
      }
      (reverify(d) ? good : bad).emplace_back(d);
    }
    spdlog::warn("{} {} reported {} chunk(s) that failed verification on arrival; here {} good, {} bad", tier,
                 peer, digests.size(), good.size(), bad.size());
    return json_response(
        200, bj::object{{"good", std::move(good)}, {"bad", std::move(bad)}, {"skipped", std::move(skipped)}});
  });
}

void ContentHealth::verify_start(HttpRequest&& req, Responder& r, const PathSegments&) {
  bool repair = false;
  std::uint64_t rate = kDefaultScrubRate;
  if (!req.body.empty()) {
    require_json(req);
    const auto body = json::parse_object(req.body);
    if (auto it = body.find("repair"); it != body.end()) {
      if (!it->value().is_bool()) throw Error(ErrorKind::invalid_argument, "repair must be true or false");
      repair = it->value().as_bool();
    }
    if (const auto text = json::get_string(body, "rate", false); !text.empty()) {
      rate = text == "unlimited" ? 0 : parse_byte_size(text);
      if (text != "unlimited" && (rate < (1ull << 20) || rate > (100ull << 30)))
        throw Error(ErrorKind::invalid_argument,
                    "rate must be between 1MiB and 100GiB per second, or \"unlimited\"");
    }
  }
  std::lock_guard lock(mutex_);
  if (scrub_.running)
    throw Error(ErrorKind::conflict, "a verification is under way (" +
                                         std::to_string(scrub_.status.chunks_checked) + " of " +
                                         std::to_string(scrub_.status.chunks_total) +
                                         " chunks); follow it with distribctl content verify --status");
  if (scrub_thread_.joinable()) scrub_thread_.join();  // the last one, finished
  scrub_ = ScrubState{};
  scrub_.running = true;
  scrub_.repair = repair;
  scrub_.started_at = fs::now_unix();
  scrub_stop_ = false;
  scrub_thread_ = std::thread([this, repair, rate] { run_scrub(repair, rate); });
  spdlog::info("content verification started ({}, {})", repair ? "with repair" : "report only",
               rate ? format_byte_size(rate) + "/s at most" : std::string("unpaced"));
  r(json_response(202, scrub_json()));
}

void ContentHealth::verify_status(HttpRequest&&, Responder& r, const PathSegments&) {
  std::lock_guard lock(mutex_);
  r(json_response(200, scrub_json()));
}

// The scrub's state as JSON; mutex_ held.
bj::object ContentHealth::scrub_json() {
  const auto& s = scrub_.status;
  bj::array bad;
  for (std::size_t i = 0; i < s.bad.size() && i < kMaxListed; ++i) bad.emplace_back(s.bad[i]);
  bj::array packages;
  for (const auto& p : scrub_.packages) {
    bj::array missing;
    for (std::size_t i = 0; i < p.missing.size() && i < kMaxListed; ++i) missing.emplace_back(p.missing[i]);
    bj::object o{{"name", p.name},
                 {"version", p.version},
                 {"missing_count", p.missing.size()},
                 {"missing", std::move(missing)}};
    if (!p.invalid.empty()) o["invalid"] = p.invalid;
    packages.push_back(std::move(o));
  }
  bj::object o{{"tier", ctx_.role()},
               {"running", scrub_.running},
               {"repair", scrub_.repair},
               {"started_at", scrub_.started_at},
               {"finished_at", scrub_.finished_at},
               {"chunks_total", s.chunks_total},
               {"chunks_checked", s.chunks_checked},
               {"bytes_total", s.bytes_total},
               {"bytes_checked", s.bytes_checked},
               {"seconds", s.seconds},
               {"bad_count", s.bad.size()},
               {"bad", std::move(bad)},
               {"repaired", scrub_.repaired},
               {"packages", std::move(packages)}};
  if (!scrub_.error.empty()) o["error"] = scrub_.error;
  return o;
}

void ContentHealth::run_scrub(bool repair, std::uint64_t rate) {
  ScrubOptions opts;
  opts.bytes_per_second = rate;
  opts.stopping = [this] { return scrub_stop_.load(); };
  opts.progress = [this](const ScrubStatus& st) {
    std::lock_guard lock(mutex_);
    scrub_.status = st;
  };
  // The scrub quarantined it already; the rest is what a read that found it would do.
  opts.quarantine = false;
  opts.on_bad = [this](const std::string& digest, const std::string& why) { corrupt(digest, why); };
  std::string error;
  std::uint64_t repaired = 0;
  std::vector<ManifestProblem> problems;
  ScrubStatus st;
  try {
    st = scrub_chunk_store(*ctx_.chunks, opts);
    auto* upstream = uplink_.chunk_source();
    if (repair && upstream && !st.bad.empty()) {
      for (const auto& d : st.bad) {
        try {
          upstream->fetch_all({d});
          ++repaired;
        } catch (const Error& e) {
          if (error.empty()) error = "chunk " + short_digest(d) + " not fetched again: " + e.what();
        }
      }
    }
    // A relay caches chunks on demand: a chunk it never fetched is not a fault.
    problems = check_manifests(*ctx_.chunks, *ctx_.store, upstream != nullptr).problems;
  } catch (const std::exception& e) {
    error = e.what();
  }
  spdlog::info(
      "content verification: {} chunk(s) checked in {:.1f} s, {} bad, {} repaired, {} package(s) "
      "incomplete",
      st.chunks_checked, st.seconds, st.bad.size(), repaired, problems.size());
  std::lock_guard lock(mutex_);
  scrub_.status = std::move(st);
  scrub_.packages = std::move(problems);
  scrub_.repaired = repaired;
  scrub_.error = error;
  scrub_.running = false;
  scrub_.finished_at = fs::now_unix();
}

}  // namespace distrib::manager
