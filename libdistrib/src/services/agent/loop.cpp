// The agent's work loop: register, flush, poll, process each entry, and the stop phase.
#include "services/agent/impl.h"

namespace distrib {

// Should entry processing give up (a stop, or the stop phase's time is over)?
auto Agent::Impl::abandoning() const -> bool {
  if (!stopping) return false;
  return !in_stop_phase || std::chrono::steady_clock::now() > stop_deadline;
}

void Agent::Impl::process(const bj::object& item) {
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

void Agent::Impl::run() {
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
auto Agent::Impl::process_work(const bj::array& work) -> bool {
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
void Agent::Impl::stop_phase() {
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

}  // namespace distrib
