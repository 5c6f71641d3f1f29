// Validation of Ferry resources per SPEC §1, S6 and S7; every error names its field and limit.
#pragma once

#include <cstddef>
#include <map>
#include <span>
#include <string_view>
#include <vector>

#include "reconcilers/model/errors.hpp"
#include "reconcilers/model/resources.hpp"

namespace ferry::model {

inline constexpr std::size_t kMaxRules = 10;
inline constexpr std::size_t kMaxUniqueDestinations = 25;
inline constexpr std::size_t kMaxFiltersPerRule = 100;
inline constexpr std::size_t kMinFilterLength = 2;
inline constexpr std::size_t kMaxFilterLength = 256;
inline constexpr std::size_t kMaxTagFiltersPerRule = 100;  // S18
inline constexpr std::size_t kMaxTagFilterLength = 128;
inline constexpr std::size_t kMaxRepositoryNameLength = 256;
inline constexpr std::size_t kMaxExclusionFilters = 5;  // S16, as ECR
inline constexpr std::size_t kMaxResourceTags = 50;

bool is_valid_registry_id(std::string_view s);
bool is_valid_region(std::string_view s);
// OCI distribution repository name grammar, at most 256 characters.
bool is_valid_repository_name(std::string_view s);
bool is_valid_digest(std::string_view s);
// OCI tag grammar: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
bool is_valid_tag(std::string_view s);

// The Registry catalog of a set of resources: partitions given explicitly in a Registry spec
// override the ones derived from region names.
class RegistryCatalog {
 public:
  RegistryCatalog() = default;
  explicit RegistryCatalog(std::span<const Resource> resources);
  void add(const Registry& registry);
  const Registry* find(const RegistryKey& key) const;
  Partition partition_of(const RegistryKey& key) const;

 private:
  std::map<RegistryKey, Registry> registries_;
};

FieldErrors validate(const Registry& r);
FieldErrors validate(const ReplicationConfig& r, const RegistryCatalog& catalog = {});
FieldErrors validate(const RegistryPolicy& r);
FieldErrors validate(const Repository& r);
FieldErrors validate(const ImageReplication& r);
FieldErrors validate(const RepositoryCreationTemplate& r);
FieldErrors validate(const ReplicationBackfill& r);
FieldErrors validate(const Secret& r);
FieldErrors validate(const Resource& r, const RegistryCatalog& catalog = {});

// Problems that only show across a set of resources: the same kind and name twice, a second
// Registry, ReplicationConfig or RegistryPolicy for one (registryId, region).
struct SetProblem {
  std::size_t index;  // the offending resource (the later of a pair)
  std::size_t other;  // the earlier one it conflicts with
  FieldError error;
};
std::vector<SetProblem> validate_set(std::span<const Resource> resources);

}  // namespace ferry::model
