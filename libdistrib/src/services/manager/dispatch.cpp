// Agents asking for work: the work cache (hosts with work, waiting ctx_.polls, generations, last contacts),
// due entries, long ctx_.polls, transfer checks and reports.
#include "services/manager/dispatch.h"

#include "services/manager/content.h"
#include "services/manager/scheduler.h"
#include "services/manager/uplink.h"

#include <ctime>

namespace distrib::manager {

void Dispatch::register_routes(Router& t) {
  t.add(Route{"GET", "/v1/agent/work", Access::agent, bind(this, &Dispatch::agent_work)});
  t.add(Route{"GET", "/v1/agent/transfer", Access::agent, bind(this, &Dispatch::agent_transfer)});
  t.add(Route{"POST", "/v1/agent/report", Access::agent, bind(this, &Dispatch::agent_report)});
}

void Dispatch::note_contact(const std::string& id) {
  ctx_.work_cache.contact(id, fs::now_unix());
  uplink_.note_contact(id);
}

int minute_of_day_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  return tm.tm_hour * 60 + tm.tm_min;
}

// Is the entry due on this contact: ready (start time, retry backoff, released wave) and its
// install timing met?
namespace {
bool due(const JobEntry& e, const Job& job, PollFlags flags, std::int64_t now, int minute) {
  if (e.ready_at > now || e.state == EntryState::suspended) return false;
  switch (job.schedule.timing) {
    case InstallTiming::immediate:
      return !flags.stopping;
    case InstallTiming::at_start:
      return flags.start;
    case InstallTiming::at_stop:
      return flags.stopping;
    case InstallTiming::window:
      return !flags.stopping && job.schedule.window.contains(minute);
  }
  return false;
}
}  // namespace

// The due entries of each host given, with their jobs: one query for all their open entries,
// one lookup per job. Entries share their job (a job lists every destination: a copy per entry
// made waking 19,000 hosts quadratic).
auto Dispatch::due_entries_of(const std::vector<std::string>& host_ids, PollFlags flags, JobCache* cache)
    -> DueEntries {
  DueEntries out;
  JobCache own;
  if (!cache) cache = &own;
  const auto now = fs::now_unix();
  const int minute = minute_of_day_now();
  for (auto& e : ctx_.store->open_entries_for_hosts(host_ids)) {
    auto job = cache->get(e.job_id, [&] { return ctx_.store->find_job(e.job_id); });
    if (!job || !due(e, *job, flags, now, minute)) continue;
    auto host = e.host_id;
    out[host].emplace_back(std::move(e), std::move(job));
  }
  return out;
}

auto Dispatch::JobCache::get(std::int64_t id, const std::function<std::optional<Job>()>& load)
    -> std::shared_ptr<const Job> {
  {
    std::lock_guard lock(mutex);
    if (auto it = jobs.find(id); it != jobs.end()) return it->second;
  }
  auto loaded = load();
  auto job = loaded ? std::make_shared<const Job>(std::move(*loaded)) : nullptr;
  std::lock_guard lock(mutex);
  return jobs.try_emplace(id, std::move(job)).first->second;
}

// Does the direct child have work due: its own entries, or entries to push below it?
auto Dispatch::has_work(const std::string& child) -> bool {
  return !due_entries_of({child}, {}).empty() || !ctx_.store->entries_to_push(child, 1).empty();
}

// Clears the host's work flag when it has no open entries and nothing arrived since `seen`.
void Dispatch::settle(const std::string& host_id, std::uint64_t seen, bool has_open_entries) {
  if (!has_open_entries) ctx_.work_cache.settle(host_id, seen);
}

auto Dispatch::work_for(const std::string& host_id, PollFlags flags) -> HttpResponse {
  return std::move(work_for_many({host_id}, flags).front());
}

// The work answers of many hosts from a few store queries, whatever their number: their open
// entries in one, each job and package once, entries to push only from the hosts that have any.
auto Dispatch::work_for_many(const std::vector<std::string>& host_ids, PollFlags flags, JobCache* jobs)
    -> std::vector<HttpResponse> {
  std::vector<std::uint64_t> seen;
  seen.reserve(host_ids.size());
  for (const auto& h : host_ids) seen.push_back(ctx_.work_cache.generation(h));
  auto due = due_entries_of(host_ids, flags, jobs);
  const auto pushing = ctx_.store->vias_with_entries_to_push(host_ids);
  OrderSigner::Batch orders(signer_);  // one store lookup per package
  std::vector<HttpResponse> answers;
  answers.reserve(host_ids.size());
  for (std::size_t i = 0; i < host_ids.size(); ++i) {
    const auto& host_id = host_ids[i];
    bj::array work;
    bool has_entries = false;
    if (auto d = due.find(host_id); d != due.end()) {
      has_entries = !d->second.empty();
      for (const auto& [e, job] : d->second) work.push_back(work_item(e, *job, orders));
    }
    // Entries of the subtree below a relay that it has not stored yet (none for an agent).
    bj::array routed;
    if (std::find(pushing.begin(), pushing.end(), host_id) != pushing.end())
      for (auto& x : ctx_.store->entries_to_push(host_id, 500)) {
        x.entry.signed_order = orders.pass_on(x.entry, x.job);
        routed.push_back(json::to_json(x));
      }
    bj::array gone;
    for (const auto& h : ctx_.work_cache.take_released(host_id)) gone.emplace_back(h);
    if (!flags.start && !flags.stopping) settle(host_id, seen[i], has_entries || !routed.empty());
    bj::object out{{"work", std::move(work)}};
    // Polls that ask for it (heartbeat=1) are kept alive while held: see agent_work.
    out["heartbeat_seconds"] = std::chrono::duration_cast<std::chrono::seconds>(kHeartbeat).count();
    if (!routed.empty()) out["routed"] = std::move(routed);
    if (!gone.empty()) out["released"] = std::move(gone);
    // Relays keep a copy of the revoked certificates (GET /v1/relay/revoked when this changes).
    if (ctx_.callers.enabled()) out["revoked_count"] = ctx_.callers.revoked_count();
    // Hosts fetch a newer trusted publisher set (GET /v1/agent/publishers).
    if (const auto v = ctx_.publishers.version(); v > 0) out["publishers_version"] = v;
    answers.push_back(json_response(200, out));
  }
  return answers;
}

// One entry of a work answer.
auto Dispatch::work_item(const JobEntry& e, const Job& job, OrderSigner::Batch& orders) -> bj::object {
  bj::object item{{"entry_id", e.id},
                  {"job_id", e.job_id},
                  {"attempt", e.attempt},
                  {"state", std::string(to_string(e.state))},
                  {"type", std::string(to_string(job.type))},
                  {"timing", std::string(to_string(job.schedule.timing))}};
  if (needs_package(job.type)) {
    item["split"] = json::to_json(hop_split(job.split, ctx_.settings.split_max));
    item["package"] =
        bj::object{{"name", job.package_name},
                   {"version", job.package_version},
                   {"payload_digest", orders.payload_digest(job.package_name, job.package_version)}};
  }
  if (job.type == JobType::collect_files) item["collect"] = json::to_json(job.collect);
  if (job.force) item["force"] = true;
  if (auto order = orders.sign(e, job); !order.empty()) item["signed_order"] = std::move(order);
  return item;
}

void Dispatch::wake_relays() {
  std::vector<std::string> relays;
  for (const auto& h : ctx_.store->list_hosts())
    if (h.role == HostRole::relay && h.via == h.host_id) relays.push_back(h.host_id);
  if (!relays.empty()) wake(relays, true);
}

void Dispatch::wake(const std::vector<std::string>& host_ids, bool has_work) {
  auto waiting = ctx_.work_cache.wake(host_ids, has_work);
  // The batches of one wake-up read each job once (a job to many hosts lists them all).
  auto jobs = std::make_shared<JobCache>();
  // Answered in batches: a job to thousands of waiting hosts costs a few queries per batch, not
  // several per host, and the batches share the store pool's threads.
  for (std::size_t first = 0; first < waiting.size(); first += kWakeBatch) {
    const auto last = std::min(waiting.size(), first + kWakeBatch);
    std::vector<std::pair<std::string, WorkCache::Waiter>> batch(
        std::make_move_iterator(waiting.begin() + static_cast<std::ptrdiff_t>(first)),
        std::make_move_iterator(waiting.begin() + static_cast<std::ptrdiff_t>(last)));
    ctx_.pool->submit([this, jobs, batch = std::move(batch)] {
      std::vector<std::string> ids;
      for (const auto& [h, r] : batch) ids.push_back(h);
      try {
        auto answers = work_for_many(ids, {}, jobs.get());
        for (std::size_t i = 0; i < batch.size(); ++i) (*batch[i].second)(std::move(answers[i]));
      } catch (const Error& e) {
        for (const auto& [h, r] : batch) (*r)(error_response(e));
      } catch (const std::exception& e) {
        spdlog::error("work for {} waiting host(s): {}", batch.size(), e.what());
        for (const auto& [h, r] : batch) (*r)(error_response(Error(ErrorKind::internal, e.what())));
      }
    });
  }
}

void Dispatch::agent_work(HttpRequest&& req, Responder& r, const PathSegments&) {
  const auto host_id = req.query["host_id"];
  if (!is_valid_host_id(host_id))
    throw Error(ErrorKind::invalid_argument, "query parameter host_id must be a host UUID");
  ctx_.callers.require_self(req, host_id);
  long wait = ctx_.settings.poll_timeout_seconds;
  if (auto w = req.query.find("wait"); w != req.query.end()) {
    try {
      wait = std::clamp(std::stol(w->second), 0L, static_cast<long>(ctx_.settings.poll_timeout_seconds));
    } catch (const std::exception&) {
      throw Error(ErrorKind::invalid_argument, "query parameter wait must be a number of seconds");
    }
  }
  PollFlags flags;
  flags.start = req.query["start"] == "1";
  flags.stopping = req.query["stopping"] == "1";
  uplink_.note_contact(host_id);
  ++ctx_.polls;
  // The first contact after a start and the last before a stop are answered at once.
  const bool answer_now = flags.start || flags.stopping;
  // A held poll shows it is alive (a space, which JSON ignores, every kHeartbeat): the agent
  // gives up on a silent parent in seconds rather than at the poll's end.
  if (req.query["heartbeat"] == "1") r.heartbeat(" ", kHeartbeat, "application/json");
  const auto park = [&r] { return std::make_shared<Responder>(std::move(r)); };
  switch (ctx_.work_cache.poll(host_id, fs::now_unix(), answer_now, std::chrono::seconds(wait), park)) {
    case manager::WorkCache::Poll::work:
      return ctx_.blocking(std::move(r), [this, host_id, flags] { return work_for(host_id, flags); });
    case manager::WorkCache::Poll::nothing:
      r(json_response(200,
                      bj::object{{"work", bj::array{}},
                                 {"heartbeat_seconds",
                                  std::chrono::duration_cast<std::chrono::seconds>(kHeartbeat).count()}}));
      return;
    case manager::WorkCache::Poll::parked:
      return;
  }
}

void Dispatch::agent_transfer(HttpRequest&& req, Responder& r, const PathSegments&) {
  // Between two segments: is the entry still to be transferred, and with which split?
  const auto host_id = req.query["host_id"];
  if (!is_valid_host_id(host_id))
    throw Error(ErrorKind::invalid_argument, "query parameter host_id must be a host UUID");
  ctx_.callers.require_self(req, host_id);
  const std::int64_t entry_id = query_number(req, "entry_id", 0, 1, std::numeric_limits<long>::max());
  if (entry_id == 0) throw Error(ErrorKind::invalid_argument, "query parameter entry_id is missing");
  return ctx_.blocking(std::move(r), [this, host_id, entry_id] {
    auto t = ctx_.store->transfer_status(host_id, entry_id);
    if (!t)
      throw Error(ErrorKind::not_found,
                  "entry " + std::to_string(entry_id) + " of host " + host_id + " does not exist");
    return json_response(200,
                         bj::object{{"entry_id", entry_id},
                                    {"state", std::string(to_string(t->state))},
                                    {"attempt", t->attempt},
                                    {"split", json::to_json(hop_split(t->split, ctx_.settings.split_max))}});
  });
}

void Dispatch::agent_report(HttpRequest&& req, Responder& r, const PathSegments&) {
  require_json(req);
  auto body = json::parse_object(req.body);
  const auto host_id = json::get_string(body, "host_id");
  ctx_.callers.require_self(req, host_id);
  std::vector<EntryReport> reports;
  if (!body.contains("reports")) throw Error(ErrorKind::invalid_argument, "field \"reports\" is missing");
  for (const auto& v : bounded_objects(body, "reports", kMaxReports))
    reports.push_back(json::report_from_json(v.as_object()));
  return ctx_.blocking(std::move(r), [this, host_id, reports] {
    bj::array results;
    for (const auto& rep : reports) {
      const auto outcome = ctx_.store->apply_report(host_id, rep);
      if (outcome.retried)
        spdlog::info("entry {} on host {}: failed ({}); retried at {}", rep.entry_id, host_id, rep.message,
                     outcome.retry_at);
      else if (outcome.kind == ReportOutcome::Kind::applied && is_final(rep.state))
        spdlog::info("entry {} on host {}: {}{}", rep.entry_id, host_id, to_string(rep.state),
                     rep.message.empty() ? "" : " (" + rep.message + ")");
      if (outcome.kind == ReportOutcome::Kind::applied && is_final(rep.state)) scheduler_.poke();
      if (rep.state != EntryState::transferring) content_.transfer_done(host_id);
      results.push_back(bj::object{{"entry_id", rep.entry_id},
                                   {"seq", rep.seq},
                                   {"outcome", std::string(to_string(outcome.kind))},
                                   {"state", std::string(to_string(outcome.current))}});
    }
    note_contact(host_id);
    uplink_.notify_sync();
    const auto seen = ctx_.work_cache.generation(host_id);
    settle(host_id, seen, has_work(host_id));
    return json_response(200, bj::object{{"results", std::move(results)}});
  });
}

}  // namespace distrib::manager
