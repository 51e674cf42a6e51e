// The agent, the composition root of its parts (services/agent/, one class per file): builds them
// in order and starts and stops them; the public class forwards to them.
#include "services/agent/loop.h"

namespace distrib {

using namespace agent;

// The parts, in construction order; each takes the context and the parts declared before it that
// it calls.
struct Agent::Impl {
  explicit Impl(AgentSettings settings)
      : ctx(std::move(settings)),
        link(ctx),
        fetcher(ctx, link),
        inventory(ctx, link),
        installer(ctx, link, fetcher, inventory),
        files(ctx, link),
        loop(ctx, link, installer, inventory, files) {}

  Context ctx;
  Link link;
  Fetcher fetcher;
  InventoryReporter inventory;
  Installer installer;
  FileCollector files;
  WorkLoop loop;
};

Agent::Agent(AgentSettings settings) : impl_(std::make_unique<Impl>(std::move(settings))) {}

Agent::~Agent() = default;
const std::string& Agent::host_id() const noexcept {
  return impl_->ctx.host_id;
}

// The inventory thread runs beside the work loop, from its start until after its stop phase.
void Agent::run() {
  impl_->inventory.start();
  impl_->loop.run();
  impl_->inventory.join();
}

JoinOutcome Agent::join_group(const std::string& group, const std::string& password, bool leave) {
  auto& i = *impl_;
  for (std::size_t tries = 0;; ++tries) {
    try {
      i.link.register_with_parent();
      break;
    } catch (const Error& e) {
      i.ctx.registered = false;
      if (e.kind() != ErrorKind::unavailable || tries + 1 >= i.ctx.settings.parents.size()) throw;
      i.ctx.parents->failed(i.ctx.parents->current());
    }
  }
  auto o = i.link.join_call(group, password, leave, "command");
  JoinOutcome out;
  out.group = group;
  out.owner = json::get_string(o, "owner", false);
  const char* key = leave ? "left" : "joined";
  out.changed = json::get_bool(o, key);
  out.entries = json::get_int(o, leave ? "cancelled" : "entries", 0);
  return out;
}

void Agent::stop() {
  impl_->ctx.request_stop();
  impl_->inventory.abort();
}

void Agent::set_user_inventory(const std::filesystem::path& state_dir,
                               const std::map<std::string, std::string>& values) {
  const auto fields = InventoryReporter::cached_fields(state_dir);
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
