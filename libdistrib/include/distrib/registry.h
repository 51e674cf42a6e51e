#pragma once
// One registry for every kind of plug-in: store backends, failover coordinators, event sinks.
//
// A registry maps a name to a factory that takes the component's typed settings and returns a
// `std::unique_ptr<Interface>`. Implementations are registered explicitly where the program is
// composed (the daemon's main, a test, an example), never by static initialisers. Every registry
// speaks the same way: a name registered twice is refused, and an unknown name is refused with the
// list of the known ones, e.g. `unknown database backend "mysql" (known: odbc, postgresql, sqlite)`.
#include <distrib/error.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace distrib {

template <class Interface, class... Args>
class Registry {
 public:
  using Factory = std::function<std::unique_ptr<Interface>(const Args&...)>;

  /// `kind` names what is registered, for messages ("database backend", "failover coordinator").
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  /// Throws Error(invalid_argument) when `name` is already registered.
  void add(const std::string& name, Factory factory) {
    if (!factories_.emplace(name, std::move(factory)).second)
      throw Error(ErrorKind::invalid_argument, kind_ + " \"" + name + "\" is registered twice");
  }

  bool contains(const std::string& name) const { return factories_.count(name) > 0; }

  /// The registered names in order.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(factories_.size());
    for (const auto& entry : factories_) out.push_back(entry.first);
    return out;
  }

  /// The registered names as one comma-separated list, for messages.
  std::string known_list() const {
    std::string out;
    for (const auto& entry : factories_) out += (out.empty() ? "" : ", ") + entry.first;
    return out;
  }

  /// Builds the implementation registered as `name`. Throws Error(invalid_argument) listing the
  /// known names when there is none; otherwise whatever the factory throws.
  std::unique_ptr<Interface> make(const std::string& name, const Args&... args) const {
    const auto it = factories_.find(name);
    if (it == factories_.end())
      throw Error(ErrorKind::invalid_argument,
                  "unknown " + kind_ + " \"" + name + "\" (known: " + known_list() + ")");
    return it->second(args...);
  }

  const std::string& kind() const noexcept { return kind_; }

 private:
  std::string kind_;
  std::map<std::string, Factory> factories_;
};

}  // namespace distrib
