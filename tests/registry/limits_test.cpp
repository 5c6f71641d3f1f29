// S21 limits: the token bucket's arithmetic (pure, with explicit times), and the limiter in the
// client and the copier against real docker-registry processes. Elapsed times are only checked
// from below (a limit is never exceeded), never as speed targets; the byte rate's accuracy is
// measured by bench/limits-bench.py.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "registry/copier.hpp"
#include "registry/limits.hpp"
#include "tests/support/registry_harness.hpp"

namespace ferry::registry {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = Limiter::Clock;
using ferry::testing::build_and_push;
using ferry::testing::Registry;
using ferry::testing::skopeo_raw;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

TEST(LimiterBucket, UnlimitedNeverWaits) {
  Limiter::Bucket b;
  const auto t = Clock::now();
  EXPECT_EQ(b.reserve(1e12, t), Clock::duration::zero());
}

TEST(LimiterBucket, BurstThenTheRateInArrivalOrder) {
  Limiter::Bucket b{.rate = 100, .burst_seconds = 0.1};  // holds 10 units
  const auto t = Clock::now();
  EXPECT_EQ(b.reserve(10, t), Clock::duration::zero());   // the burst
  EXPECT_NEAR(seconds(b.reserve(10, t)), 0.10, 1e-6);     // then 100/s
  EXPECT_NEAR(seconds(b.reserve(5, t)), 0.15, 1e-6);      // behind the one before
  // 1 s later the debt (15) is paid and the bucket refilled to its burst, not beyond.
  EXPECT_EQ(b.reserve(10, t + 1150ms), Clock::duration::zero());
  EXPECT_NEAR(seconds(b.reserve(1, t + 1150ms)), 0.01, 1e-6);
}

TEST(LimiterBucket, LongRunRateIsTheLimit) {
  Limiter::Bucket b{.rate = 1000, .burst_seconds = 0.1};
  auto t = Clock::now();
  const auto start = t;
  // 1 MiB in 4 KiB pieces, each used when the bucket says: done after (bytes - burst) / rate.
  for (int i = 0; i < 256; ++i) t += b.reserve(4096, t);
  EXPECT_NEAR(seconds(t - start), (256.0 * 4096 - 100) / 1000, 1e-3);
}

TEST(Limiter, PieceIsAnEighthOfASecondOfTheRate) {
  EXPECT_EQ(Limiter({}).piece(1 << 20), 1u << 20);
  EXPECT_EQ(Limiter({.bytes_per_second = 8 << 20}).piece(4 << 20), 1u << 20);
  EXPECT_EQ(Limiter({.bytes_per_second = 1024}).piece(1 << 20), 16u * 1024);  // at least 16 KiB
  EXPECT_EQ(Limiter({.bytes_per_second = 64ull << 30}).piece(1 << 20), 1u << 20);
}

RegistryConfig plain(const std::string& host, std::shared_ptr<Limiter> limiter = {}) {
  RegistryConfig c;
  c.host = host;
  c.plain_http = true;
  c.limiter = std::move(limiter);
  return c;
}

Reference make_ref(const std::string& text) {
  auto r = parse_reference(text);
  if (!r) throw std::runtime_error(r.error().to_string());
  return *r;
}

TEST(Limiter, RequestsPerSecondHoldsForEveryRequest) {
  Registry reg;
  build_and_push("image", {"--seed", "rps"}, reg.host() + "/lim/rps:v1");
  auto limiter = std::make_shared<Limiter>(Limits{.requests_per_second = 5});
  asio::io_context ioc;
  RegistryClient client(ioc.get_executor(), plain(reg.host(), limiter));
  int found = 0;
  const auto start = Clock::now();
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 11; ++i) {
          auto h = co_await client.head_manifest("lim/rps", "v1");
          if (h && *h) ++found;
        }
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  ioc.run();
  EXPECT_EQ(found, 11);
  // One request of burst, then 5 per second: 10 more take at least 2 s.
  EXPECT_GE(seconds(Clock::now() - start), 1.9);
}

TEST(Limiter, BytesPerSecondHoldsForACopy) {
  Registry src, dst;
  build_and_push("image", {"--layer-bytes", std::to_string(3 << 20), "--seed", "bps"}, src.host() + "/lim/bps:v1");
  auto limiter = std::make_shared<Limiter>(Limits{.bytes_per_second = 1 << 20});
  const auto start = Clock::now();
  auto r = run_copies({{make_ref(src.host() + "/lim/bps:v1"), make_ref(dst.host() + "/lim/bps:v1")}},
                      [&](const std::string& host, Side side) {
                        return plain(host, side == Side::Destination ? limiter : nullptr);
                      },
                      {});
  ASSERT_TRUE(r.at(0)) << r.at(0).error().to_string();
  // 3 MiB at 1 MiB/s (the first 0.1 s is the bucket's burst).
  EXPECT_GE(seconds(Clock::now() - start), 2.8);
  EXPECT_EQ(skopeo_raw(src.host() + "/lim/bps:v1"), skopeo_raw(dst.host() + "/lim/bps:v1"));
}

// A backfill's copy started first and a push's of the same size after it, through one byte
// limit: the push finishes first. Shared fairly instead, the backfill would (it had a head start).
TEST(Limiter, PushBytesGoBeforeBackfillBytes) {
  Registry src, dst;
  build_and_push("image", {"--layer-bytes", std::to_string(3 << 20), "--seed", "backfill"}, src.host() + "/lim/old:v1");
  build_and_push("image", {"--layer-bytes", std::to_string(3 << 20), "--seed", "push"}, src.host() + "/lim/new:v1");
  auto limiter = std::make_shared<Limiter>(Limits{.bytes_per_second = 2 << 20});
  asio::io_context ioc;
  Copier copier(ioc.get_executor(), [&](const std::string& host, Side side) {
    return plain(host, side == Side::Destination ? limiter : nullptr);
  });
  std::vector<std::string> finished;
  auto run = [&](std::string repo, Lane lane, std::chrono::milliseconds after) -> asio::awaitable<void> {
    asio::steady_timer t(ioc, after);
    co_await t.async_wait(asio::use_awaitable);
    auto r = co_await copier.copy(make_ref(src.host() + "/" + repo + ":v1"), make_ref(dst.host() + "/" + repo + ":v1"), {}, lane);
    finished.push_back(r ? repo : repo + " failed: " + r.error().to_string());
  };
  auto rethrow = [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  };
  asio::co_spawn(ioc, run("lim/old", Lane::Backfill, 0ms), rethrow);
  asio::co_spawn(ioc, run("lim/new", Lane::Push, 400ms), rethrow);
  ioc.run();
  EXPECT_EQ(finished, (std::vector<std::string>{"lim/new", "lim/old"}));
  EXPECT_EQ(skopeo_raw(src.host() + "/lim/old:v1"), skopeo_raw(dst.host() + "/lim/old:v1"));
  EXPECT_EQ(skopeo_raw(src.host() + "/lim/new:v1"), skopeo_raw(dst.host() + "/lim/new:v1"));
}

}  // namespace
}  // namespace ferry::registry
