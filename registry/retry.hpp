// When and how long to wait before retrying a registry request; pure, no I/O.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace ferry::registry {

struct RetryPolicy {
  int max_attempts = 6;                               // including the first
  std::chrono::milliseconds base_delay{100};
  std::chrono::milliseconds max_delay{10'000};        // per wait, Retry-After included
  std::chrono::milliseconds max_total{120'000};       // all waits together
  bool operator==(const RetryPolicy&) const = default;
};

// 408, 429 and 5xx except 501/505 (which no retry will fix).
bool retryable_status(int status);

// Exponential backoff with jitter: min(max_delay, base * 2^(attempt-1)) scaled into
// [50%, 100%] by jitter01 in [0,1). attempt is 1 for the first retry. A server's
// Retry-After, when present, wins (capped by max_delay).
std::chrono::milliseconds retry_delay(const RetryPolicy& policy, int attempt, double jitter01,
                                      std::optional<std::chrono::milliseconds> retry_after = std::nullopt);

// Retry-After as delay-seconds or an HTTP-date (relative to now_unix seconds).
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value, long long now_unix);

}  // namespace ferry::registry
