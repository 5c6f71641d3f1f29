// Which shard Leases a replica reaches for (SPEC §8), decided from what it saw: its share first,
// a shard left free takes anyone after the grace period, a live Lease is never taken.
#include "operator/runtime/shard_leases.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

namespace ferry::runtime {
namespace {

using namespace std::chrono_literals;
using ::testing::IsEmpty;
using ::testing::SizeIs;

ShardSeen free_for(Clock::duration d) { return {LeaseAction::Create, "", d}; }
ShardSeen held_by(std::string who) { return {LeaseAction::Wait, std::move(who), {}}; }
ShardSeen mine() { return {LeaseAction::Renew, "me", {}}; }

TEST(ShardsToTake, AStartingReplicaTakesItsShareOfFreeShards) {
  std::vector<ShardSeen> seen(6, free_for(0s));
  EXPECT_THAT(shards_to_take(seen, "me", 3, 2s), SizeIs(2)) << "6 shards, 3 replicas expected";
  EXPECT_THAT(shards_to_take(seen, "me", 1, 2s), SizeIs(6)) << "alone, it takes them all";
}

TEST(ShardsToTake, ReplicasStartingTogetherReachForDifferentShardsFirst) {
  std::vector<ShardSeen> seen(12, free_for(0s));
  std::set<std::uint32_t> first;
  for (const char* who : {"replica-a", "replica-b", "replica-c", "replica-d"})
    first.insert(shards_to_take(seen, who, 4, 2s).front());
  EXPECT_GT(first.size(), 1u);
}

TEST(ShardsToTake, HoldersSeenCountAsReplicas) {
  // Two others hold live Leases: three replicas, a share of 2 each, although 1 was expected.
  std::vector<ShardSeen> seen{held_by("a"), held_by("a"), held_by("b"), held_by("b"), free_for(0s),
                              free_for(0s)};
  EXPECT_THAT(shards_to_take(seen, "me", 1, 2s), SizeIs(2));
}

TEST(ShardsToTake, BeyondItsShareAReplicaWaitsLongerForEachShardMore) {
  // A replica died: its shards are free; "me" holds its share already.
  std::vector<ShardSeen> seen{mine(), mine(), held_by("b"), held_by("b"), free_for(1s), free_for(3s)};
  EXPECT_EQ(shards_to_take(seen, "me", 3, 2s), (std::vector<std::uint32_t>{5}));
  // A second shard beyond the share waits two grace periods: "b", holding fewer, goes first.
  seen[4].free_for = 3s;
  EXPECT_THAT(shards_to_take(seen, "me", 3, 2s), SizeIs(1));
  seen[4].free_for = seen[5].free_for = 4s;
  EXPECT_THAT(shards_to_take(seen, "me", 3, 2s), SizeIs(2));
  seen[0] = seen[1] = free_for(0s);  // "me" holds none: two at once, the third after the grace
  seen[4].free_for = seen[5].free_for = 0s;
  EXPECT_THAT(shards_to_take(seen, "me", 3, 2s), SizeIs(2));
}

TEST(ShardsToTake, ALiveLeaseIsNeverTaken) {
  std::vector<ShardSeen> seen{held_by("a"), held_by("b"), held_by("c")};
  EXPECT_THAT(shards_to_take(seen, "me", 4, 0s), IsEmpty());
  // A Lease that could not be read counts as held (Wait without a holder), not as free.
  std::vector<ShardSeen> unread{ShardSeen{}, free_for(0s)};
  EXPECT_EQ(shards_to_take(unread, "me", 1, 0s), (std::vector<std::uint32_t>{1}));
}

}  // namespace
}  // namespace ferry::runtime
