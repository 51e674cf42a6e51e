// The agent's link to its parent: calls with fallback, registration, joins, the durable outbox of reports and
// the local journal of entries.
#include "services/agent/link.h"

#include "security/enrolment.h"
#include "services/system_info.h"

namespace distrib::agent {

Link::Link(Context& ctx) : ctx_(ctx) {
  try {
    next_seq_ = std::stoll(fs::read_file(ctx_.settings.state_dir / "seq"));
  } catch (...) {
    next_seq_ = 1;
  }
  // Sequence numbers only grow, even if the seq file was lost: never below a queued report's.
  for (const auto& e : stdfs::directory_iterator(ctx_.outbox_dir())) {
    try {
      next_seq_ = std::max<std::int64_t>(next_seq_, std::stoll(e.path().stem().string()) + 1);
    } catch (...) {
    }
  }
}

auto Link::journal_dir() const -> stdfs::path {
  return ctx_.settings.state_dir / "entries" /
         (ctx_.server_id.empty() ? std::string("default") : ctx_.server_id);
}

void Link::failed_contact(const std::string& why) {
  // Another parent to try: go to it at once; back off only when every parent failed.
  ctx_.registered = false;
  if (!ctx_.parents->failed(ctx_.parents->current())) {
    spdlog::warn("{}; trying the next parent", why);
    return;
  }
  // Exponential backoff with jitter (a wait between half and all of the backoff), so that
  // thousands of agents do not return in step. The first 30 s of an outage retry at least
  // every second: a manager failing over to its standby is back within seconds.
  const auto now = std::chrono::steady_clock::now();
  if (backoff_ms_ == 0) outage_since_ = now;
  const int cap = now - outage_since_ < std::chrono::seconds(30) ? std::min(1000, ctx_.settings.retry_max_ms)
                                                                 : ctx_.settings.retry_max_ms;
  backoff_ms_ = backoff_ms_ == 0 ? ctx_.settings.retry_min_ms : std::min(backoff_ms_ * 2, cap);
  std::uniform_int_distribution<int> jitter(backoff_ms_ / 2, backoff_ms_);
  const int wait = jitter(rng_);
  spdlog::warn("{}; retrying in {} ms (backoff {} ms)", why, wait, backoff_ms_);
  ctx_.sleep_ms(wait);
}

auto Link::call(std::string_view method, std::string_view target, const bj::value& body) -> bj::object {
  if (!ctx_.http) throw Error(ErrorKind::unavailable, "not registered with a parent yet");
  return call_parent(*ctx_.http, method, target, body);
}

auto Link::journal_state(std::int64_t entry_id, std::int32_t attempt) -> std::optional<EntryState> {
  try {
    auto o = json::parse_object(fs::read_file(journal_dir() / (std::to_string(entry_id) + ".json")));
    if (json::get_int(o, "attempt", 1) != attempt) return std::nullopt;
    return parse_entry_state(json::get_string(o, "state"));
  } catch (const Error&) {
    return std::nullopt;
  }
}

void Link::write_journal(std::int64_t entry_id, std::int32_t attempt, EntryState state) {
  fs::write_file_atomic(
      journal_dir() / (std::to_string(entry_id) + ".json"),
      bj::serialize(bj::object{
          {"entry_id", entry_id}, {"attempt", attempt}, {"state", std::string(to_string(state))}}));
}

// Queues a report durably (journal first, then outbox), then tries to deliver it.
void Link::report(std::int64_t entry_id, std::int32_t attempt, EntryState state, std::string message,
                  std::optional<int> exit_code, std::string output_tail, TransferProgress progress) {
  EntryReport r;
  r.progress = progress;
  r.entry_id = entry_id;
  r.attempt = attempt;
  r.seq = next_seq_++;
  r.state = state;
  r.message = std::move(message);
  r.exit_code = exit_code;
  r.output_tail = std::move(output_tail);
  fs::write_file_atomic(ctx_.settings.state_dir / "seq", std::to_string(next_seq_));
  write_journal(entry_id, attempt, state);
  char name[32];
  std::snprintf(name, sizeof name, "%016lld.json", static_cast<long long>(r.seq));
  auto record = json::to_json(r);
  record["server_id"] = ctx_.server_id;
  fs::write_file_atomic(ctx_.outbox_dir() / name, bj::serialize(record));
  try {
    flush_outbox();
  } catch (const Error& e) {
    spdlog::warn("report for entry {} kept in the outbox: {}", entry_id, e.what());
  }
  if (auto it = confirmed_.find(entry_id); it != confirmed_.end() &&
                                           (is_final(it->second) || it->second == EntryState::suspended) &&
                                           it->second != state)
    throw EntryWithdrawn{it->second};
}

// Sends every queued report in order; deletes those the manager acknowledged.
void Link::flush_outbox() {
  std::vector<stdfs::path> files;
  for (const auto& e : stdfs::directory_iterator(ctx_.outbox_dir()))
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
        if (!owner.empty() && owner != ctx_.server_id) continue;
        reports.push_back(std::move(record));
        sent.push_back(files[i]);
      } catch (const Error& e) {
        spdlog::error("dropping unreadable outbox record {}: {}", files[i].string(), e.what());
        stdfs::remove(files[i]);
      }
    }
    if (reports.empty()) continue;
    auto res = call("POST", "/v1/agent/report", bj::object{{"host_id", ctx_.host_id}, {"reports", reports}});
    for (const auto& v : json::get_array(res, "results")) {
      const auto& o = v.as_object();
      const auto entry = json::get_int(o, "entry_id");
      const auto state = parse_entry_state(json::get_string(o, "state"));
      confirmed_[entry] = state;
      if (json::get_string(o, "outcome") == "refused")
        spdlog::info("entry {} is {} at the manager; report not applied", entry, to_string(state));
    }
    for (const auto& f : sent) {
      std::error_code ec;
      stdfs::remove(f, ec);
    }
  }
}

bool Link::ensure_enrolled() {
  auto* id = ctx_.identity.get();
  if (!id) return true;
  const auto now = std::chrono::steady_clock::now();
  if (identity_checked_ != std::chrono::steady_clock::time_point{} &&
      now - identity_checked_ < std::chrono::minutes(1))
    return true;
  establish_trust(*id, ctx_.enrol, ctx_.settings.parents, ctx_.settings.bind_address);
  const auto url = ctx_.parents->current();
  const auto unix_now = fs::now_unix();
  if (!id->certified(unix_now)) {
    HttpClient c(ctx_.parents->client_settings(url));  // no certificate yet
    c.set_timeout(30);
    if (!enrol_once(*id, ctx_.enrol, c)) return false;
    ctx_.clients->renew();
    ctx_.registered = false;
  } else if (id->renewal_due(unix_now)) {
    try {
      renew_certificate(*id, ctx_.enrol, ctx_.clients->get(url));
      ctx_.clients->renew();
      ctx_.registered = false;
    } catch (const Error& e) {
      spdlog::warn("certificate renewal with {} failed ({}); trying again later", url, e.what());
    }
  }
  // Checked again within a quarter of what is left of the certificate, at most a minute later.
  const auto left = id->not_after() - fs::now_unix();
  identity_checked_ =
      now - std::chrono::minutes(1) + std::chrono::seconds(std::clamp<std::int64_t>(left / 4, 5, 60));
  return true;
}

void Link::register_with_parent() {
  ctx_.parent_url = ctx_.parents->current();
  ctx_.http = &ctx_.clients->get(ctx_.parent_url);
  ctx_.http->set_timeout(kDataTimeoutSeconds);
  const Host me =
      describe_this_host(ctx_.host_id, HostRole::agent, ctx_.settings.host_name, ctx_.settings.bind_address);
  auto body = json::to_json(me);
  if (const auto* id = ctx_.identity.get()) {
    // Signed: "I register below this parent now", which the relays above pass up should this host
    // have moved here from elsewhere.
    const auto status = call("GET", "/v1/status", nullptr);
    const auto parent = json::get_string(status, "host_id");
    const auto at = fs::now_unix();
    body["proof"] =
        bj::object{{"parent", parent},
                   {"at", at},
                   {"certificate", fs::read_file(id->cert_file())},
                   {"signature", id->sign(security::placement_statement(ctx_.host_id, parent, at))}};
  }
  auto res = call("POST", "/v1/agent/register", body);
  ctx_.server_id = json::get_string(res, "server_id", false);
  if (!ctx_.server_id.empty() && !is_valid_host_id(ctx_.server_id))
    throw Error(ErrorKind::unavailable, "parent " + ctx_.parent_url + " sent a malformed server_id");
  stdfs::create_directories(journal_dir());
  confirmed_.clear();
  ctx_.registered = true;
  ctx_.registered_once = true;
  spdlog::info("registered with {} as {} ({})", ctx_.parent_url, me.name, ctx_.host_id);
  // ID groups from the configuration: joined at every registration (joining twice is a no-op).
  for (const auto& g : ctx_.settings.id_groups) {
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

auto Link::join_call(const std::string& group, const std::string& password, bool leave, const char* how)
    -> bj::object {
  return call("POST", "/v1/agent/join",
              bj::object{{"host_id", ctx_.host_id},
                         {"group", group},
                         {"password", password},
                         {"leave", leave},
                         {"how", how}});
}

}  // namespace distrib::agent
