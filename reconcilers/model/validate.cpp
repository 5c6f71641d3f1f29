// Validation of Ferry resources: patterns, limits and partition rules, with field paths.
#include "reconcilers/model/validate.hpp"

#include <boost/url/parse.hpp>
#include <regex>
#include <set>

#include "reconcilers/model/policy.hpp"
#include "reconcilers/model/rules.hpp"

namespace ferry::model {

namespace {

const std::regex& registry_id_re() {
  static const std::regex re{"[0-9]{12}"};
  return re;
}
const std::regex& region_re() {
  static const std::regex re{"[0-9a-z-]{2,25}"};
  return re;
}
const std::regex& filter_re() {
  static const std::regex re{R"((?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*)"};
  return re;
}
const std::regex& tag_filter_re() {
  static const std::regex re{"[0-9a-zA-Z._*-]{1,128}"};
  return re;
}
const std::regex& repository_re() {
  static const std::regex re{
      R"([a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"};
  return re;
}
const std::regex& timestamp_re() {
  static const std::regex re{R"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2}))"};
  return re;
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

void check_registry_id(std::string_view v, const std::string& path, FieldErrors& errors) {
  if (!is_valid_registry_id(v)) {
    errors.push_back({path, quoted(v) + " is not a registry id; must be 12 digits"});
  }
}

void check_region(std::string_view v, const std::string& path, FieldErrors& errors) {
  if (!is_valid_region(v)) {
    errors.push_back({path, quoted(v) + " is not a region; must match ^[0-9a-z-]{2,25}$"});
  }
}

void check_key(const std::string& registry_id, const std::string& region, const std::string& path,
               FieldErrors& errors) {
  check_registry_id(registry_id, path.empty() ? "registryId" : path + ".registryId", errors);
  check_region(region, path.empty() ? "region" : path + ".region", errors);
}

}  // namespace

bool is_valid_registry_id(std::string_view s) {
  return std::regex_match(s.begin(), s.end(), registry_id_re());
}

bool is_valid_region(std::string_view s) {
  return std::regex_match(s.begin(), s.end(), region_re());
}

bool is_valid_repository_name(std::string_view s) {
  return !s.empty() && s.size() <= kMaxRepositoryNameLength &&
         std::regex_match(s.begin(), s.end(), repository_re());
}

bool is_valid_digest(std::string_view s) {
  static const std::regex re{"sha256:[a-f0-9]{64}"};
  return std::regex_match(s.begin(), s.end(), re);
}

bool is_valid_tag(std::string_view s) {
  static const std::regex re{"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"};
  return std::regex_match(s.begin(), s.end(), re);
}

RegistryCatalog::RegistryCatalog(std::span<const Resource> resources) {
  for (const auto& r : resources) {
    if (const auto* reg = std::get_if<Registry>(&r)) add(*reg);
  }
}

void RegistryCatalog::add(const Registry& registry) { registries_.emplace(registry.key(), registry); }

const Registry* RegistryCatalog::find(const RegistryKey& key) const {
  auto it = registries_.find(key);
  return it == registries_.end() ? nullptr : &it->second;
}

Partition RegistryCatalog::partition_of(const RegistryKey& key) const {
  if (const Registry* r = find(key)) return r->spec.partition;
  return partition_for_region(key.region);
}

FieldErrors validate(const Registry& r) {
  FieldErrors errors;
  check_key(r.spec.registry_id, r.spec.region, "spec", errors);
  auto url = boost::urls::parse_absolute_uri(r.spec.endpoint);
  if (!url || (url->scheme() != "http" && url->scheme() != "https") || url->host().empty()) {
    errors.push_back({"spec.endpoint", quoted(r.spec.endpoint) +
                                           " is not an http:// or https:// URL with a host"});
  } else if (url->has_query() || url->has_fragment()) {
    errors.push_back({"spec.endpoint", quoted(r.spec.endpoint) +
                                           " must be a base URL without query or fragment"});
  }
  if (r.spec.type == RegistryType::Ecr) {
    errors.push_back({"spec.type", "ecr is not supported yet; use oci with the registry's OCI endpoint"});
  }
  if (r.spec.poll_interval.count() > 0 && r.spec.poll_interval < std::chrono::seconds(1)) {
    errors.push_back({"spec.pollInterval", "must be 0 (disabled) or at least 1s"});
  }
  return errors;
}

FieldErrors validate(const ReplicationConfig& r, const RegistryCatalog& catalog) {
  FieldErrors errors;
  const auto& spec = r.spec;
  check_key(spec.registry_id, spec.region, "spec", errors);
  if (spec.rules.size() > kMaxRules) {
    errors.push_back({"spec.rules", std::to_string(spec.rules.size()) + " rules, at most " +
                                        std::to_string(kMaxRules) + " allowed"});
  }
  const RegistryKey source{spec.registry_id, spec.region};
  const Partition source_partition = catalog.partition_of(source);
  for (std::size_t i = 0; i < spec.rules.size(); ++i) {
    const auto& rule = spec.rules[i];
    const std::string rp = "spec.rules[" + std::to_string(i) + "]";
    if (rule.destinations.empty()) {
      errors.push_back({rp + ".destinations", "at least 1 destination required"});
    }
    if (rule.destinations.size() > kMaxUniqueDestinations) {
      errors.push_back({rp + ".destinations", std::to_string(rule.destinations.size()) +
                                                  " destinations, at most " +
                                                  std::to_string(kMaxUniqueDestinations) + " allowed"});
    }
    for (std::size_t j = 0; j < rule.destinations.size(); ++j) {
      const auto& d = rule.destinations[j];
      const std::string dp = rp + ".destinations[" + std::to_string(j) + "]";
      FieldErrors key_errors;
      check_key(d.registry_id, d.region, dp, key_errors);
      if (!key_errors.empty()) {
        errors.insert(errors.end(), key_errors.begin(), key_errors.end());
        continue;
      }
      if (d == source) {
        errors.push_back({dp, to_string(d) + " is the source registry; a registry cannot replicate "
                                             "to itself"});
        continue;
      }
      const Partition dest_partition = catalog.partition_of(d);
      if (dest_partition != source_partition) {
        errors.push_back({dp + ".region", d.region + " is in partition " +
                                              std::string(to_string(dest_partition)) + ", the source " +
                                              spec.region + " is in " +
                                              std::string(to_string(source_partition)) +
                                              "; replication cannot cross partitions"});
      }
    }
    if (rule.repository_filters.size() > kMaxFiltersPerRule) {
      errors.push_back({rp + ".repositoryFilters",
                        std::to_string(rule.repository_filters.size()) + " filters, at most " +
                            std::to_string(kMaxFiltersPerRule) + " allowed"});
    }
    for (std::size_t j = 0; j < rule.repository_filters.size(); ++j) {
      const auto& f = rule.repository_filters[j];
      const std::string fp = rp + ".repositoryFilters[" + std::to_string(j) + "]";
      if (f.filter.size() < kMinFilterLength || f.filter.size() > kMaxFilterLength) {
        errors.push_back({fp + ".filter", quoted(f.filter) + " is " + std::to_string(f.filter.size()) +
                                              " characters long, must be " +
                                              std::to_string(kMinFilterLength) + " to " +
                                              std::to_string(kMaxFilterLength)});
      } else if (!std::regex_match(f.filter, filter_re())) {
        errors.push_back({fp + ".filter",
                          quoted(f.filter) +
                              " does not match ^(?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*$ "
                              "(lower-case repository name prefix)"});
      }
      if (f.filter_type != "PREFIX_MATCH") {
        errors.push_back({fp + ".filterType",
                          quoted(f.filter_type) + " is not supported; only PREFIX_MATCH"});
      }
    }
    if (rule.tag_filters.size() > kMaxTagFiltersPerRule) {
      errors.push_back({rp + ".tagFilters", std::to_string(rule.tag_filters.size()) +
                                                " filters, at most " +
                                                std::to_string(kMaxTagFiltersPerRule) + " allowed"});
    }
    for (std::size_t j = 0; j < rule.tag_filters.size(); ++j) {
      const auto& f = rule.tag_filters[j];
      const std::string fp = rp + ".tagFilters[" + std::to_string(j) + "]";
      if (f.filter.empty() || f.filter.size() > kMaxTagFilterLength) {
        errors.push_back({fp + ".filter", quoted(f.filter) + " is " + std::to_string(f.filter.size()) +
                                              " characters long, must be 1 to " +
                                              std::to_string(kMaxTagFilterLength)});
      } else if (!std::regex_match(f.filter, tag_filter_re())) {
        errors.push_back({fp + ".filter", quoted(f.filter) +
                                              " does not match ^[0-9a-zA-Z._*-]{1,128}$ "
                                              "(tag pattern, * matches any run of characters)"});
      }
      if (f.filter_type != "WILDCARD") {
        errors.push_back({fp + ".filterType",
                          quoted(f.filter_type) + " is not supported; only WILDCARD"});
      }
    }
  }
  const auto unique = unique_destinations(spec);
  if (unique.size() > kMaxUniqueDestinations) {
    errors.push_back({"spec.rules", std::to_string(unique.size()) +
                                        " unique destinations across all rules, at most " +
                                        std::to_string(kMaxUniqueDestinations) + " allowed"});
  }
  return errors;
}

FieldErrors validate(const RegistryPolicy& r) {
  FieldErrors errors;
  check_key(r.spec.registry_id, r.spec.region, "spec", errors);
  if (auto policy = parse_policy(r.spec.policy, "spec.policy"); !policy) {
    errors.insert(errors.end(), policy.error().begin(), policy.error().end());
  }
  return errors;
}

FieldErrors validate(const Repository& r) {
  FieldErrors errors;
  const auto& spec = r.spec;
  check_key(spec.registry_id, spec.region, "spec", errors);
  if (!is_valid_repository_name(spec.repository_name)) {
    errors.push_back({"spec.repositoryName",
                      quoted(spec.repository_name) +
                          " is not a repository name; lower-case components [a-z0-9] separated by "
                          "., _, __ or -, joined by /, at most 256 characters"});
  }
  if (spec.image_tag_mutability != "MUTABLE" && spec.image_tag_mutability != "IMMUTABLE") {
    errors.push_back({"spec.imageTagMutability",
                      quoted(spec.image_tag_mutability) + " must be MUTABLE or IMMUTABLE"});
  }
  if (spec.encryption_type != "AES256" && spec.encryption_type != "KMS") {
    errors.push_back({"spec.encryptionConfiguration.encryptionType",
                      quoted(spec.encryption_type) + " must be AES256 or KMS"});
  } else if (spec.encryption_type == "AES256" && !spec.kms_key.empty()) {
    errors.push_back({"spec.encryptionConfiguration.kmsKey", "only allowed with encryptionType KMS"});
  }
  return errors;
}

FieldErrors validate(const ImageReplication& r) {
  FieldErrors errors;
  const auto& s = r.spec.source;
  check_key(s.registry_id, s.region, "spec.source", errors);
  if (!is_valid_repository_name(s.repository_name)) {
    errors.push_back({"spec.source.repositoryName", quoted(s.repository_name) + " is not a repository name"});
  }
  if (!is_valid_digest(s.image_digest)) {
    errors.push_back({"spec.source.imageDigest", quoted(s.image_digest) +
                                                     " is not a digest; must be sha256: and 64 hex digits"});
  }
  if (!s.pushed_at.empty() && !std::regex_match(s.pushed_at, timestamp_re())) {
    errors.push_back({"spec.source.pushedAt", quoted(s.pushed_at) + " is not an RFC 3339 time"});
  }
  for (std::size_t i = 0; i < r.spec.destinations.size(); ++i) {
    const auto& d = r.spec.destinations[i];
    check_key(d.registry_id, d.region, "spec.destinations[" + std::to_string(i) + "]", errors);
  }
  return errors;
}

FieldErrors validate(const Secret& r) {
  FieldErrors errors;
  if (r.metadata.namespace_.empty()) {
    errors.push_back({"metadata.namespace", "required for a Secret (Registry specs refer to namespace/name)"});
  }
  if (r.type == "kubernetes.io/dockerconfigjson" && !r.data.contains(".dockerconfigjson")) {
    errors.push_back({"data", "a kubernetes.io/dockerconfigjson Secret needs a .dockerconfigjson key"});
  }
  return errors;
}

FieldErrors validate(const Resource& r, const RegistryCatalog& catalog) {
  return std::visit(
      [&](const auto& x) -> FieldErrors {
        if constexpr (std::is_same_v<std::decay_t<decltype(x)>, ReplicationConfig>) {
          return validate(x, catalog);
        } else {
          return validate(x);
        }
      },
      r);
}

std::vector<SetProblem> validate_set(std::span<const Resource> resources) {
  std::vector<SetProblem> problems;
  std::map<std::pair<std::string, std::string>, std::size_t> by_name;
  std::map<std::pair<std::string, RegistryKey>, std::size_t> by_registry;
  for (std::size_t i = 0; i < resources.size(); ++i) {
    const auto& r = resources[i];
    const std::string kind(kind_of(r));
    const auto& md = metadata_of(r);
    const std::string name = md.namespace_.empty() ? md.name : md.namespace_ + "/" + md.name;
    if (auto [it, fresh] = by_name.emplace(std::pair{kind, name}, i); !fresh) {
      problems.push_back({i, it->second, {"metadata.name", kind + "/" + name + " is defined twice"}});
      continue;
    }
    std::optional<RegistryKey> key;
    std::string what;
    if (const auto* x = std::get_if<Registry>(&r)) {
      key = x->key();
      what = "at most one Registry per (registryId, region)";
    } else if (const auto* x = std::get_if<ReplicationConfig>(&r)) {
      key = x->key();
      what = "at most one ReplicationConfig per source registry";
    } else if (const auto* x = std::get_if<RegistryPolicy>(&r)) {
      key = x->key();
      what = "at most one RegistryPolicy per destination registry";
    }
    if (!key) continue;
    if (auto [it, fresh] = by_registry.emplace(std::pair{kind, *key}, i); !fresh) {
      problems.push_back({i, it->second,
                          {"spec", kind + "/" + metadata_of(resources[it->second]).name +
                                       " already covers " + to_string(*key) + "; " + what}});
    }
  }
  return problems;
}

}  // namespace ferry::model
