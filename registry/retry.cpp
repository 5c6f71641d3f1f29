// Retry policy arithmetic.
#include "registry/retry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <string>

namespace ferry::registry {

bool retryable_status(int status) {
  return status == 408 || status == 429 || (status >= 500 && status <= 599 && status != 501 && status != 505);
}

std::chrono::milliseconds retry_delay(const RetryPolicy& policy, int attempt, double jitter01,
                                      std::optional<std::chrono::milliseconds> retry_after) {
  if (retry_after) return std::min(*retry_after, policy.max_delay);
  const double exp = std::ldexp(static_cast<double>(policy.base_delay.count()), std::clamp(attempt - 1, 0, 30));
  const double capped = std::min(exp, static_cast<double>(policy.max_delay.count()));
  const double j = std::clamp(jitter01, 0.0, 1.0);
  return std::chrono::milliseconds(static_cast<long long>(capped * (0.5 + 0.5 * j)));
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value, long long now_unix) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  long long secs = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), secs);
  if (ec == std::errc() && p == value.data() + value.size()) {
    if (secs < 0) return std::nullopt;
    return std::chrono::milliseconds(secs * 1000);
  }
  std::tm tm{};
  const std::string s(value);
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end != '\0') return std::nullopt;
  const long long when = static_cast<long long>(timegm(&tm));
  return std::chrono::milliseconds(std::max(0LL, when - now_unix) * 1000);
}

}  // namespace ferry::registry
