// Work queue semantics (client-go's) on a fake clock; leader election decisions; watcher states.
#include "operator/runtime/work_queue.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "operator/runtime/informer.hpp"
#include "operator/runtime/leader_election.hpp"

namespace ferry::runtime {
namespace {

using namespace std::chrono_literals;

struct FakeClock {
  Clock::time_point t{std::chrono::hours(1)};
  NowFn fn() {
    return [this] { return t; };
  }
};

TEST(WorkQueue, DeduplicatesWhileQueued) {
  FakeClock clock;
  WorkQueue q(clock.fn());
  q.add("a");
  q.add("b");
  q.add("a");
  EXPECT_EQ(q.len(), 2u);
  EXPECT_EQ(q.try_get(), "a");
  EXPECT_EQ(q.try_get(), "b");
  EXPECT_EQ(q.try_get(), std::nullopt);
  EXPECT_EQ(q.counters().adds, 2u);
}

TEST(WorkQueue, NeverHandsOneKeyToTwoWorkers) {
  FakeClock clock;
  WorkQueue q(clock.fn());
  q.add("a");
  auto first = q.try_get();
  ASSERT_EQ(first, "a");
  q.add("a");  // changed while a worker holds it
  EXPECT_EQ(q.try_get(), std::nullopt) << "a second worker must not get a key in flight";
  q.add("a");  // still deduplicated
  q.done("a");
  EXPECT_EQ(q.try_get(), "a") << "re-queued once the first worker is done";
  q.done("a");
  EXPECT_EQ(q.try_get(), std::nullopt);
}

TEST(WorkQueue, AddAfterWaitsForTheClockAndKeepsTheEarliest) {
  FakeClock clock;
  WorkQueue q(clock.fn());
  q.add_after("a", 10s);
  q.add_after("a", 3s);
  q.add_after("b", 0s);  // immediate
  EXPECT_EQ(q.try_get(), "b");
  EXPECT_EQ(q.try_get(), std::nullopt);
  EXPECT_EQ(q.waiting(), 1u);
  clock.t += 3s;
  EXPECT_EQ(q.try_get(), "a");
}

TEST(RateLimiter, PerKeyExponentialFrom5msCappedAt1000s) {
  FakeClock clock;
  RateLimiterOptions o;
  o.burst = 1e9;  // isolate the per-key part
  RateLimiter r(o);
  EXPECT_EQ(r.when("a", clock.t), 5ms);
  EXPECT_EQ(r.when("a", clock.t), 10ms);
  EXPECT_EQ(r.when("a", clock.t), 20ms);
  EXPECT_EQ(r.when("b", clock.t), 5ms) << "per key";
  EXPECT_EQ(r.requeues("a"), 3);
  for (int i = 0; i < 40; ++i) r.when("a", clock.t);
  EXPECT_EQ(r.when("a", clock.t), 1000s);
  r.forget("a");
  EXPECT_EQ(r.requeues("a"), 0);
  EXPECT_EQ(r.when("a", clock.t), 5ms);
}

TEST(RateLimiter, GlobalTokenBucket) {
  FakeClock clock;
  RateLimiterOptions o;
  o.qps = 10;
  o.burst = 2;
  RateLimiter r(o);
  EXPECT_EQ(r.when("a", clock.t), 5ms);
  EXPECT_EQ(r.when("b", clock.t), 5ms);
  EXPECT_EQ(r.when("c", clock.t), 100ms) << "bucket empty: one token per 100 ms";
  EXPECT_EQ(r.when("d", clock.t), 200ms);
  clock.t += 1s;  // refilled up to the burst
  EXPECT_EQ(r.when("e", clock.t), 5ms);
}

TEST(WorkQueue, RateLimitedRetryThenForgetOnSuccess) {
  FakeClock clock;
  WorkQueue q(clock.fn());
  q.add("a");
  ASSERT_EQ(q.try_get(), "a");
  q.add_rate_limited("a");  // the reconcile failed
  q.done("a");
  EXPECT_EQ(q.try_get(), std::nullopt);
  clock.t += 5ms;
  ASSERT_EQ(q.try_get(), "a");
  q.add_rate_limited("a");
  q.done("a");
  clock.t += 5ms;
  EXPECT_EQ(q.try_get(), std::nullopt) << "second failure waits 10 ms";
  clock.t += 5ms;
  ASSERT_EQ(q.try_get(), "a");
  EXPECT_EQ(q.requeues("a"), 2);
  EXPECT_EQ(q.counters().retries, 2u);
  q.forget("a");
  q.done("a");
  EXPECT_EQ(q.requeues("a"), 0);
}

TEST(WorkQueue, ShutdownWakesGetAndIgnoresAdds) {
  WorkQueue q;
  std::thread t([&] { EXPECT_EQ(q.get(), std::nullopt); });
  std::this_thread::sleep_for(20ms);
  q.shut_down();
  t.join();
  q.add("a");
  EXPECT_EQ(q.len(), 0u);
}

TEST(WorkQueue, BlockingGetReturnsDelayedKeyOnRealClock) {
  WorkQueue q;
  q.add_after("a", 30ms);
  const auto start = Clock::now();
  EXPECT_EQ(q.get(), "a");
  EXPECT_GE(Clock::now() - start, 25ms);
}

TEST(LeaseObserver, CreateRenewWaitAndTakeOverAfterExpiry) {
  LeaderElectionTiming timing;
  LeaseObserver me("me", timing);
  auto t = Clock::time_point{std::chrono::hours(1)};
  EXPECT_EQ(me.decide(std::nullopt, t), LeaseAction::Create);
  LeaseRecord mine{"me", 15, "t0", "t0", 0};
  EXPECT_EQ(me.decide(mine, t), LeaseAction::Renew);
  LeaseRecord other{"other", 15, "t0", "t1", 0};
  EXPECT_EQ(me.decide(other, t), LeaseAction::Wait);
  EXPECT_EQ(me.decide(other, t + 14s), LeaseAction::Wait);
  other.renew_time = "t2";  // the holder renewed: the clock restarts
  EXPECT_EQ(me.decide(other, t + 14s), LeaseAction::Wait);
  EXPECT_EQ(me.decide(other, t + 28s), LeaseAction::Wait);
  EXPECT_EQ(me.decide(other, t + 29s), LeaseAction::Acquire) << "15 s without a renewal";
  LeaseRecord released{"", 1, "t0", "t3", 1};
  EXPECT_EQ(me.decide(released, t + 30s), LeaseAction::Acquire);
}

TEST(LeaseRecord, ReadFromALease) {
  auto v = boost::json::parse(R"({"spec":{"holderIdentity":"a","leaseDurationSeconds":15,
      "renewTime":"2026-01-01T00:00:00.000000Z","leaseTransitions":3}})");
  auto r = lease_record(v);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->holder, "a");
  EXPECT_EQ(r->duration_seconds, 15);
  EXPECT_EQ(r->transitions, 3);
}

TEST(WatcherState, ListWatchResumeAndRelistOnGone) {
  WatcherState s;
  EXPECT_EQ(s.phase(), WatcherState::Phase::NeedList);
  s.listed("10");
  EXPECT_EQ(s.phase(), WatcherState::Phase::Watching);
  s.saw("12");
  s.saw("");  // an event without a version does not move the resume point back
  EXPECT_EQ(s.resource_version(), "12");
  s.watch_ended(kube::WatchEnd::Closed);
  EXPECT_EQ(s.phase(), WatcherState::Phase::Watching) << "a closed watch resumes from 12";
  s.watch_ended(kube::WatchEnd::Gone);
  EXPECT_EQ(s.phase(), WatcherState::Phase::NeedList);
}

}  // namespace
}  // namespace ferry::runtime
