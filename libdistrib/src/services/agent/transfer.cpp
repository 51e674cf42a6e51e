// Fetching a package: segments of chunks verified on arrival, checks between segments, split pauses.
#include "services/agent/transfer.h"

#include "content/frames.h"

namespace distrib::agent {

// Sleeps `seconds` unless stopping; false when the agent is stopping.
auto Fetcher::pause(int seconds) -> bool {
  ctx_.sleep_ms(seconds * 1000);
  return !ctx_.abandoning();
}

// Fetches `digests` (missing here) in as few requests as the server allows; every chunk is
// verified before it is stored; a bad one is fetched again up to chunk_retries times.
void Fetcher::fetch_chunks(const Manifest& m, std::vector<ChunkRef> wanted, Transfer& t) {
  std::map<std::string, int> bad;
  while (!wanted.empty()) {
    if (ctx_.abandoning()) return;
    bj::array digests;
    for (std::size_t i = 0; i < wanted.size() && i < 4096; ++i) digests.emplace_back(wanted[i].digest);
    auto res = ctx_.http->request(
        "POST", "/v1/content/chunks",
        bj::serialize(bj::object{{"host_id", ctx_.host_id}, {"digests", std::move(digests)}}));
    if (res.status == 429) {
      // The server is serving its maximum of transfers: come back when it says.
      int wait = 5;
      try {
        wait = static_cast<int>(
            std::clamp<std::int64_t>(json::get_int(json::parse_object(res.body), "retry_after", 5), 1, 300));
      } catch (const Error&) {
      }
      spdlog::info("package {} {}: server busy, coming back in {} s", m.name, m.version, wait);
      if (!pause(wait)) return;
      continue;
    }
    if (res.status == 404) {
      // The parent lacks a chunk, or held it corrupt: the reason first, for tables that cut.
      throw Error(ErrorKind::not_found, "source copy missing or corrupt at the parent: " +
                                            json::error_message(res.body, res.status));
    }
    require_ok(res, "chunks of package \"" + m.name + "\" " + m.version);
    std::map<std::string, std::uint64_t> size_of;
    for (const auto& c : wanted) size_of[c.digest] = c.size;
    std::set<std::string> stored;
    std::vector<std::string> reported_bad;
    std::vector<ChunkFrame> received;
    try {
      received = parse_chunk_frames(res.body, 4096, kMaxChunkSize + 64 * 1024);
    } catch (const Error& e) {
      throw Error(ErrorKind::unavailable, "malformed chunk batch from " + ctx_.parent_url + ": " + e.what());
    }
    std::size_t frames = 0;
    for (const auto& [digest, bytes] : received) {
      if (!size_of.count(digest))
        throw Error(ErrorKind::unavailable, "malformed chunk batch from " + ctx_.parent_url + ": chunk " +
                                                short_digest(digest) + " was not asked for");
      const auto len = bytes.size();
      ++frames;
      t.progress.bytes_received += static_cast<std::int64_t>(len);
      try {
        ctx_.chunks->put_compressed(digest, bytes, std::min<std::uint64_t>(size_of[digest], kMaxChunkSize));
        stored.insert(digest);
        ++t.fetched_chunks;
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::integrity) throw;
        ++t.progress.bad_chunks;
        const int tries = ++bad[digest];
        spdlog::warn("package {} {}: {} (fetch {} of {})", m.name, m.version, e.what(), tries,
                     std::max(1, ctx_.settings.chunk_retries));
        reported_bad.push_back(digest);
        if (tries >= std::max(1, ctx_.settings.chunk_retries)) {
          report_bad(reported_bad);
          throw Error(ErrorKind::integrity, "source copy is bad: " + std::string(e.what()) + " on each of " +
                                                std::to_string(tries) + " fetches");
        }
      }
    }
    // The parent verifies its copies of what arrived bad before anyone else gets them.
    report_bad(reported_bad);
    if (frames == 0) throw Error(ErrorKind::unavailable, "empty chunk batch from " + ctx_.parent_url);
    std::erase_if(wanted, [&](const ChunkRef& c) { return stored.count(c.digest) > 0; });
  }
}

// Tells the parent which chunks arrived bad (it verifies its copies again); best effort.
void Fetcher::report_bad(std::vector<std::string>& digests) {
  if (digests.empty()) return;
  bj::array list;
  for (const auto& d : digests) list.emplace_back(d);
  digests.clear();
  try {
    link_.call("POST", "/v1/content/bad-chunks",
               bj::object{{"host_id", ctx_.host_id}, {"digests", std::move(list)}});
  } catch (const std::exception& e) {
    spdlog::warn("could not tell the parent which chunks arrived bad: {}", e.what());
  }
}

// Asks the server whether the entry is still to be transferred and with which split.
auto Fetcher::check_transfer(Transfer& t) -> SplitSpec {
  auto o = link_.call(
      "GET", "/v1/agent/transfer?host_id=" + ctx_.host_id + "&entry_id=" + std::to_string(t.entry_id),
      nullptr);
  const auto state = parse_entry_state(json::get_string(o, "state"));
  if (json::get_int(o, "attempt", t.attempt) != t.attempt || is_final(state) ||
      state == EntryState::suspended)
    throw EntryWithdrawn{state};
  if (auto it = o.find("split"); it != o.end()) return json::split_from_json(it->value());
  return {};
}

// The pause between two segments, asking every 2 s whether the entry or its split changed.
// Returns false when the agent is stopping; a changed split is stored in `split` and ends the
// pause at once.
auto Fetcher::pause_between_segments(Transfer& t, SplitSpec& split) -> bool {
  for (int left = split.interval_seconds; left > 0;) {
    const int step = std::min(left, 2);
    if (!pause(step)) return false;
    left -= step;
    const auto now = hop_split(check_transfer(t), ctx_.settings.split_max);
    if (now != split) {
      split = now;
      return true;
    }
  }
  return true;
}

auto Fetcher::transfer(const Manifest& m, Transfer& t) -> bool {
  std::vector<std::uint64_t> sizes;
  for (const auto& c : m.chunks) sizes.push_back(c.size);
  auto split = hop_split(t.offered, ctx_.settings.split_max);
  const auto segment_size = [&] { return split.enabled() ? split.size : ctx_.settings.segment_bytes; };
  auto plan = plan_segments(sizes, segment_size());  // end (chunk index) of each segment
  t.progress.segments_total = static_cast<std::int64_t>(plan.size());
  if (split.enabled())
    spdlog::info("package {} {}: split distribution, {} segment(s) of at most {} every {} s", m.name,
                 m.version, plan.size(), format_byte_size(split.size), split.interval_seconds);
  std::size_t done = 0;  // segments finished
  std::size_t at = 0;    // first chunk after them
  bool fetched_any = false;
  while (done < plan.size()) {
    if (ctx_.abandoning()) return false;
    std::vector<ChunkRef> wanted;
    std::set<std::string> seen;
    for (std::size_t i = at; i < plan[done]; ++i)
      if (!ctx_.chunks->contains(m.chunks[i].digest) && seen.insert(m.chunks[i].digest).second)
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
      if (ctx_.abandoning()) return false;
      fetched_any = true;
    }
    at = plan[done++];
    t.progress.segments_done = static_cast<std::int64_t>(done);
    if (fetched_any || done == plan.size())
      link_.report(t.entry_id, t.attempt, EntryState::transferring,
                   "segment " + std::to_string(done) + " of " + std::to_string(plan.size()), {}, {},
                   t.progress);
  }
  return true;
}

}  // namespace distrib::agent
