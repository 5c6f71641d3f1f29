// An informer: keeps an in-memory cache of one kind in step with the API server through the
// list → watch → (resume | re-list on 410 Gone) cycle of kube-runtime's watcher, and tells a
// handler about every change (level-triggered: handlers enqueue keys, never replay events).
#pragma once

#include <atomic>
#include <boost/json/value.hpp>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "kube/api.hpp"

namespace ferry::runtime {

// The watcher's states; pure, so its transitions are tested without a server.
class WatcherState {
 public:
  enum class Phase { NeedList, Watching };
  Phase phase() const { return phase_; }
  const std::string& resource_version() const { return rv_; }
  void listed(std::string rv) {
    rv_ = std::move(rv);
    phase_ = Phase::Watching;
  }
  // Every event, bookmarks included, moves the resume point forward.
  void saw(const std::string& rv) {
    if (!rv.empty()) rv_ = rv;
  }
  void watch_ended(kube::WatchEnd end) {
    if (end == kube::WatchEnd::Gone) phase_ = Phase::NeedList;
  }

 private:
  Phase phase_ = Phase::NeedList;
  std::string rv_;
};

class Informer {
 public:
  // type: ADDED, MODIFIED, DELETED (also synthesised for objects gone at a re-list).
  using Handler = std::function<void(const std::string& type, const boost::json::value& object)>;

  // keep_objects false: a watch without a cache (get/items stay empty; no DELETED is made up at
  // a re-list), for kinds whose objects the caller keeps itself (ImageReplication records).
  Informer(kube::Api& api, kube::ResourceType type, std::string namespace_, Handler handler,
           bool keep_objects = true);

  // Blocks until `stop`; failures are retried with backoff (1 s doubling to 30 s).
  void run(std::stop_token stop);
  // Called on the informer's thread after its first list has been handled. Set before run().
  void on_synced(std::function<void()> f) { on_synced_ = std::move(f); }

  std::optional<boost::json::value> get(const std::string& key) const;  // key: "name" or "ns/name"
  std::vector<boost::json::value> items() const;
  bool has_synced() const { return synced_; }
  std::uint64_t lists() const { return lists_; }
  const kube::ResourceType& type() const { return type_; }

  static std::string key_of(const boost::json::value& object);

 private:
  bool relist(std::stop_token stop);
  kube::Api& api_;
  kube::ResourceType type_;
  std::string namespace_;
  Handler handler_;
  std::function<void()> on_synced_;
  bool keep_objects_;
  mutable std::mutex mutex_;
  std::map<std::string, boost::json::value> cache_;
  WatcherState state_;
  std::atomic<bool> synced_{false};
  std::atomic<std::uint64_t> lists_{0};
};

}  // namespace ferry::runtime
