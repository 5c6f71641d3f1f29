// Pure replication decisions: destinations, authorization, record construction and naming.
#include "reconcilers/model/replication.hpp"

#include <openssl/evp.h>

#include <algorithm>

#include "reconcilers/model/rules.hpp"

namespace ferry::model {

ResourceIndex::ResourceIndex(std::span<const Resource> resources) : catalog_(resources) {
  for (const auto& r : resources) {
    if (const auto* x = std::get_if<Registry>(&r)) registries_.push_back(*x);
    if (const auto* x = std::get_if<ReplicationConfig>(&r)) configs_.push_back(*x);
    if (const auto* x = std::get_if<RegistryPolicy>(&r)) policies_.push_back(*x);
    if (const auto* x = std::get_if<Repository>(&r)) repositories_.push_back(*x);
    if (const auto* x = std::get_if<Secret>(&r)) secrets_.push_back(*x);
    if (const auto* x = std::get_if<RepositoryCreationTemplate>(&r)) templates_.push_back(*x);
    if (const auto* x = std::get_if<ReplicationBackfill>(&r)) backfills_.push_back(*x);
  }
}

const RepositoryCreationTemplate* ResourceIndex::creation_template(const RegistryKey& destination,
                                                                   std::string_view repository) const {
  const RepositoryCreationTemplate* best = nullptr;
  auto length = [](const RepositoryCreationTemplate& t) -> std::size_t {
    return t.spec.prefix == kRootPrefix ? 0 : t.spec.prefix.size() + (t.spec.prefix.ends_with('/') ? 0 : 1);
  };
  for (const auto& t : templates_) {
    if (t.key() != destination || !t.applies_to_replication() || !t.covers(repository)) continue;
    if (!best || length(t) > length(*best)) best = &t;
  }
  return best;
}

const Registry* ResourceIndex::registry(const RegistryKey& key) const {
  auto it = std::ranges::find_if(registries_, [&](const Registry& r) { return r.key() == key; });
  return it == registries_.end() ? nullptr : &*it;
}

const Registry* ResourceIndex::registry_named(std::string_view name) const {
  auto it = std::ranges::find_if(registries_, [&](const Registry& r) { return r.metadata.name == name; });
  return it == registries_.end() ? nullptr : &*it;
}

const ReplicationConfig* ResourceIndex::config_for(const RegistryKey& source) const {
  auto it = std::ranges::find_if(configs_, [&](const ReplicationConfig& c) { return c.key() == source; });
  return it == configs_.end() ? nullptr : &*it;
}

const RegistryPolicy* ResourceIndex::policy_for(const RegistryKey& destination) const {
  auto it = std::ranges::find_if(policies_, [&](const RegistryPolicy& p) { return p.key() == destination; });
  return it == policies_.end() ? nullptr : &*it;
}

const Repository* ResourceIndex::repository(const RegistryKey& registry, std::string_view name) const {
  auto it = std::ranges::find_if(repositories_, [&](const Repository& r) {
    return r.spec.registry_id == registry.registry_id && r.spec.region == registry.region &&
           r.spec.repository_name == name;
  });
  return it == repositories_.end() ? nullptr : &*it;
}

const Secret* ResourceIndex::secret(const SecretRef& ref) const {
  auto it = std::ranges::find_if(secrets_, [&](const Secret& s) {
    return s.metadata.name == ref.name && s.metadata.namespace_ == ref.namespace_;
  });
  return it == secrets_.end() ? nullptr : &*it;
}

bool region_enabled(const ResourceIndex& index, const RegistryKey& key) {
  const Registry* r = index.registry(key);
  return r != nullptr && r->spec.enabled;
}

std::vector<RegistryKey> destinations_for_push(const ResourceIndex& index, const RegistryKey& source,
                                               std::string_view repository, std::string_view tag) {
  if (!region_enabled(index, source)) return {};
  const ReplicationConfig* config = index.config_for(source);
  if (!config) return {};
  return destinations_for(config->spec, repository, tag);
}

Authorization authorize(const ResourceIndex& index, const RegistryKey& source,
                        const RegistryKey& destination, std::string_view repository,
                        bool repository_exists) {
  Authorization a;
  const Registry* dest = index.registry(destination);
  if (!dest || !dest->spec.enabled) {
    a.failure_code = kRegionNotEnabled;
    a.message = "RegionNotEnabled: region " + destination.region + " is not enabled for account " +
                destination.registry_id +
                (dest ? " (its Registry has enabled: false)" : " (no Registry object for it)");
    return a;
  }
  const Partition sp = index.catalog().partition_of(source);
  const Partition dp = index.catalog().partition_of(destination);
  if (sp != dp) {
    a.failure_code = kCrossPartition;
    a.message = "CrossPartition: " + to_string(destination) + " is in partition " +
                std::string(to_string(dp)) + ", the source in " + std::string(to_string(sp));
    return a;
  }
  if (source.registry_id == destination.registry_id) {
    a.allowed = true;
    a.authorized_by = "same-account";
    return a;
  }
  a.failure_code = kAccessDenied;
  const RegistryPolicy* policy = index.policy_for(destination);
  if (!policy) {
    a.message = "no RegistryPolicy for " + to_string(destination) +
                "; a destination in another account must allow ecr:ReplicateImage for account " +
                source.registry_id;
    return a;
  }
  auto doc = parse_policy(policy->spec.policy);
  if (!doc) {
    a.message = "RegistryPolicy/" + policy->metadata.name + " is invalid: " + to_string(doc.error().front());
    return a;
  }
  const std::string arn = repository_arn(dp, destination.region, destination.registry_id, repository);
  std::vector<std::string> actions{"ecr:ReplicateImage"};
  if (!repository_exists) actions.emplace_back("ecr:CreateRepository");
  std::string by;
  for (const auto& action : actions) {
    auto e = evaluate(*doc, {dp, source.registry_id, action, arn});
    if (e.decision == Decision::ExplicitDeny) {
      a.message = action + " on " + arn + " for account " + source.registry_id +
                  " is explicitly denied by " + e.statement + " of RegistryPolicy/" + policy->metadata.name;
      return a;
    }
    if (e.decision == Decision::ImplicitDeny) {
      a.message = "no statement of RegistryPolicy/" + policy->metadata.name + " allows " + action +
                  " on " + arn + " for account " + source.registry_id +
                  (action == "ecr:CreateRepository" ? " (the repository does not exist there yet)" : "");
      return a;
    }
    if (by.find(e.statement) == std::string::npos) by += (by.empty() ? "" : ", ") + e.statement;
  }
  a.allowed = true;
  a.failure_code.clear();
  a.authorized_by = "RegistryPolicy/" + policy->metadata.name + " " + by;
  return a;
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

namespace {

// Lower-case alphanumerics and '-', at most `max` characters, no leading/trailing '-'.
std::string dns_part(std::string_view s, std::size_t max) {
  std::string out;
  for (char c : s) {
    if (out.size() >= max) break;
    char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool alnum = (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9');
    if (alnum) {
      out.push_back(l);
    } else if (!out.empty() && out.back() != '-') {
      out.push_back('-');
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

}  // namespace

std::string image_replication_name(const RegistryKey& source, std::string_view repository,
                                   std::string_view digest, std::string_view tag,
                                   std::string_view push_id) {
  const std::string identity = to_string(source) + "|" + std::string(repository) + "|" +
                               std::string(digest) + "|" + std::string(tag) + "|" +
                               std::string(push_id);
  std::string name = dns_part(repository, 100);
  if (!tag.empty()) name += "-" + dns_part(tag, 60);
  std::string_view hex = digest.starts_with("sha256:") ? digest.substr(7, 12) : digest.substr(0, 12);
  name += "-" + dns_part(hex, 12) + "-" + sha256_hex(identity).substr(0, 8);
  if (!name.empty() && name.front() == '-') name.erase(0, 1);
  return name;
}

std::string repository_record_name(const RegistryKey& registry, std::string_view repository) {
  const std::string identity = to_string(registry) + "|" + std::string(repository);
  return registry.registry_id + "-" + dns_part(registry.region, 25) + "-" + dns_part(repository, 150) +
         "-" + sha256_hex(identity).substr(0, 8);
}

ImageReplication new_image_replication(const RegistryKey& source, const PushEvent& push,
                                       const std::vector<RegistryKey>& destinations,
                                       const std::string& now) {
  ImageReplication r;
  r.metadata.name = image_replication_name(source, push.repository, push.digest, push.tag, push.id);
  r.metadata.generation = 1;
  r.metadata.creation_timestamp = now;
  auto& s = r.spec.source;
  s.registry_id = source.registry_id;
  s.region = source.region;
  s.repository_name = push.repository;
  s.image_digest = push.digest;
  s.image_tag = push.tag;
  s.pushed_at = push.timestamp.empty() ? now : push.timestamp;
  r.spec.destinations = destinations;
  if (!add_missing_statuses(r)) summarize(r);
  return r;
}

bool add_missing_statuses(ImageReplication& r) {
  bool added = false;
  for (const auto& d : r.spec.destinations) {
    const auto& all = r.status.replication_statuses;
    if (std::ranges::any_of(all, [&](const ReplicationStatus& st) {
          return st.registry_id == d.registry_id && st.region == d.region;
        }))
      continue;
    ReplicationStatus st;
    st.region = d.region;
    st.registry_id = d.registry_id;
    st.status = kInProgress;
    st.tagged = false;  // nothing is written there yet
    r.status.replication_statuses.push_back(std::move(st));
    added = true;
  }
  if (added) summarize(r);
  return added;
}

Repository new_replicated_repository(const RegistryKey& destination, std::string_view repository,
                                     const RegistryKey& source, const std::string& now,
                                     const RepositoryCreationTemplate* shape) {
  Repository r;
  r.metadata.name = repository_record_name(destination, repository);
  r.metadata.generation = 1;
  r.metadata.creation_timestamp = now;
  r.spec.registry_id = destination.registry_id;
  r.spec.region = destination.region;
  r.spec.repository_name = repository;
  if (shape) {
    r.spec.image_tag_mutability = shape->spec.image_tag_mutability;
    r.spec.image_tag_mutability_exclusion_filters = shape->spec.image_tag_mutability_exclusion_filters;
    r.spec.encryption_type = shape->spec.encryption_type;
    r.spec.kms_key = shape->spec.kms_key;
    r.spec.resource_tags = shape->spec.resource_tags;
    r.status.template_name = shape->metadata.name;
  }
  r.status.created_by = "Replication";
  r.status.created_at = now;
  r.status.source_registry = source;
  r.status.source_repository_name = repository;
  return r;
}

void summarize(ImageReplication& record) {
  const auto& st = record.status.replication_statuses;
  auto complete = std::ranges::count_if(st, [](const ReplicationStatus& s) { return s.status == kComplete; });
  record.status.progress = std::to_string(complete) + "/" + std::to_string(st.size());
  const auto& d = record.spec.source.image_digest;
  record.status.digest_short = d.starts_with("sha256:") ? d.substr(7, 12) : d.substr(0, 12);
}

bool finished(const ImageReplication& record) {
  return std::ranges::all_of(record.status.replication_statuses, [](const ReplicationStatus& s) {
    return s.status == kComplete || s.status == kFailed;
  });
}

bool tag_immutable(const Repository* repository, std::string_view tag) {
  if (!repository || tag.empty()) return false;
  const auto& spec = repository->spec;
  auto excluded = [&] {
    return std::ranges::any_of(spec.image_tag_mutability_exclusion_filters,
                               [&](const TagFilter& f) { return wildcard_match(f.filter, tag); });
  };
  if (spec.image_tag_mutability == "IMMUTABLE") return true;
  if (spec.image_tag_mutability == "IMMUTABLE_WITH_EXCLUSION") return !excluded();
  if (spec.image_tag_mutability == "MUTABLE_WITH_EXCLUSION") return excluded();
  return false;
}

bool may_write_tag(const Repository* destination_repository, std::string_view tag, std::string_view existing_digest,
                   std::string_view digest) {
  if (!tag_immutable(destination_repository, tag)) return true;
  return existing_digest.empty() || existing_digest == digest;
}

}  // namespace ferry::model
