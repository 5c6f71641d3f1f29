// Small helpers over the resource types: partitions, kinds, keys.
#include "reconcilers/model/resources.hpp"

#include <algorithm>

namespace ferry::model {

std::string_view to_string(Partition p) {
  switch (p) {
    case Partition::Aws: return "aws";
    case Partition::AwsCn: return "aws-cn";
    case Partition::AwsUsGov: return "aws-us-gov";
  }
  return "aws";
}

std::optional<Partition> parse_partition(std::string_view s) {
  if (s == "aws") return Partition::Aws;
  if (s == "aws-cn") return Partition::AwsCn;
  if (s == "aws-us-gov") return Partition::AwsUsGov;
  return std::nullopt;
}

Partition partition_for_region(std::string_view region) {
  if (region.starts_with("cn-")) return Partition::AwsCn;
  if (region.starts_with("us-gov-")) return Partition::AwsUsGov;
  return Partition::Aws;
}

std::string default_ecr_endpoint(const RegistrySpec& spec) {
  return "https://" + spec.registry_id + ".dkr.ecr." + spec.region + ".amazonaws.com" +
         (spec.partition == Partition::AwsCn ? ".cn" : "");
}

std::string to_string(const RegistryKey& k) { return k.registry_id + "/" + k.region; }

std::string_view kind_of(const Resource& r) {
  struct {
    std::string_view operator()(const Registry&) const { return "Registry"; }
    std::string_view operator()(const ReplicationConfig&) const { return "ReplicationConfig"; }
    std::string_view operator()(const RegistryPolicy&) const { return "RegistryPolicy"; }
    std::string_view operator()(const Repository&) const { return "Repository"; }
    std::string_view operator()(const ImageReplication&) const { return "ImageReplication"; }
    std::string_view operator()(const Secret&) const { return "Secret"; }
    std::string_view operator()(const RepositoryCreationTemplate&) const { return "RepositoryCreationTemplate"; }
    std::string_view operator()(const ReplicationBackfill&) const { return "ReplicationBackfill"; }
  } visitor;
  return std::visit(visitor, r);
}

bool RepositoryCreationTemplate::applies_to_replication() const {
  return std::ranges::find(spec.applied_for, "REPLICATION") != spec.applied_for.end();
}

bool RepositoryCreationTemplate::covers(std::string_view repository) const {
  if (spec.prefix == kRootPrefix) return true;
  std::string_view p = spec.prefix;
  if (p.ends_with('/')) p.remove_suffix(1);
  return repository.size() > p.size() && repository.starts_with(p) && repository[p.size()] == '/';
}

const ObjectMeta& metadata_of(const Resource& r) {
  return std::visit([](const auto& x) -> const ObjectMeta& { return x.metadata; }, r);
}

}  // namespace ferry::model
