// Shard Leases; see shard_leases.hpp.
#include "operator/runtime/shard_leases.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <random>

#include "reconcilers/model/shard.hpp"

namespace ferry::runtime {

std::vector<std::uint32_t> shards_to_take(const std::vector<ShardSeen>& seen,
                                          const std::string& identity, std::uint32_t replicas,
                                          Clock::duration grace) {
  std::set<std::string> holders{identity};
  std::size_t mine = 0;
  std::vector<std::uint32_t> free;
  for (std::uint32_t i = 0; i < seen.size(); ++i) {
    const auto& s = seen[i];
    if (s.action == LeaseAction::Renew) ++mine;
    if (s.action == LeaseAction::Wait && !s.holder.empty()) holders.insert(s.holder);
    if (s.action == LeaseAction::Create || s.action == LeaseAction::Acquire) free.push_back(i);
  }
  const std::size_t members = std::max<std::size_t>({replicas, holders.size(), 1});
  const std::size_t share = (seen.size() + members - 1) / members;
  auto score = [&](std::uint32_t i) {
    return std::hash<std::string>{}(identity + "/" + std::to_string(i));
  };
  std::ranges::sort(free, [&](auto a, auto b) { return score(a) < score(b); });
  std::vector<std::uint32_t> out;
  for (auto i : free) {
    // Beyond the share, each shard more waits one grace period longer: of the replicas left when
    // one died, the one holding fewer takes first, so their shards stay even.
    const std::size_t have = mine + out.size();
    if (have < share || seen[i].free_for >= grace * static_cast<int>(1 + have - share))
      out.push_back(i);
  }
  return out;
}

ShardLeases::ShardLeases(kube::Api& api, ShardLeaseConfig config, Callback on_acquired,
                         Callback on_lost)
    : api_(api),
      config_(std::move(config)),
      on_acquired_(std::move(on_acquired)),
      on_lost_(std::move(on_lost)),
      grace_(config_.grace.count() > 0
                 ? config_.grace
                 : std::chrono::duration_cast<std::chrono::milliseconds>(config_.timing.retry_period) * 3 / 2),
      free_since_(config_.shards),
      renewed_(config_.shards),
      holder_urls_(config_.shards) {
  for (std::uint32_t i = 0; i < config_.shards; ++i)
    observers_.emplace_back(config_.identity, config_.timing);
}

LeaderElectionConfig ShardLeases::lease(std::uint32_t shard) const {
  LeaderElectionConfig c{config_.namespace_, model::shard_lease_name(config_.prefix, shard),
                         config_.identity, config_.timing, {}};
  if (!config_.url.empty()) c.annotations[kNotificationsUrlAnnotation] = config_.url;
  return c;
}

std::string ShardLeases::holder_url(std::uint32_t shard) const {
  std::lock_guard lock(mutex_);
  return shard < holder_urls_.size() ? holder_urls_[shard] : std::string();
}

std::set<std::uint32_t> ShardLeases::held() const {
  std::lock_guard lock(mutex_);
  return held_;
}

void ShardLeases::lose(std::uint32_t shard, const char* why) {
  {
    std::lock_guard lock(mutex_);
    held_.erase(shard);
  }
  spdlog::error("msg=\"shard lost\" shard={} lease={}/{} why=\"{}\"", shard, config_.namespace_,
                model::shard_lease_name(config_.prefix, shard), why);
  if (on_lost_) on_lost_(shard);
}

void ShardLeases::pass() {
  const auto now = Clock::now();
  std::vector<ShardSeen> seen(config_.shards);
  std::vector<LeaseState> states(config_.shards);
  std::vector<bool> read(config_.shards, false);
  for (std::uint32_t i = 0; i < config_.shards; ++i) {
    auto state = read_lease(api_, lease(i));
    if (!state) {
      spdlog::warn("msg=\"reading a shard lease failed\" shard={} error=\"{}\"", i, state.error());
      continue;  // Wait: neither free nor someone's
    }
    read[i] = true;
    seen[i].action = observers_[i].decide(state->record, now);
    if (state->record) seen[i].holder = state->record->holder;
    const bool free = seen[i].action == LeaseAction::Create || seen[i].action == LeaseAction::Acquire;
    if (!free) {
      free_since_[i] = {};
    } else {
      if (free_since_[i] == Clock::time_point{}) free_since_[i] = now;
      seen[i].free_for = now - free_since_[i];
    }
    {
      std::lock_guard lock(mutex_);
      auto url = state->annotations.find(kNotificationsUrlAnnotation);
      holder_urls_[i] = seen[i].action == LeaseAction::Wait && !seen[i].holder.empty() &&
                                url != state->annotations.end()
                            ? url->second
                            : std::string();
    }
    states[i] = std::move(*state);
  }

  for (auto i : held()) {
    if (read[i] && seen[i].action == LeaseAction::Renew) {
      if (write_lease(api_, lease(i), LeaseAction::Renew, states[i])) {
        renewed_[i] = now;
        continue;
      }
    } else if (read[i]) {
      lose(i, "another replica holds its Lease");
      continue;
    }
    if (now - renewed_[i] > config_.timing.renew_deadline)
      lose(i, "its Lease was not renewed within the renew deadline");
  }

  const auto mine = held();
  for (std::uint32_t i = 0; i < config_.shards; ++i) {
    // Ours by the Lease but not by this process's count: a pass whose write took but whose answer
    // was lost. Renewing it makes it ours again.
    if (read[i] && seen[i].action == LeaseAction::Renew && !mine.contains(i)) {
      seen[i].action = LeaseAction::Acquire;
      seen[i].free_for = Clock::duration::max();
    }
  }
  // One shard at a time, deciding again after each write: a shard another replica took first
  // (a conflict) makes room for the next candidate within the share.
  std::vector<bool> tried(config_.shards, false);
  for (;;) {
    const auto want = shards_to_take(seen, config_.identity, config_.replicas, grace_);
    auto next = std::ranges::find_if(want, [&](std::uint32_t i) { return !tried[i]; });
    if (next == want.end()) break;
    const auto i = *next;
    tried[i] = true;
    if (!write_lease(api_, lease(i), seen[i].action, states[i])) {
      seen[i] = ShardSeen{};  // someone else's now, or unknown: not free
      continue;
    }
    seen[i] = {LeaseAction::Renew, config_.identity, {}};
    renewed_[i] = now;
    free_since_[i] = {};
    {
      std::lock_guard lock(mutex_);
      held_.insert(i);
    }
    spdlog::info("msg=\"shard acquired\" shard={} lease={}/{} identity={}", i, config_.namespace_,
                 model::shard_lease_name(config_.prefix, i), config_.identity);
    if (on_acquired_) on_acquired_(i);
  }
}

void ShardLeases::run(std::stop_token stop, bool release) {
  spdlog::info("msg=\"taking shards\" shards={} replicas={} identity={}", config_.shards,
               config_.replicas, config_.identity);
  // Passes a retry period apart, plus up to a fifth more at random (client-go's jitter), so that
  // replicas started together do not keep reading and writing at the same instants.
  std::mt19937 rng{std::random_device{}()};
  const auto period = std::chrono::duration_cast<std::chrono::milliseconds>(config_.timing.retry_period);
  std::uniform_int_distribution<long> jitter(0, period.count() / 5);
  do {
    pass();
  } while (sleep_for(period + std::chrono::milliseconds(jitter(rng)), stop));
  std::set<std::uint32_t> mine;
  {
    std::lock_guard lock(mutex_);
    mine.swap(held_);
  }
  if (!release) return;
  for (auto i : mine) {
    if (release_lease(api_, lease(i))) spdlog::info("msg=\"shard released\" shard={}", i);
  }
}

}  // namespace ferry::runtime
