// Validation of Ferry resources: patterns, limits and partition rules, with field paths.
#include "reconcilers/model/validate.hpp"

#include <boost/json/parse.hpp>
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

void check_repository_filters(const std::vector<RepositoryFilter>& filters, const std::string& path, FieldErrors& errors) {
  if (filters.size() > kMaxFiltersPerRule) {
    errors.push_back({path,
                      std::to_string(filters.size()) + " filters, at most " +
                          std::to_string(kMaxFiltersPerRule) + " allowed"});
  }
  for (std::size_t j = 0; j < filters.size(); ++j) {
    const auto& f = filters[j];
    const std::string fp = path + "[" + std::to_string(j) + "]";
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
}

// WILDCARD tag filters (S18 tagFilters, S16 exclusion filters): grammar and type, per element.
void check_tag_filters(const std::vector<TagFilter>& filters, const std::string& path, FieldErrors& errors) {
  for (std::size_t j = 0; j < filters.size(); ++j) {
    const auto& f = filters[j];
    const std::string fp = path + "[" + std::to_string(j) + "]";
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
      errors.push_back({fp + ".filterType", quoted(f.filter_type) + " is not supported; only WILDCARD"});
    }
  }
}

// ECR's tag mutability: the four modes, and exclusion filters exactly with the *_WITH_EXCLUSION ones.
void check_tag_mutability(const std::string& mode, const std::vector<TagFilter>& exclusions, FieldErrors& errors) {
  const bool with_exclusion = mode == "IMMUTABLE_WITH_EXCLUSION" || mode == "MUTABLE_WITH_EXCLUSION";
  if (mode != "MUTABLE" && mode != "IMMUTABLE" && !with_exclusion) {
    errors.push_back({"spec.imageTagMutability",
                      quoted(mode) + " must be MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION"});
    return;
  }
  const std::string path = "spec.imageTagMutabilityExclusionFilters";
  if (with_exclusion && exclusions.empty()) {
    errors.push_back({path, "required with imageTagMutability " + mode + ": 1 to " +
                                std::to_string(kMaxExclusionFilters) + " filters"});
  } else if (!with_exclusion && !exclusions.empty()) {
    errors.push_back({path, "only allowed with imageTagMutability IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION"});
  } else if (exclusions.size() > kMaxExclusionFilters) {
    errors.push_back({path, std::to_string(exclusions.size()) + " filters, at most " +
                                std::to_string(kMaxExclusionFilters) + " allowed"});
  }
  check_tag_filters(exclusions, path, errors);
}

void check_encryption(const std::string& type, const std::string& kms_key, FieldErrors& errors) {
  if (type != "AES256" && type != "KMS") {
    errors.push_back({"spec.encryptionConfiguration.encryptionType", quoted(type) + " must be AES256 or KMS"});
  } else if (type == "AES256" && !kms_key.empty()) {
    errors.push_back({"spec.encryptionConfiguration.kmsKey", "only allowed with encryptionType KMS"});
  }
}

void check_resource_tags(const std::vector<ResourceTag>& tags, FieldErrors& errors) {
  if (tags.size() > kMaxResourceTags) {
    errors.push_back({"spec.resourceTags", std::to_string(tags.size()) + " tags, at most " +
                                               std::to_string(kMaxResourceTags) + " allowed"});
  }
  std::set<std::string> seen;
  for (std::size_t i = 0; i < tags.size(); ++i) {
    const std::string tp = "spec.resourceTags[" + std::to_string(i) + "]";
    if (tags[i].key.empty() || tags[i].key.size() > 128) {
      errors.push_back({tp + ".Key", "must be 1 to 128 characters"});
    } else if (!seen.insert(tags[i].key).second) {
      errors.push_back({tp + ".Key", quoted(tags[i].key) + " is given twice"});
    }
    if (tags[i].value.size() > 256) errors.push_back({tp + ".Value", "must be at most 256 characters"});
  }
}

// A policy document given as an object or as a JSON string holding one.
void check_document(const boost::json::value& doc, const std::string& path, FieldErrors& errors) {
  if (doc.is_null() || doc.is_object()) return;
  if (!doc.is_string()) {
    errors.push_back({path, "must be a JSON object or a string holding one"});
    return;
  }
  boost::system::error_code ec;
  auto parsed = boost::json::parse(doc.as_string(), ec);
  if (ec || !parsed.is_object()) {
    errors.push_back({path, "is a string but not a JSON object" + (ec ? ": " + ec.message() : std::string())});
  }
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
  for (const auto& [field, url] : {std::pair{"spec.ecr.apiEndpoint", &r.spec.ecr_api_endpoint},
                                   std::pair{"spec.ecr.stsEndpoint", &r.spec.sts_endpoint},
                                   std::pair{"spec.ecr.eventsQueueUrl", &r.spec.ecr_events_queue_url}}) {
    if (url->empty()) continue;
    auto u = boost::urls::parse_absolute_uri(*url);
    if (!u || (u->scheme() != "http" && u->scheme() != "https") || u->host().empty()) {
      errors.push_back({field, quoted(*url) + " is not an http:// or https:// URL with a host"});
    }
  }
  const auto& lim = r.spec.limits;
  if (lim.requests_per_second < 0 || (lim.requests_per_second > 0 && lim.requests_per_second < 0.1) ||
      lim.requests_per_second > 100000) {
    errors.push_back({"spec.limits.requestsPerSecond", "must be between 0.1 and 100000"});
  }
  if (lim.bytes_per_second > 0 && lim.bytes_per_second < 1024) {
    errors.push_back({"spec.limits.bytesPerSecond",
                      "must be at least 1Ki (1024 bytes per second); slower uploads time out"});
  }
  if (lim.max_concurrent_copies < 0 || lim.max_concurrent_copies > 1000) {
    errors.push_back({"spec.limits.maxConcurrentCopies", "must be between 1 and 1000 (absent: no limit)"});
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
    check_repository_filters(rule.repository_filters, rp + ".repositoryFilters", errors);
    if (rule.tag_filters.size() > kMaxTagFiltersPerRule) {
      errors.push_back({rp + ".tagFilters", std::to_string(rule.tag_filters.size()) +
                                                " filters, at most " +
                                                std::to_string(kMaxTagFiltersPerRule) + " allowed"});
    }
    check_tag_filters(rule.tag_filters, rp + ".tagFilters", errors);
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
  check_tag_mutability(spec.image_tag_mutability, spec.image_tag_mutability_exclusion_filters, errors);
  check_encryption(spec.encryption_type, spec.kms_key, errors);
  check_resource_tags(spec.resource_tags, errors);
  return errors;
}

FieldErrors validate(const RepositoryCreationTemplate& r) {
  static const std::regex prefix_re{R"((?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*/?)"};
  FieldErrors errors;
  const auto& spec = r.spec;
  check_key(spec.registry_id, spec.region, "spec", errors);
  if (spec.prefix != kRootPrefix &&
      (spec.prefix.size() > kMaxRepositoryNameLength || !std::regex_match(spec.prefix, prefix_re))) {
    errors.push_back({"spec.prefix", quoted(spec.prefix) +
                                         " is neither ROOT nor a repository namespace (lower-case components "
                                         "[a-z0-9] separated by ., _ or -, joined by /, at most 256 characters)"});
  }
  if (spec.description.size() > 256) errors.push_back({"spec.description", "must be at most 256 characters"});
  if (spec.applied_for.empty()) {
    errors.push_back({"spec.appliedFor", "at least one of REPLICATION, PULL_THROUGH_CACHE, CREATE_ON_PUSH"});
  }
  std::set<std::string> uses;
  for (std::size_t i = 0; i < spec.applied_for.size(); ++i) {
    const auto& a = spec.applied_for[i];
    const std::string ap = "spec.appliedFor[" + std::to_string(i) + "]";
    if (a != "REPLICATION" && a != "PULL_THROUGH_CACHE" && a != "CREATE_ON_PUSH") {
      errors.push_back({ap, quoted(a) + " must be REPLICATION, PULL_THROUGH_CACHE or CREATE_ON_PUSH"});
    } else if (!uses.insert(a).second) {
      errors.push_back({ap, quoted(a) + " is given twice"});
    }
  }
  check_tag_mutability(spec.image_tag_mutability, spec.image_tag_mutability_exclusion_filters, errors);
  check_encryption(spec.encryption_type, spec.kms_key, errors);
  check_resource_tags(spec.resource_tags, errors);
  check_document(spec.repository_policy, "spec.repositoryPolicy", errors);
  check_document(spec.lifecycle_policy, "spec.lifecyclePolicy", errors);
  return errors;
}

FieldErrors validate(const ReplicationBackfill& r) {
  FieldErrors errors;
  check_key(r.spec.registry_id, r.spec.region, "spec", errors);
  check_key(r.spec.destination.registry_id, r.spec.destination.region, "spec.destination", errors);
  if (r.spec.destination == r.key()) {
    errors.push_back({"spec.destination", to_string(r.key()) + " is the source registry; a backfill copies to one of "
                                          "its destinations"});
  }
  check_repository_filters(r.spec.repository_filters, "spec.repositoryFilters", errors);
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
  std::map<std::pair<RegistryKey, std::string>, std::size_t> by_prefix;
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
    if (const auto* x = std::get_if<RepositoryCreationTemplate>(&r)) {
      std::string_view prefix = x->spec.prefix;
      if (prefix.ends_with('/')) prefix.remove_suffix(1);
      auto [it, fresh] = by_prefix.emplace(std::pair{x->key(), std::string(prefix)}, i);
      if (!fresh) {
        problems.push_back({i, it->second,
                            {"spec.prefix", "RepositoryCreationTemplate/" + metadata_of(resources[it->second]).name +
                                                " already has prefix " + std::string(prefix) + " in " +
                                                to_string(x->key()) + "; at most one template per prefix"}});
      }
      continue;
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
