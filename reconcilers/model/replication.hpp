// Replication decisions as pure functions: which destinations a push goes to, whether each is
// allowed (S2, S7, S8), how records are named and summarised. The engine does the I/O.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "reconcilers/model/events.hpp"
#include "reconcilers/model/policy.hpp"
#include "reconcilers/model/resources.hpp"
#include "reconcilers/model/validate.hpp"

namespace ferry::model {

// Failure codes written into ReplicationStatus.failureCode.
inline constexpr std::string_view kAccessDenied = "DESTINATION_REGISTRY_ACCESS_DENIED";
inline constexpr std::string_view kRegionNotEnabled = "REGION_NOT_ENABLED";
inline constexpr std::string_view kCrossPartition = "CROSS_PARTITION";
inline constexpr std::string_view kReplicationFailed = "REPLICATION_FAILED";
// Permanent: the source does not have what the push names (404 from the source registry). Not
// retried; the message says what was not found where.
inline constexpr std::string_view kSourceManifestUnknown = "SOURCE_MANIFEST_UNKNOWN";
inline constexpr std::string_view kSourceBlobUnknown = "SOURCE_BLOB_UNKNOWN";
inline constexpr std::string_view kSourceRepositoryUnknown = "SOURCE_REPOSITORY_UNKNOWN";
// Every failure code above (metrics start a series per destination and code at 0).
inline constexpr std::array<std::string_view, 7> kFailureCodes = {
    kAccessDenied,        kRegionNotEnabled,          kCrossPartition,          kReplicationFailed,
    kSourceManifestUnknown, kSourceBlobUnknown, kSourceRepositoryUnknown};

inline constexpr std::string_view kInProgress = "IN_PROGRESS";
// On an ImageReplication, any new value (e.g. the time) asks for its FAILED destinations, and
// those waiting to catch up, to be tried now (S20); status.lastHandledRetryAt echoes it.
inline constexpr std::string_view kRetryAnnotation = "ferry.dev/retry";
inline constexpr std::string_view kComplete = "COMPLETE";
inline constexpr std::string_view kFailed = "FAILED";

// The valid resources of one moment, looked up by what replication needs.
class ResourceIndex {
 public:
  ResourceIndex() = default;
  explicit ResourceIndex(std::span<const Resource> resources);

  const Registry* registry(const RegistryKey& key) const;
  const Registry* registry_named(std::string_view name) const;
  const ReplicationConfig* config_for(const RegistryKey& source) const;
  const RegistryPolicy* policy_for(const RegistryKey& destination) const;
  const Repository* repository(const RegistryKey& registry, std::string_view name) const;
  const Secret* secret(const SecretRef& ref) const;
  // S16: the template that shapes a repository replication creates in `destination`: among those
  // applied for REPLICATION whose prefix covers the name, the longest prefix; ROOT last; null
  // when none (the S12 defaults).
  const RepositoryCreationTemplate* creation_template(const RegistryKey& destination,
                                                     std::string_view repository) const;
  const RegistryCatalog& catalog() const { return catalog_; }
  const std::vector<Registry>& registries() const { return registries_; }
  const std::vector<ReplicationConfig>& configs() const { return configs_; }
  const std::vector<ReplicationBackfill>& backfills() const { return backfills_; }

 private:
  std::vector<Registry> registries_;
  std::vector<ReplicationConfig> configs_;
  std::vector<RegistryPolicy> policies_;
  std::vector<Repository> repositories_;
  std::vector<Secret> secrets_;
  std::vector<RepositoryCreationTemplate> templates_;
  std::vector<ReplicationBackfill> backfills_;
  RegistryCatalog catalog_;
};

// True when a registry exists in the catalog and is enabled (S8).
bool region_enabled(const ResourceIndex& index, const RegistryKey& key);

// Destinations of a push of `tag` into `source`/`repository` (S5, S18: an empty tag is a push
// by digest only, which no tag filter matches); empty when the source registry has no
// ReplicationConfig, is not enabled, or no rule applies.
std::vector<RegistryKey> destinations_for_push(const ResourceIndex& index, const RegistryKey& source,
                                               std::string_view repository, std::string_view tag);

struct Authorization {
  bool allowed = false;
  std::string failure_code;   // when not allowed
  std::string message;        // why, naming the policy statement or missing object
  std::string authorized_by;  // when allowed: "same-account" or the deciding statement(s)
};

// Whether `source` may write `repository` into `destination` right now (S2, S7, S8).
// `repository_exists` adds ecr:CreateRepository to what a cross-account policy must allow.
Authorization authorize(const ResourceIndex& index, const RegistryKey& source,
                        const RegistryKey& destination, std::string_view repository,
                        bool repository_exists);

// Each destination of `r`'s spec without a status gets one: IN_PROGRESS, nothing tagged yet.
// Summarizes and returns true when it added any (a new record; or one stored before its status
// was, found at start).
bool add_missing_statuses(ImageReplication& r);

// A new ImageReplication record for a push, IN_PROGRESS for every destination; named from the
// push's identity including `push.id`.
ImageReplication new_image_replication(const RegistryKey& source, const PushEvent& push,
                                       const std::vector<RegistryKey>& destinations,
                                       const std::string& now);

// The Repository record Ferry creates with a repository: the S12 defaults (MUTABLE, scanOnPush
// false, AES256), or the settings of the creation template that applies (S16), named in
// status.template.
Repository new_replicated_repository(const RegistryKey& destination, std::string_view repository,
                                     const RegistryKey& source, const std::string& now,
                                     const RepositoryCreationTemplate* shape = nullptr);

// Kubernetes object names (DNS subdomain, ≤ 253) that are stable for the same identity.
// `push_id` tells pushes of the same content apart (the registry's event id, or when polling
// noticed it), so a tag moved away and back is replicated again, while a notification the
// registry delivers twice maps to the same record.
std::string image_replication_name(const RegistryKey& source, std::string_view repository,
                                   std::string_view digest, std::string_view tag,
                                   std::string_view push_id);
std::string repository_record_name(const RegistryKey& registry, std::string_view repository);

// Recomputes status.progress ("1/2" complete of total) and status.digestShort.
void summarize(ImageReplication& record);

// True when every destination is COMPLETE or FAILED.
bool finished(const ImageReplication& record);

// S13/S16: whether `tag` is immutable in the repository: IMMUTABLE, IMMUTABLE_WITH_EXCLUSION
// unless an exclusion filter matches the tag, MUTABLE_WITH_EXCLUSION when one does.
bool tag_immutable(const Repository* repository, std::string_view tag);

// S13: whether `tag` may be written at a destination whose tag currently points at
// `existing_digest` (empty: tag absent): always where the tag is mutable, else only when absent
// or already the same digest.
bool may_write_tag(const Repository* destination_repository, std::string_view tag, std::string_view existing_digest,
                   std::string_view digest);

// Lower-case hex SHA-256 of the bytes.
std::string sha256_hex(std::string_view bytes);

}  // namespace ferry::model
