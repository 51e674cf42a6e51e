// The agent: the public class over Agent::Impl, whose parts are under services/agent/.
#include "services/agent/impl.h"

namespace distrib {

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
