// Ferry's resource kinds (SPEC §2) as plain types, with the defaults already applied.
#pragma once

#include <boost/json/value.hpp>
#include <chrono>
#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ferry::model {

inline constexpr std::string_view kApiGroup = "ferry.dev";
inline constexpr std::string_view kApiVersion = "ferry.dev/v1alpha1";

enum class Partition { Aws, AwsCn, AwsUsGov };

std::string_view to_string(Partition p);
std::optional<Partition> parse_partition(std::string_view s);
// cn-* → aws-cn, us-gov-* → aws-us-gov, anything else → aws.
Partition partition_for_region(std::string_view region);

// One (account, region) registry; also what a replication destination names.
struct RegistryKey {
  std::string registry_id;
  std::string region;
  auto operator<=>(const RegistryKey&) const = default;
};
std::string to_string(const RegistryKey& k);  // "111111111111/us-east-1"

struct ObjectMeta {
  std::string name;
  std::string namespace_;
  std::string uid;
  std::string resource_version;
  std::int64_t generation = 0;
  std::string creation_timestamp;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
};

struct SecretRef {
  std::string namespace_;
  std::string name;
  auto operator<=>(const SecretRef&) const = default;
};

// metav1.Condition.
struct Condition {
  std::string type;
  std::string status;  // True | False | Unknown
  std::string reason;
  std::string message;
  std::string last_transition_time;
  std::int64_t observed_generation = 0;
  bool operator==(const Condition&) const = default;
};

struct CommonStatus {
  std::int64_t observed_generation = 0;
  std::vector<Condition> conditions;
  bool operator==(const CommonStatus&) const = default;
};

// ---- Registry ---------------------------------------------------------------

enum class RegistryType { Oci, Ecr };

// S21 (beyond ECR): what Ferry may send to or read from one registry, across every copy, poll
// and backfill; 0 means no limit.
struct RegistryLimits {
  double requests_per_second = 0;
  std::uint64_t bytes_per_second = 0;
  std::int64_t max_concurrent_copies = 0;
  bool operator==(const RegistryLimits&) const = default;
};

struct RegistrySpec {
  std::string registry_id;
  std::string region;
  Partition partition = Partition::Aws;  // explicit, or derived from region
  bool partition_explicit = false;
  std::string endpoint;
  RegistryType type = RegistryType::Oci;
  bool enabled = true;
  std::optional<SecretRef> credentials_secret_ref;
  bool tls_insecure_skip_verify = false;
  std::optional<SecretRef> tls_ca_secret_ref;
  std::optional<SecretRef> notifications_token_secret_ref;
  std::chrono::milliseconds poll_interval{std::chrono::seconds(30)};  // 0 disables polling
  // type: ecr (SPEC §7). The ECR API and STS endpoints default to AWS's for the region.
  std::string ecr_api_endpoint;
  std::string ecr_events_queue_url;
  std::string sts_endpoint;
  RegistryLimits limits;
};

// https://<registryId>.dkr.ecr.<region>.amazonaws.com (amazonaws.com.cn in aws-cn): the data
// plane of an ECR registry when spec.endpoint is not set.
std::string default_ecr_endpoint(const RegistrySpec& spec);

struct RegistryStatus : CommonStatus {
  std::string last_polled_at;
};

struct Registry {
  ObjectMeta metadata;
  RegistrySpec spec;
  RegistryStatus status;
  RegistryKey key() const { return {spec.registry_id, spec.region}; }
};

// ---- ReplicationConfig ------------------------------------------------------

struct RepositoryFilter {
  std::string filter;
  std::string filter_type = "PREFIX_MATCH";
};

// S18 (beyond ECR): a tag filter; `*` matches any run of characters, the rest literally.
struct TagFilter {
  std::string filter;
  std::string filter_type = "WILDCARD";
};

struct ReplicationRule {
  std::vector<RegistryKey> destinations;
  std::vector<RepositoryFilter> repository_filters;
  std::vector<TagFilter> tag_filters;  // empty: every push, as ECR (S18)
};

struct ReplicationConfigSpec {
  std::string registry_id;
  std::string region;
  std::vector<ReplicationRule> rules;
};

struct DestinationState {
  std::string region;
  std::string registry_id;
  std::string state;  // Ready | RegionNotEnabled | CrossPartition | NoPolicy | Denied | Unreachable
  std::string message;
  std::string effective_since;  // when the replication engine started to apply it (S3)
  bool operator==(const DestinationState&) const = default;
};

struct ReplicationConfigStatus : CommonStatus {
  std::string effective_since;
  std::vector<DestinationState> destinations;
};

struct ReplicationConfig {
  ObjectMeta metadata;
  ReplicationConfigSpec spec;
  ReplicationConfigStatus status;
  RegistryKey key() const { return {spec.registry_id, spec.region}; }
};

// ---- RegistryPolicy ---------------------------------------------------------

struct RegistryPolicySpec {
  std::string registry_id;
  std::string region;
  boost::json::value policy;  // as written: an object or a JSON string; see policy.hpp
};

struct RegistryPolicy {
  ObjectMeta metadata;
  RegistryPolicySpec spec;
  CommonStatus status;
  RegistryKey key() const { return {spec.registry_id, spec.region}; }
};

// ---- Repository -------------------------------------------------------------

struct ResourceTag {
  std::string key;
  std::string value;
  bool operator==(const ResourceTag&) const = default;
};

struct RepositorySpec {
  std::string registry_id;
  std::string region;
  std::string repository_name;
  // MUTABLE | IMMUTABLE | IMMUTABLE_WITH_EXCLUSION | MUTABLE_WITH_EXCLUSION (S13, S16)
  std::string image_tag_mutability = "MUTABLE";
  // With the *_WITH_EXCLUSION modes: the tags that behave the other way (WILDCARD filters).
  std::vector<TagFilter> image_tag_mutability_exclusion_filters;
  bool scan_on_push = false;
  std::string encryption_type = "AES256";  // AES256 | KMS
  std::string kms_key;
  std::vector<ResourceTag> resource_tags;  // from a creation template (S16)
};

struct RepositoryStatus : CommonStatus {
  std::string created_by;  // Replication | User
  std::string created_at;
  std::optional<RegistryKey> source_registry;
  std::string source_repository_name;
  std::string template_name;  // the RepositoryCreationTemplate that shaped it (S16), if any
};

struct Repository {
  ObjectMeta metadata;
  RepositorySpec spec;
  RepositoryStatus status;
};

// ---- RepositoryCreationTemplate (S16) -----------------------------------------

inline constexpr std::string_view kRootPrefix = "ROOT";

struct RepositoryCreationTemplateSpec {
  std::string registry_id;  // the destination registry whose new repositories it shapes
  std::string region;
  std::string prefix;       // a repository namespace ("prod" covers prod/...), or ROOT
  std::string description;
  std::vector<std::string> applied_for{"REPLICATION"};  // REPLICATION | PULL_THROUGH_CACHE | CREATE_ON_PUSH
  std::string image_tag_mutability = "MUTABLE";
  std::vector<TagFilter> image_tag_mutability_exclusion_filters;
  std::string encryption_type = "AES256";
  std::string kms_key;
  std::vector<ResourceTag> resource_tags;
  boost::json::value repository_policy;  // ECR destinations only; null when absent
  boost::json::value lifecycle_policy;   // ECR destinations only; null when absent
};

struct RepositoryCreationTemplate {
  ObjectMeta metadata;
  RepositoryCreationTemplateSpec spec;
  CommonStatus status;
  RegistryKey key() const { return {spec.registry_id, spec.region}; }
  bool applies_to_replication() const;
  // Whether it covers a new repository of that name: ROOT covers every one, a prefix its
  // namespace (an assumed "/" after it, as ECR does).
  bool covers(std::string_view repository) const;
};

// ---- ReplicationBackfill (S17) ----------------------------------------------

// PREPARING → IN_PROGRESS → COMPLETE | FAILED; spec.stop: STOPPING → STOPPED.
inline constexpr std::string_view kBackfillPreparing = "PREPARING";
inline constexpr std::string_view kBackfillInProgress = "IN_PROGRESS";
inline constexpr std::string_view kBackfillComplete = "COMPLETE";
inline constexpr std::string_view kBackfillFailed = "FAILED";
inline constexpr std::string_view kBackfillStopping = "STOPPING";
inline constexpr std::string_view kBackfillStopped = "STOPPED";

struct ReplicationBackfillSpec {
  std::string registry_id;  // the source registry
  std::string region;
  RegistryKey destination;  // one destination of the source's ReplicationConfig
  std::vector<RepositoryFilter> repository_filters;  // optional, narrowing the rules further
  bool stop = false;
};

struct BackfillImages {
  std::int64_t total = 0;
  std::int64_t replicated = 0;
  std::int64_t skipped = 0;
  std::int64_t failed = 0;
  bool operator==(const BackfillImages&) const = default;
};

struct ReplicationBackfillStatus : CommonStatus {
  std::string phase;
  BackfillImages images;
  std::string started_at;
  std::string completed_at;
  std::string message;
  bool operator==(const ReplicationBackfillStatus&) const = default;
};

struct ReplicationBackfill {
  ObjectMeta metadata;
  ReplicationBackfillSpec spec;
  ReplicationBackfillStatus status;
  RegistryKey key() const { return {spec.registry_id, spec.region}; }
};

// ---- ImageReplication -------------------------------------------------------

struct ImageSource {
  std::string registry_id;
  std::string region;
  std::string repository_name;
  std::string image_digest;
  std::string image_tag;  // empty when pushed by digest
  std::string pushed_at;
};

struct ReplicationStatus {
  std::string region;
  std::string registry_id;
  std::string status;  // IN_PROGRESS | COMPLETE | FAILED
  std::string failure_code;
  std::string message;
  std::string started_at;
  std::string completed_at;
  std::string authorized_by;
  std::string next_attempt_at;  // set while IN_PROGRESS after a failed attempt (S20)
  bool tagged = true;
  bool operator==(const ReplicationStatus&) const = default;
};

struct ImageReplicationSpec {
  ImageSource source;
  std::vector<RegistryKey> destinations;
};

struct ImageReplicationStatus : CommonStatus {
  std::vector<ReplicationStatus> replication_statuses;
  std::string digest_short;
  std::string progress;
  // The value of the ferry.dev/retry annotation last acted on (as Flux's lastHandledReconcileAt):
  // an annotation with another value asks for FAILED destinations to be tried again now (S20).
  std::string last_handled_retry_at;
};

struct ImageReplication {
  ObjectMeta metadata;
  ImageReplicationSpec spec;
  ImageReplicationStatus status;
};

// ---- v1/Secret --------------------------------------------------------------

struct Secret {
  ObjectMeta metadata;
  std::string type;                           // e.g. kubernetes.io/dockerconfigjson, Opaque
  std::map<std::string, std::string> data;    // decoded bytes of .data merged with .stringData
};

using Resource = std::variant<Registry, ReplicationConfig, RegistryPolicy, Repository, ImageReplication, Secret,
                              RepositoryCreationTemplate, ReplicationBackfill>;

std::string_view kind_of(const Resource& r);
const ObjectMeta& metadata_of(const Resource& r);

}  // namespace ferry::model
