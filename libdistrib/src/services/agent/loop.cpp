// The agent's work loop: register, flush, poll, process each entry, and the stop phase.
#include "services/agent/loop.h"

namespace distrib::agent {

void WorkLoop::process(const bj::object& item) {
  const auto entry_id = json::get_int(item, "entry_id");
  const auto attempt = static_cast<std::int32_t>(json::get_int(item, "attempt", 1));
  if (auto s = link_.journal_state(entry_id, attempt); s && is_final(*s)) return;  // re-delivered work
  link_.new_attempt(entry_id);  // a new attempt: what the server said of the last one is over
  std::optional<security::Order> order;
  try {
    order = orders_.verify(item);
  } catch (const Error& e) {
    return fail(entry_id, attempt, e.what());
  }
  if (order) {
    if (const auto done = orders_.carried_out(*order)) {
      // The same order again (through another relay, or replayed): its result, not a second run.
      spdlog::warn("entry {}: order for entry {} attempt {} was carried out before ({}); not run again",
                   entry_id, order->entry, order->attempt, to_string(*done));
      try {
        link_.report(entry_id, attempt, *done, "carried out before; not run again");
      } catch (const EntryWithdrawn& w) {
        link_.write_journal(entry_id, attempt, w.state);
      }
      return;
    }
  }
  run_item(item, entry_id, attempt, order ? &*order : nullptr);
  if (order)
    if (auto s = link_.journal_state(entry_id, attempt); s && is_final(*s)) orders_.remember(*order, *s);
}

void WorkLoop::fail(std::int64_t entry_id, std::int32_t attempt, const std::string& why) {
  spdlog::error("entry {}: {}", entry_id, why);
  try {
    link_.report(entry_id, attempt, EntryState::failed, why);
  } catch (const EntryWithdrawn& w) {
    link_.write_journal(entry_id, attempt, w.state);
  }
}

void WorkLoop::run_item(const bj::object& item, std::int64_t entry_id, std::int32_t attempt,
                        const security::Order* order) {
  try {
    const auto type_text = json::get_string(item, "type", false);
    switch (type_text.empty() ? JobType::install : parse_job_type(type_text)) {
      case JobType::install:
        return installer_.install(item, entry_id, attempt, order);
      case JobType::uninstall:
        return installer_.uninstall(item, entry_id, attempt);
      case JobType::get_system_info:
        return inventory_.report_inventory_now(InventoryScope::system, entry_id, attempt);
      case JobType::get_software_info:
        return inventory_.report_inventory_now(InventoryScope::software, entry_id, attempt);
      case JobType::collect_files:
        return files_.collect_files(item, entry_id, attempt);
      default:
        throw Error(ErrorKind::invalid_argument, "an agent does not run " + type_text + " jobs");
    }
  } catch (const EntryWithdrawn& w) {
    link_.write_journal(entry_id, attempt, w.state);
    spdlog::info("entry {} was {} by the manager; stopped", entry_id, to_string(w.state));
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::unavailable) throw;  // transient: retried on the next poll
    fail(entry_id, attempt, e.what());
  } catch (const std::exception& e) {
    // The machine's own trouble (a directory that cannot be made or replaced, a full disk): the
    // entry fails with the reason, and the job's retry policy decides what happens next. It is
    // never taken for a lost parent (which would retry it at once, forever, blocking other work).
    fail(entry_id, attempt, std::string("on this host: ") + e.what());
  }
}

void WorkLoop::run() {
  while (!ctx_.stopping) {
    try {
      if (ctx_.parents->maybe_return_to_primary()) ctx_.registered = false;
      if (!link_.ensure_enrolled()) {
        ctx_.sleep_ms(std::max(1000, ctx_.settings.retry_max_ms));  // waiting for approval
        continue;
      }
      if (!ctx_.registered) link_.register_with_parent();
      link_.flush_outbox();
      // A hung parent keeps its connections open. A parent that keeps held polls alive (it said
      // so: heartbeat_seconds) and is silent for three beats is hung; otherwise a held poll is
      // answered by its wait at the latest, and 5 s more of silence is enough. Then reconnect.
      const bool beats = parent_heartbeat_ > 0;
      ctx_.http->set_timeout(beats ? std::max(3, 3 * parent_heartbeat_)
                                   : std::max(10, ctx_.settings.poll_timeout_seconds + 5));
      // The first contact after starting asks for at-start installs too, and does not wait.
      const auto target = "/v1/agent/work?host_id=" + ctx_.host_id +
                          (fresh_start_ ? std::string("&start=1&wait=0")
                                        : "&wait=" + std::to_string(ctx_.settings.poll_timeout_seconds)) +
                          (beats ? "&heartbeat=1" : "");
      auto res = link_.call("GET", target, nullptr);
      ctx_.http->set_timeout(kDataTimeoutSeconds);
      link_.contact_succeeded();
      parent_heartbeat_ =
          static_cast<int>(std::clamp<std::int64_t>(json::get_int(res, "heartbeat_seconds", 0), 0, 60));
      installer_.publishers().announced(json::get_int(res, "publishers_version", 0));
      const bool did_something = process_work(json::get_array(res, "work"));
      fresh_start_ = false;
      // Work the manager still lists but this agent already finished: let reports catch up.
      if (!json::get_array(res, "work").empty() && !did_something) ctx_.sleep_ms(ctx_.settings.retry_max_ms);
    } catch (const Error& e) {
      if (ctx_.stopping) break;
      parent_heartbeat_ = 0;  // the next parent may not keep polls alive: learn it again
      link_.failed_contact(e.what());
    } catch (const std::exception& e) {
      if (ctx_.stopping) break;
      parent_heartbeat_ = 0;
      link_.failed_contact(std::string("unexpected: ") + e.what());
    }
  }
  stop_phase();
  try {
    link_.flush_outbox();
  } catch (...) {
  }
}

// Processes work items in order; returns whether any was new.
auto WorkLoop::process_work(const bj::array& work) -> bool {
  bool did_something = false;
  for (const auto& item : work) {
    if (ctx_.abandoning()) break;
    const auto& o = item.as_object();
    const auto before = link_.journal_state(json::get_int(o, "entry_id"),
                                            static_cast<std::int32_t>(json::get_int(o, "attempt", 1)));
    if (before && is_final(*before)) continue;
    process(o);
    did_something = true;
  }
  return did_something;
}

// Orderly stop: one last contact asks for installs timed "at agent stop" and runs them within
// the stop budget. A parent that cannot be reached ends it: they run at the next stop.
void WorkLoop::stop_phase() {
  if (ctx_.settings.stop_install_seconds <= 0 || !ctx_.registered || ctx_.parent_url.empty()) return;
  ctx_.stop_deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(ctx_.settings.stop_install_seconds);
  ctx_.in_stop_phase = true;
  try {
    auto cs = ctx_.parents->client_settings(ctx_.parent_url);
    cs.connect_timeout_seconds = 3;
    cs.timeout_seconds = 15;
    stop_client_ = std::make_unique<HttpClient>(cs);
    ctx_.http = stop_client_.get();
    link_.flush_outbox();
    auto res = link_.call("GET", "/v1/agent/work?host_id=" + ctx_.host_id + "&stopping=1&wait=0", nullptr);
    const auto& work = json::get_array(res, "work");
    if (!work.empty()) {
      spdlog::info("stopping: {} install(s) timed at agent stop (up to {} s)", work.size(),
                   ctx_.settings.stop_install_seconds);
      process_work(work);
    }
  } catch (const std::exception& e) {
    spdlog::warn("stopping: installs timed at agent stop not run now ({}); they run at the next stop",
                 e.what());
  }
  ctx_.in_stop_phase = false;
}

}  // namespace distrib::agent
