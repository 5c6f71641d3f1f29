// Token buckets for S21 limits. A reservation may drive a bucket below zero: later callers then
// wait longer, in the order they came, and the long-run rate is exactly the limit.
#include "registry/limits.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace ferry::registry {

namespace asio = boost::asio;

namespace {

asio::awaitable<void> sleep_for(Limiter::Clock::duration d) {
  if (d <= Limiter::Clock::duration::zero()) co_return;
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

}  // namespace

Limiter::Clock::duration Limiter::Bucket::reserve(double units, Clock::time_point now) {
  if (rate <= 0) return Clock::duration::zero();
  const double capacity = rate * burst_seconds;
  if (!primed) {
    tokens = capacity;
    last = now;
    primed = true;
  }
  tokens = std::min(capacity, tokens + rate * std::chrono::duration<double>(now - last).count());
  last = now;
  tokens -= units;
  if (tokens >= 0) return Clock::duration::zero();
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(-tokens / rate));
}

Limiter::Limiter(Limits limits) { set(limits); }

void Limiter::set(Limits limits) {
  std::lock_guard lock(mutex_);
  requests_.rate = limits.requests_per_second;
  // A request bucket holds at least one request, so a rate under 10/s still lets one through.
  requests_.burst_seconds = limits.requests_per_second > 0 ? std::max(0.1, 1.0 / limits.requests_per_second) : 0;
  bytes_.rate = static_cast<double>(limits.bytes_per_second);
}

Limits Limiter::limits() const {
  std::lock_guard lock(mutex_);
  return {requests_.rate, static_cast<std::uint64_t>(bytes_.rate)};
}

asio::awaitable<void> Limiter::request() {
  Clock::duration wait;
  {
    std::lock_guard lock(mutex_);
    wait = requests_.reserve(1, Clock::now());
  }
  co_await sleep_for(wait);
}

asio::awaitable<void> Limiter::bytes(std::uint64_t n, Lane lane) {
  if (lane == Lane::Backfill) {
    // Yield to pushes: wait while their bytes move, but not longer than kBackfillYield.
    const auto give_up = Clock::now() + kBackfillYield;
    for (;;) {
      Clock::time_point until;
      {
        std::lock_guard lock(mutex_);
        if (bytes_.rate <= 0) co_return;
        until = push_moving_until_;
      }
      const auto now = Clock::now();
      if (until <= now || now >= give_up) break;
      co_await sleep_for(std::min(until, give_up) - now);
    }
  }
  Clock::duration wait;
  {
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    wait = bytes_.reserve(static_cast<double>(n), now);
    if (lane == Lane::Push && bytes_.rate > 0) {
      // A push counts as moving until a little after its reservation is used.
      push_moving_until_ = std::max(push_moving_until_, now + wait + std::chrono::milliseconds(250));
    }
  }
  co_await sleep_for(wait);
}

std::size_t Limiter::piece(std::size_t chunk) const {
  std::lock_guard lock(mutex_);
  if (bytes_.rate <= 0) return chunk;
  const auto eighth = static_cast<std::size_t>(bytes_.rate / 8);
  return std::min(chunk, std::max<std::size_t>(16 * 1024, eighth));
}

}  // namespace ferry::registry
