// Log lines with their control characters escaped (logging.h).
#include <distrib/services/logging.h>

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

namespace distrib {

std::string escape_control_characters(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  return out;
}

namespace {
// Formats with a pattern after escaping the message.
class EscapingFormatter final : public spdlog::formatter {
 public:
  explicit EscapingFormatter(std::string pattern)
      : pattern_(std::move(pattern)), inner_(std::make_unique<spdlog::pattern_formatter>(pattern_)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    bool clean = true;
    for (const char c : payload)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        clean = false;
        break;
      }
    if (clean) return inner_->format(msg, dest);
    const auto escaped = escape_control_characters(payload);
    auto copy = msg;
    copy.payload = spdlog::string_view_t(escaped.data(), escaped.size());
    inner_->format(copy, dest);
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<EscapingFormatter>(pattern_);
  }

 private:
  std::string pattern_;
  std::unique_ptr<spdlog::pattern_formatter> inner_;
};
}  // namespace

void set_log_format(const std::string& pattern) {
  spdlog::set_formatter(std::make_unique<EscapingFormatter>(pattern));
}

}  // namespace distrib
