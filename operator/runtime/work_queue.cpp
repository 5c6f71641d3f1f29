// client-go-style work queue; see work_queue.hpp.
#include "operator/runtime/work_queue.hpp"

#include <algorithm>
#include <cmath>

namespace ferry::runtime {

Duration RateLimiter::when(const std::string& key, Clock::time_point now) {
  const int n = failures_[key]++;
  // 5 ms * 2^n, computed in double to avoid overflow, capped.
  const double per_key_ns = static_cast<double>(opts_.base_delay.count()) * std::pow(2.0, n);
  Duration per_key = per_key_ns >= static_cast<double>(opts_.max_delay.count())
                         ? opts_.max_delay
                         : Duration(static_cast<Duration::rep>(per_key_ns));
  if (last_) {
    const double elapsed = std::chrono::duration<double>(now - *last_).count();
    tokens_ = std::min(opts_.burst, tokens_ + std::max(0.0, elapsed) * opts_.qps);
  }
  last_ = now;
  tokens_ -= 1.0;
  Duration bucket{0};
  if (tokens_ < 0)
    bucket =
        std::chrono::duration_cast<Duration>(std::chrono::duration<double>(-tokens_ / opts_.qps));
  return std::max(per_key, bucket);
}

int RateLimiter::requeues(const std::string& key) const {
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

WorkQueue::WorkQueue(NowFn now, RateLimiterOptions o) : now_(std::move(now)), limiter_(o) {}

void WorkQueue::add_locked(const std::string& key) {
  if (shutdown_ || dirty_.contains(key)) return;
  ++counters_.adds;
  dirty_.insert(key);
  added_at_.emplace(key, now_());
  if (processing_.contains(key)) return;  // queued again by done()
  queue_.push_back(key);
  cv_.notify_one();
}

void WorkQueue::add(const std::string& key) {
  std::lock_guard lock(mutex_);
  add_locked(key);
}

void WorkQueue::add_after(const std::string& key, Duration delay) {
  std::lock_guard lock(mutex_);
  if (shutdown_) return;
  if (delay <= Duration::zero()) {
    add_locked(key);
    return;
  }
  const auto at = now_() + delay;
  auto [it, inserted] = delayed_.emplace(key, at);
  if (!inserted && at < it->second) it->second = at;  // the earliest request wins
  cv_.notify_all();
}

void WorkQueue::add_rate_limited(const std::string& key) {
  Duration d;
  {
    std::lock_guard lock(mutex_);
    if (shutdown_) return;
    ++counters_.retries;
    d = limiter_.when(key, now_());
  }
  add_after(key, d);
}

void WorkQueue::forget(const std::string& key) {
  std::lock_guard lock(mutex_);
  limiter_.forget(key);
}

int WorkQueue::requeues(const std::string& key) const {
  std::lock_guard lock(mutex_);
  return limiter_.requeues(key);
}

void WorkQueue::promote_locked(Clock::time_point now) {
  for (auto it = delayed_.begin(); it != delayed_.end();) {
    if (it->second <= now) {
      const std::string key = it->first;
      it = delayed_.erase(it);
      add_locked(key);
    } else {
      ++it;
    }
  }
}

std::optional<std::string> WorkQueue::pop_locked() {
  if (queue_.empty()) return std::nullopt;
  std::string key = std::move(queue_.front());
  queue_.pop_front();
  processing_.insert(key);
  dirty_.erase(key);
  if (auto it = added_at_.find(key); it != added_at_.end()) {
    if (on_dequeue_) on_dequeue_(now_() - it->second);
    added_at_.erase(it);
  }
  return key;
}

std::optional<std::string> WorkQueue::try_get() {
  std::lock_guard lock(mutex_);
  if (shutdown_) return std::nullopt;
  promote_locked(now_());
  return pop_locked();
}

std::optional<std::string> WorkQueue::get() {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (shutdown_) return std::nullopt;
    promote_locked(now_());
    if (auto key = pop_locked()) return key;
    // Sleep until the earliest delayed key is due (re-checked at least every second).
    auto wait = std::chrono::duration_cast<Duration>(std::chrono::seconds(1));
    const auto now = now_();
    for (const auto& [k, at] : delayed_)
      wait = std::min(wait, std::max(Duration::zero(), at - now));
    cv_.wait_for(lock, wait);
  }
}

void WorkQueue::done(const std::string& key) {
  std::lock_guard lock(mutex_);
  processing_.erase(key);
  if (dirty_.contains(key) && !shutdown_) {
    queue_.push_back(key);
    cv_.notify_one();
  }
}

void WorkQueue::shut_down() {
  std::lock_guard lock(mutex_);
  shutdown_ = true;
  cv_.notify_all();
}

bool WorkQueue::shutting_down() const {
  std::lock_guard lock(mutex_);
  return shutdown_;
}

std::size_t WorkQueue::len() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

std::size_t WorkQueue::waiting() const {
  std::lock_guard lock(mutex_);
  return delayed_.size();
}

QueueCounters WorkQueue::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

}  // namespace ferry::runtime
