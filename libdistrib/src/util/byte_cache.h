#pragma once
// A bounded least-recently-used cache of immutable byte strings by key (compressed chunks a
// server sends to many requesters at about the same time). Thread-safe.
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace distrib {

class ByteCache {
 public:
  using Bytes = std::shared_ptr<const std::string>;
  explicit ByteCache(std::uint64_t limit_bytes) : limit_(limit_bytes) {}

  Bytes get(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second.second);
    return it->second.first;
  }

  void put(const std::string& key, Bytes value) {
    if (!value || value->size() > limit_ / 4) return;  // never let one entry crowd out the rest
    std::lock_guard lock(mutex_);
    if (map_.count(key)) return;
    order_.push_front(key);
    bytes_ += value->size();
    map_.emplace(key, std::make_pair(std::move(value), order_.begin()));
    while (bytes_ > limit_ && !order_.empty()) {
      auto victim = map_.find(order_.back());
      bytes_ -= victim->second.first->size();
      map_.erase(victim);
      order_.pop_back();
    }
  }

  void erase(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) return;
    bytes_ -= it->second.first->size();
    order_.erase(it->second.second);
    map_.erase(it);
  }

 private:
  std::mutex mutex_;
  std::uint64_t limit_;
  std::uint64_t bytes_ = 0;
  std::list<std::string> order_;  // most recent first
  std::unordered_map<std::string, std::pair<Bytes, std::list<std::string>::iterator>> map_;
};

}  // namespace distrib
