// Shard Leases (SPEC §8) against a real kube-apiserver and etcd: replicas share the shards, a
// replica that dies has its shards taken over once their Leases expire (never before), one that
// stops hands them over at once, and no shard is ever held by two replicas.
#include "operator/runtime/shard_leases.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <thread>

#include "kube/client.hpp"
#include "kube/config.hpp"
#include "reconcilers/model/shard.hpp"
#include "tests/support/registry_harness.hpp"

namespace ferry::runtime {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

constexpr const char* kNs = "ferry-system";
const LeaderElectionTiming kTiming{3s, 2s, 1s};

// One replica: its own client, its Leases renewed on a thread of its own.
struct Replica {
  Replica(const kube::ClusterConfig& config, std::string id, std::uint32_t shards, std::uint32_t replicas,
          bool release_on_stop)
      : client(config), api(client), release(release_on_stop) {
    ShardLeaseConfig c{kNs, "ferry-shard-", shards, replicas, std::move(id), kTiming};
    leases = std::make_unique<ShardLeases>(api, c, nullptr, [this](std::uint32_t) { ++lost; });
    thread = std::jthread([this](std::stop_token stop) { leases->run(stop, release); });
  }
  ~Replica() { stop(); }
  void stop() {
    thread.request_stop();
    if (thread.joinable()) thread.join();
  }
  std::set<std::uint32_t> held() const { return leases->held(); }
  const std::string& id() const { return leases->config().identity; }

  kube::Client client;
  kube::Api api;
  bool release;
  std::atomic<int> lost{0};
  std::unique_ptr<ShardLeases> leases;
  std::jthread thread;
};

class ShardLeasesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    control_plane_ = std::make_unique<ferry::testing::ControlPlane>(dir_.path().string());
    auto config = kube::load_kubeconfig(control_plane_->kubeconfig(), "");
    ASSERT_TRUE(config) << config.error();
    config_ = *config;
    reader_client_ = std::make_unique<kube::Client>(config_);
    reader_ = std::make_unique<kube::Api>(*reader_client_);
  }
  void TearDown() override {
    sampling_ = false;
    if (sampler_.joinable()) sampler_.join();
  }

  std::unique_ptr<Replica> replica(const std::string& id, std::uint32_t shards,
                                   std::uint32_t replicas, bool release_on_stop = true) {
    return std::make_unique<Replica>(config_, id, shards, replicas, release_on_stop);
  }

  // Checks every 20 ms, until TearDown, that no shard is held by two of `live` at once.
  void watch_for_double_holders(std::vector<Replica*> live) {
    sampling_ = true;
    sampler_ = std::thread([this, live] {
      while (sampling_) {
        std::map<std::uint32_t, int> holders;
        for (auto* r : live)
          for (auto s : r->held()) ++holders[s];
        for (const auto& [s, n] : holders)
          if (n > 1) ++doubles_;
        std::this_thread::sleep_for(20ms);
      }
    });
  }

  // Waits up to `limit` for `done`; returns how long it took, or nullopt.
  template <class F>
  std::optional<Steady::duration> wait_until(F done, Steady::duration limit) {
    const auto start = Steady::now();
    while (Steady::now() - start < limit) {
      if (done()) return Steady::now() - start;
      std::this_thread::sleep_for(50ms);
    }
    return std::nullopt;
  }

  // Who the API server says holds each shard's Lease.
  std::map<std::uint32_t, std::string> lease_holders(std::uint32_t shards) {
    std::map<std::uint32_t, std::string> out;
    for (std::uint32_t i = 0; i < shards; ++i) {
      auto lease = reader_->get(kube::leases(), kNs, model::shard_lease_name("ferry-shard-", i));
      if (!lease) continue;
      if (auto r = lease_record(*lease)) out[i] = r->holder;
    }
    return out;
  }

  ferry::testing::TempDir dir_;
  std::unique_ptr<ferry::testing::ControlPlane> control_plane_;
  kube::ClusterConfig config_;
  std::unique_ptr<kube::Client> reader_client_;
  std::unique_ptr<kube::Api> reader_;
  std::atomic<bool> sampling_{false};
  std::atomic<int> doubles_{0};
  std::thread sampler_;
};

std::size_t total(std::initializer_list<const Replica*> rs) {
  std::set<std::uint32_t> all;
  for (const auto* r : rs)
    for (auto s : r->held()) all.insert(s);
  return all.size();
}

TEST_F(ShardLeasesTest, ThreeReplicasShareTheShardsAndADeadOnesAreTakenOverOnceItsLeasesExpire) {
  auto a = replica("replica-a", 6, 3);
  auto b = replica("replica-b", 6, 3);
  auto c = replica("replica-c", 6, 3, /*release_on_stop=*/false);
  watch_for_double_holders({a.get(), b.get(), c.get()});
  ASSERT_TRUE(wait_until(
      [&] { return a->held().size() == 2 && b->held().size() == 2 && c->held().size() == 2 &&
                   total({a.get(), b.get(), c.get()}) == 6; },
      20s))
      << "held: a " << a->held().size() << ", b " << b->held().size() << ", c " << c->held().size();
  for (const auto& [shard, holder] : lease_holders(6)) {
    const Replica* owner = a->held().contains(shard) ? a.get() : b->held().contains(shard) ? b.get() : c.get();
    EXPECT_EQ(holder, owner->id()) << "the Lease of shard " << shard;
  }

  c->stop();  // as a replica that dies: its Leases stay until they expire
  auto taken = wait_until([&] { return total({a.get(), b.get()}) == 6; }, 20s);
  ASSERT_TRUE(taken) << "a " << a->held().size() << " + b " << b->held().size() << " of 6";
  // Its last renewal was at most one retry period before the kill; no one may take a shard of it
  // before its Lease expired, and someone must soon after: once expired, its first shard waits
  // 1.5 retry periods for a replica below its share, the second 3 (and passes are up to 1.2 apart).
  EXPECT_GE(*taken, kTiming.lease_duration - kTiming.retry_period);
  EXPECT_LE(*taken, kTiming.lease_duration + 6 * kTiming.retry_period);
  // Beyond its share a replica waits longer for each shard more, so the two split the dead one's.
  EXPECT_GE(a->held().size(), 2u);
  EXPECT_GE(b->held().size(), 2u);
  for (const auto& [shard, holder] : lease_holders(6)) {
    EXPECT_TRUE(holder == a->id() || holder == b->id()) << "shard " << shard << " held by " << holder;
  }
  EXPECT_EQ(a->lost + b->lost, 0);
  EXPECT_EQ(doubles_, 0) << "a shard was held by two replicas at once";
}

TEST_F(ShardLeasesTest, AJoiningReplicaTakesNoLiveShardAndAStoppingOneHandsItsShardsOverAtOnce) {
  auto a = replica("replica-a", 4, 2);
  // Expecting two replicas, it takes its share at once and the rest after the grace period.
  ASSERT_TRUE(wait_until([&] { return a->held().size() == 4; }, 15s)) << a->held().size();
  auto b = replica("replica-b", 4, 2);
  watch_for_double_holders({a.get(), b.get()});
  std::this_thread::sleep_for(kTiming.lease_duration);  // longer than a Lease lives unrenewed
  EXPECT_EQ(a->held().size(), 4u);
  EXPECT_EQ(b->held().size(), 0u) << "a live Lease is never taken";

  a->stop();  // releases its Leases
  // Released Leases need no expiry: its share at once, the two beyond it 1.5 and 3 retry periods
  // later.
  auto share = wait_until([&] { return b->held().size() >= 2; }, 20s);
  ASSERT_TRUE(share) << b->held().size();
  EXPECT_LT(*share, kTiming.lease_duration);
  ASSERT_TRUE(wait_until([&] { return b->held().size() == 4; }, 20s)) << b->held().size();
  for (const auto& [shard, holder] : lease_holders(4)) EXPECT_EQ(holder, b->id()) << "shard " << shard;
  EXPECT_EQ(doubles_, 0);
}

}  // namespace
}  // namespace ferry::runtime
