// A rate-limited work queue with client-go's semantics (util/workqueue): keys are deduplicated,
// a key is never handed to two workers at once, failures back off per key (5 ms doubling up to
// 1000 s) and under a global token bucket (10/s, burst 100), success forgets the key, and a key
// can be re-added after a delay. The clock is injected so tests run on a fake one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

namespace ferry::runtime {

using Clock = std::chrono::steady_clock;
using Duration = std::chrono::nanoseconds;
using NowFn = std::function<Clock::time_point()>;

struct RateLimiterOptions {
  Duration base_delay = std::chrono::milliseconds(5);
  Duration max_delay = std::chrono::seconds(1000);
  double qps = 10.0;
  double burst = 100.0;
};

// max(per-key exponential failure backoff, global token bucket), as client-go's
// DefaultControllerRateLimiter.
class RateLimiter {
 public:
  explicit RateLimiter(RateLimiterOptions o = {}) : opts_(o), tokens_(o.burst) {}
  Duration when(const std::string& key, Clock::time_point now);
  void forget(const std::string& key) { failures_.erase(key); }
  int requeues(const std::string& key) const;

 private:
  RateLimiterOptions opts_;
  std::map<std::string, int> failures_;
  double tokens_;
  std::optional<Clock::time_point> last_;
};

struct QueueCounters {
  std::uint64_t adds = 0;
  std::uint64_t retries = 0;
};

class WorkQueue {
 public:
  explicit WorkQueue(
      NowFn now = [] { return Clock::now(); }, RateLimiterOptions o = {});

  void add(const std::string& key);
  void add_after(const std::string& key, Duration delay);
  // After a failure: re-added after the rate limiter's delay.
  void add_rate_limited(const std::string& key);
  // After a success: the key's failure history is dropped.
  void forget(const std::string& key);
  int requeues(const std::string& key) const;

  // Next ready key, or nullopt when none is ready now (or the queue is shut down).
  std::optional<std::string> try_get();
  // Blocks until a key is ready; nullopt once the queue is shut down.
  std::optional<std::string> get();
  // The worker finished `key`; if it was added meanwhile, it is queued again.
  void done(const std::string& key);
  // Wakes every blocked get(); later adds are ignored.
  void shut_down();
  bool shutting_down() const;

  std::size_t len() const;      // ready keys
  std::size_t waiting() const;  // delayed keys
  QueueCounters counters() const;
  // Told how long each key waited from its add to the worker taking it (called under the lock:
  // it must only record, as a histogram does). Set before workers start.
  void on_dequeue(std::function<void(Duration waited)> f) { on_dequeue_ = std::move(f); }

 private:
  void add_locked(const std::string& key);
  void promote_locked(Clock::time_point now);
  std::optional<std::string> pop_locked();

  NowFn now_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::set<std::string> dirty_;
  std::set<std::string> processing_;
  std::map<std::string, Clock::time_point> delayed_;  // earliest time per key
  RateLimiter limiter_;
  QueueCounters counters_;
  std::map<std::string, Clock::time_point> added_at_;  // keys in dirty_: when they were added
  std::function<void(Duration)> on_dequeue_;
  bool shutdown_ = false;
};

}  // namespace ferry::runtime
