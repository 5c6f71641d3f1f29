// Per-registry limits on the traffic Ferry sends to or reads from a registry (S21): requests per
// second and bytes per second, as token buckets shared by every client of that registry (every
// copy, poll and backfill), with two lanes so that pushes' bytes go before a backfill's.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace ferry::registry {

struct Limits {
  double requests_per_second = 0;    // 0: unlimited
  std::uint64_t bytes_per_second = 0;  // 0: unlimited
  bool operator==(const Limits&) const = default;
};

// Whose bytes these are: a push's (first) or a backfill's (what pushes leave).
enum class Lane { Push, Backfill };

class Limiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Limiter(Limits limits);
  // New rates apply to the next reservation; what is reserved stays reserved.
  void set(Limits limits);
  Limits limits() const;

  // Waits until one more request may go out.
  boost::asio::awaitable<void> request();
  // Waits until n more bytes may pass. A backfill's bytes wait while pushes are moving bytes
  // (at most `kBackfillYield` at a time, so its connections never go idle for long).
  boost::asio::awaitable<void> bytes(std::uint64_t n, Lane lane);
  // How many bytes a caller should pace at once, at most `chunk`: about 1/8 s of the byte rate
  // (at least 16 KiB), so a slow limit sends a steady stream instead of long silences.
  std::size_t piece(std::size_t chunk) const;

  static constexpr std::chrono::milliseconds kBackfillYield{2000};

  // Pure bucket arithmetic, exposed for tests: reserves `units` at `now` and returns how long the
  // caller must wait before using them. The bucket holds at most `burst` seconds of its rate.
  struct Bucket {
    double rate = 0;  // units per second; 0: unlimited
    double burst_seconds = 0.1;
    double tokens = 0;
    Clock::time_point last{};
    bool primed = false;
    Clock::duration reserve(double units, Clock::time_point now);
  };

 private:
  mutable std::mutex mutex_;
  Bucket requests_, bytes_;
  Clock::time_point push_moving_until_{};
};

}  // namespace ferry::registry
