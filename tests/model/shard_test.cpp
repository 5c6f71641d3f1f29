// Which shard a source repository belongs to (SPEC §8): the same everywhere, spread evenly.
#include "reconcilers/model/shard.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace ferry::model {
namespace {

const RegistryKey kSource{"111111111111", "us-east-1"};

TEST(Shard, IsFixedByRegistryRegionAndRepositoryAlone) {
  // Pinned values, computed apart with Python: int.from_bytes(sha256(id + b"\0" + region +
  // b"\0" + repository).digest()[:8], "big") % 8. A change of hash would move repositories
  // between shards across an upgrade: two versions side by side would both copy, or both skip.
  std::vector<std::uint32_t> pinned;
  for (const char* repo : {"team/app", "team/api", "base/debian", "a"}) pinned.push_back(shard_of(kSource, repo, 8));
  EXPECT_EQ(pinned, (std::vector<std::uint32_t>{5, 2, 5, 6}));
  // Another region or account is another repository.
  std::map<std::uint32_t, int> seen;
  for (int i = 0; i < 64; ++i) {
    ++seen[shard_of({"111111111111", "region-" + std::to_string(i)}, "team/app", 8)];
  }
  EXPECT_GT(seen.size(), 4u);
}

TEST(Shard, OneShardTakesEverything) {
  EXPECT_EQ(shard_of(kSource, "team/app", 1), 0u);
  EXPECT_EQ(shard_of(kSource, "team/app", 0), 0u);
}

TEST(Shard, RepositoriesSpreadEvenlyOverTheShards) {
  constexpr std::uint32_t kShards = 6;
  constexpr int kRepos = 6000;
  std::map<std::uint32_t, int> count;
  for (int i = 0; i < kRepos; ++i) {
    const auto s = shard_of(kSource, "team/app-" + std::to_string(i), kShards);
    ASSERT_LT(s, kShards);
    ++count[s];
  }
  ASSERT_EQ(count.size(), kShards);
  for (const auto& [shard, n] : count) {
    EXPECT_GT(n, kRepos / kShards * 8 / 10) << "shard " << shard;
    EXPECT_LT(n, kRepos / kShards * 12 / 10) << "shard " << shard;
  }
}

TEST(Shard, LeaseNames) { EXPECT_EQ(shard_lease_name("ferry-shard-", 3), "ferry-shard-3"); }

}  // namespace
}  // namespace ferry::model
