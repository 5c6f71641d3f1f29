// Scale-out (SPEC §8): the Leases "ferry-shard-<i>" (coordination.k8s.io/v1) a replica holds.
// Each replica aims for its share, ceil(shards / replicas), counting as replicas the larger of
// the expected number (the chart's replicaCount) and the holders seen. A shard whose Lease expired
// or was released is taken by a replica below its share first, and by others after a grace
// period (the fewer they hold, the sooner): the shards of a replica that died are taken over soon after their Leases expire,
// and a replica that joins takes free shards but never takes a live one from another.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <stop_token>
#include <string>
#include <vector>

#include "kube/api.hpp"
#include "operator/runtime/leader_election.hpp"

namespace ferry::runtime {

struct ShardLeaseConfig {
  std::string namespace_;
  std::string prefix = "ferry-shard-";
  std::uint32_t shards = 1;
  std::uint32_t replicas = 1;  // expected replicas, for each one's share
  std::string identity;
  LeaderElectionTiming timing;
  // How long a free shard waits for a replica below its share before others take it; 0: one and
  // a half retry periods, so every replica has passed at least once meanwhile.
  std::chrono::milliseconds grace{0};
  // Where this replica takes notifications for its shards (written on their Leases as
  // ferry.dev/notifications-url); other replicas forward a push of such a shard there.
  std::string url;
};

inline constexpr const char* kNotificationsUrlAnnotation = "ferry.dev/notifications-url";

// What one pass saw of a shard's Lease.
struct ShardSeen {
  LeaseAction action = LeaseAction::Wait;  // Renew: ours; Wait: another's live Lease (or unread);
                                           // Create, Acquire: free
  std::string holder;                      // of a live Lease
  Clock::duration free_for{};              // Create, Acquire: how long it has been free
};

// The shards `identity` should try to take now, best first (an order of its own, so replicas
// starting together try different shards): free ones while below its share; beyond it, the k-th
// shard more once it has been free for k grace periods.
std::vector<std::uint32_t> shards_to_take(const std::vector<ShardSeen>& seen,
                                          const std::string& identity, std::uint32_t replicas,
                                          Clock::duration grace);

class ShardLeases {
 public:
  using Callback = std::function<void(std::uint32_t shard)>;
  // on_acquired / on_lost run on the thread of run(); a shard is lost when another holds its
  // Lease or it could not be renewed within the renew deadline (its work must stop at once).
  ShardLeases(kube::Api& api, ShardLeaseConfig config, Callback on_acquired = {},
              Callback on_lost = {});

  // Takes and renews Leases every retry period until `stop`; then releases the ones held
  // (`release` false leaves them to expire, as a replica that died would).
  void run(std::stop_token stop, bool release = true);
  std::set<std::uint32_t> held() const;  // any thread
  // The notification address of the replica holding `shard` by the last pass (live Lease, not
  // ours); empty when it is free, ours, unread or carries none. Any thread.
  std::string holder_url(std::uint32_t shard) const;
  const ShardLeaseConfig& config() const { return config_; }

 private:
  void pass();
  void lose(std::uint32_t shard, const char* why);
  LeaderElectionConfig lease(std::uint32_t shard) const;

  kube::Api& api_;
  ShardLeaseConfig config_;
  Callback on_acquired_, on_lost_;
  std::chrono::milliseconds grace_;
  std::vector<LeaseObserver> observers_;
  std::vector<Clock::time_point> free_since_;  // epoch: not free
  std::vector<Clock::time_point> renewed_;     // of held shards
  mutable std::mutex mutex_;
  std::set<std::uint32_t> held_;
  std::vector<std::string> holder_urls_;
};

}  // namespace ferry::runtime
