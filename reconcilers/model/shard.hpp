// Scale-out (SPEC §8): which shard a source repository belongs to. A push is recorded and copied
// only by the replica holding the Lease of its shard, so every replica and every version of
// Ferry must compute the same shard for the same repository: the hash is SHA-256, not std::hash.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "reconcilers/model/resources.hpp"

namespace ferry::model {

// hash(registryId, region, repository) mod shards; shards ≥ 1.
std::uint32_t shard_of(const RegistryKey& source, std::string_view repository,
                       std::uint32_t shards);

// The name of shard i's Lease: "ferry-shard-<i>" (with the default prefix).
std::string shard_lease_name(std::string_view prefix, std::uint32_t shard);

}  // namespace ferry::model
