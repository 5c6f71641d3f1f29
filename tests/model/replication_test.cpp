// Replication decisions: destinations per push, authorization outcomes, records and names.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/replication.hpp"
#include "reconcilers/model/serialize.hpp"
#include "test_util.hpp"

namespace ferry::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const RegistryKey kSrc{"111111111111", "us-east-1"};
const RegistryKey kWest{"111111111111", "us-west-2"};
const RegistryKey kEu{"222222222222", "eu-west-1"};

std::vector<Resource> load(const std::string& yaml) { return testing::load_all(yaml); }

std::string registry(const std::string& name, const RegistryKey& k, bool enabled = true) {
  return "---\napiVersion: ferry.dev/v1alpha1\nkind: Registry\nmetadata: {name: " + name +
         "}\nspec: {registryId: \"" + k.registry_id + "\", region: " + k.region +
         ", endpoint: \"http://127.0.0.1:1\", enabled: " + (enabled ? "true" : "false") + "}\n";
}

const std::string kConfig = R"(---
apiVersion: ferry.dev/v1alpha1
kind: ReplicationConfig
metadata: {name: src}
spec:
  registryId: "111111111111"
  region: us-east-1
  rules:
  - destinations: [{region: us-west-2, registryId: "111111111111"}, {region: eu-west-1, registryId: "222222222222"}]
    repositoryFilters: [{filter: prod}]
)";

std::string policy(const std::string& statements) {
  return "---\napiVersion: ferry.dev/v1alpha1\nkind: RegistryPolicy\nmetadata: {name: eu}\nspec:\n"
         "  registryId: \"222222222222\"\n  region: eu-west-1\n  policy: {Version: \"2012-10-17\", "
         "Statement: " + statements + "}\n";
}

const std::string kAllowBoth =
    R"([{Sid: Repl, Effect: Allow, Principal: {AWS: "arn:aws:iam::111111111111:root"}, Action: [ecr:CreateRepository, ecr:ReplicateImage], Resource: "arn:aws:ecr:eu-west-1:222222222222:repository/*"}])";

TEST(Replication, DestinationsOfAPush) {
  auto res = load(registry("a", kSrc) + registry("b", kWest) + registry("c", kEu) + kConfig);
  ResourceIndex index(res);
  EXPECT_THAT(destinations_for_push(index, kSrc, "prod/app", "v1"), ElementsAre(kWest, kEu));
  EXPECT_THAT(destinations_for_push(index, kSrc, "dev/app", "v1"), IsEmpty());
  EXPECT_THAT(destinations_for_push(index, kWest, "prod/app", "v1"), IsEmpty());  // no config for B: no chaining
  EXPECT_EQ(index.registry_named("b")->key(), kWest);
}

TEST(Replication, DisabledSourceRegionReplicatesNothing) {
  auto res = load(registry("a", kSrc, false) + registry("b", kWest) + kConfig);
  ResourceIndex index(res);
  EXPECT_THAT(destinations_for_push(index, kSrc, "prod/app", "v1"), IsEmpty());
}

TEST(Replication, SameAccountNeedsNoPolicy) {
  auto res = load(registry("a", kSrc) + registry("b", kWest) + kConfig);
  auto a = authorize(ResourceIndex(res), kSrc, kWest, "prod/app", false);
  EXPECT_TRUE(a.allowed);
  EXPECT_EQ(a.authorized_by, "same-account");
}

TEST(Replication, DestinationRegionNotEnabled) {
  auto missing = load(registry("a", kSrc) + kConfig);
  auto a = authorize(ResourceIndex(missing), kSrc, kWest, "prod/app", true);
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.failure_code, kRegionNotEnabled);
  EXPECT_THAT(a.message, HasSubstr("RegionNotEnabled: region us-west-2 is not enabled for account 111111111111 (no Registry object for it)"));
  auto disabled = load(registry("a", kSrc) + registry("b", kWest, false) + kConfig);
  EXPECT_THAT(authorize(ResourceIndex(disabled), kSrc, kWest, "prod/app", true).message,
              HasSubstr("enabled: false"));
}

TEST(Replication, CrossAccountWithoutPolicyIsDenied) {
  auto res = load(registry("a", kSrc) + registry("c", kEu) + kConfig);
  auto a = authorize(ResourceIndex(res), kSrc, kEu, "prod/app", true);
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.failure_code, kAccessDenied);
  EXPECT_THAT(a.message, HasSubstr("no RegistryPolicy for 222222222222/eu-west-1"));
}

TEST(Replication, CrossAccountAllowedNamesTheStatement) {
  auto res = load(registry("a", kSrc) + registry("c", kEu) + kConfig + policy(kAllowBoth));
  auto a = authorize(ResourceIndex(res), kSrc, kEu, "prod/app", false);
  EXPECT_TRUE(a.allowed) << a.message;
  EXPECT_EQ(a.authorized_by, "RegistryPolicy/eu Sid Repl");
}

TEST(Replication, MissingRepositoryNeedsCreateRepository) {
  auto res = load(registry("a", kSrc) + registry("c", kEu) + kConfig +
                  policy(R"([{Sid: Repl, Effect: Allow, Principal: {AWS: "111111111111"}, Action: ecr:ReplicateImage, Resource: "*"}])"));
  ResourceIndex index(res);
  EXPECT_TRUE(authorize(index, kSrc, kEu, "prod/app", true).allowed);
  auto a = authorize(index, kSrc, kEu, "prod/app", false);
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.failure_code, kAccessDenied);
  EXPECT_THAT(a.message, HasSubstr("allows ecr:CreateRepository on arn:aws:ecr:eu-west-1:222222222222:repository/prod/app"));
}

TEST(Replication, ExplicitDenyIsReported) {
  auto res = load(registry("a", kSrc) + registry("c", kEu) + kConfig +
                  policy(R"([{Sid: All, Effect: Allow, Principal: "*", Action: "ecr:*", Resource: "*"}, {Sid: NoProd, Effect: Deny, Principal: "*", Action: ecr:ReplicateImage, Resource: "arn:aws:ecr:*:*:repository/prod/*"}])"));
  auto a = authorize(ResourceIndex(res), kSrc, kEu, "prod/app", true);
  EXPECT_FALSE(a.allowed);
  EXPECT_THAT(a.message, HasSubstr("explicitly denied by Sid NoProd of RegistryPolicy/eu"));
}

TEST(Replication, NewRecordIsInProgressEverywhere) {
  PushEvent push{"id", "prod/app", "sha256:" + std::string(64, 'b'), "v1",
                 "application/vnd.oci.image.manifest.v1+json", "2026-11-28T14:00:00Z", "skopeo"};
  auto r = new_image_replication(kSrc, push, {kWest, kEu}, "2026-11-28T14:00:01Z");
  EXPECT_EQ(r.status.progress, "0/2");
  EXPECT_EQ(r.status.digest_short, std::string(12, 'b'));
  ASSERT_EQ(r.status.replication_statuses.size(), 2u);
  EXPECT_EQ(r.status.replication_statuses[1].status, kInProgress);
  EXPECT_FALSE(finished(r));
  r.status.replication_statuses[0].status = kComplete;
  r.status.replication_statuses[1].status = kFailed;
  summarize(r);
  EXPECT_EQ(r.status.progress, "1/2");
  EXPECT_TRUE(finished(r));

  // The record survives a round trip through its JSON form.
  auto back = parse_resource(boost::json::value(to_json(r)));
  ASSERT_TRUE(back.resource) << (back.errors.empty() ? "" : to_string(back.errors[0]));
  const auto& rr = std::get<ImageReplication>(*back.resource);
  EXPECT_EQ(rr.spec.source.image_tag, "v1");
  EXPECT_EQ(rr.status.replication_statuses, r.status.replication_statuses);
}

TEST(Replication, NamesAreValidStableAndDistinct) {
  const std::string d = "sha256:" + std::string(64, 'c');
  auto a = image_replication_name(kSrc, "Prod/App_x", d, "v1.0", "e1");
  EXPECT_EQ(a, image_replication_name(kSrc, "Prod/App_x", d, "v1.0", "e1"));
  EXPECT_NE(a, image_replication_name(kSrc, "Prod/App_x", d, "v1.1", "e1"));
  EXPECT_NE(a, image_replication_name(kWest, "Prod/App_x", d, "v1.0", "e1"));
  EXPECT_NE(a, image_replication_name(kSrc, "Prod/App_x", d, "v1.0", "e2"));
  EXPECT_TRUE(std::ranges::all_of(a, [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; })) << a;
  EXPECT_LE(image_replication_name(kSrc, std::string(256, 'a'), d, std::string(128, 't'), "e").size(), 253u);
  EXPECT_LE(repository_record_name(kEu, std::string(256, 'a')).size(), 253u);
}

TEST(Replication, NewRepositoryRecordHasDefaultSettings) {
  auto r = new_replicated_repository(kEu, "prod/app", kSrc, "2026-11-28T14:00:00Z");
  EXPECT_EQ(r.spec.image_tag_mutability, "MUTABLE");
  EXPECT_FALSE(r.spec.scan_on_push);
  EXPECT_EQ(r.spec.encryption_type, "AES256");
  EXPECT_EQ(r.status.created_by, "Replication");
  EXPECT_EQ(r.status.source_registry, kSrc);
}

TEST(Replication, TagImmutability) {
  Repository immutable;
  immutable.spec.image_tag_mutability = "IMMUTABLE";
  Repository mutable_repo;
  const std::string d1 = "sha256:1", d2 = "sha256:2";
  EXPECT_TRUE(may_write_tag(nullptr, "v1", d1, d2));
  EXPECT_TRUE(may_write_tag(&mutable_repo, "v1", d1, d2));
  EXPECT_TRUE(may_write_tag(&immutable, "v1", "", d2));
  EXPECT_TRUE(may_write_tag(&immutable, "v1", d2, d2));
  EXPECT_FALSE(may_write_tag(&immutable, "v1", d1, d2));
}

TEST(Replication, TagImmutabilityWithExclusions) {
  Repository imm;
  imm.spec.image_tag_mutability = "IMMUTABLE_WITH_EXCLUSION";
  imm.spec.image_tag_mutability_exclusion_filters = {{"latest", "WILDCARD"}, {"dev-*", "WILDCARD"}};
  EXPECT_TRUE(tag_immutable(&imm, "v1.2"));
  EXPECT_FALSE(tag_immutable(&imm, "latest"));
  EXPECT_FALSE(tag_immutable(&imm, "dev-42"));
  EXPECT_FALSE(may_write_tag(&imm, "v1.2", "sha256:1", "sha256:2"));
  EXPECT_TRUE(may_write_tag(&imm, "latest", "sha256:1", "sha256:2"));
  Repository mut;
  mut.spec.image_tag_mutability = "MUTABLE_WITH_EXCLUSION";
  mut.spec.image_tag_mutability_exclusion_filters = {{"release-*", "WILDCARD"}};
  EXPECT_TRUE(tag_immutable(&mut, "release-1"));
  EXPECT_FALSE(tag_immutable(&mut, "latest"));
  EXPECT_FALSE(may_write_tag(&mut, "release-1", "sha256:1", "sha256:2"));
  EXPECT_TRUE(may_write_tag(&mut, "nightly", "sha256:1", "sha256:2"));
  EXPECT_FALSE(tag_immutable(&imm, ""));  // a push by digest writes no tag
}

std::string creation_template(const std::string& name, const RegistryKey& k, const std::string& prefix,
                              const std::string& extra = "") {
  return "---\napiVersion: ferry.dev/v1alpha1\nkind: RepositoryCreationTemplate\nmetadata: {name: " + name +
         "}\nspec: {registryId: \"" + k.registry_id + "\", region: " + k.region + ", prefix: \"" + prefix + "\"" +
         extra + "}\n";
}

TEST(CreationTemplate, LongestPrefixWinsRootLastOnlyForReplicationAndItsRegistry) {
  auto resources = load(creation_template("root", kEu, "ROOT", ", imageTagMutability: IMMUTABLE") +
                        creation_template("prod", kEu, "prod", ", encryptionConfiguration: {encryptionType: KMS, "
                                                               "kmsKey: alias/prod}") +
                        creation_template("prod-team", kEu, "prod/team/") +
                        creation_template("cache", kEu, "cache", ", appliedFor: [PULL_THROUGH_CACHE]") +
                        creation_template("west", kWest, "prod"));
  ResourceIndex index(resources);
  auto name_for = [&](const RegistryKey& k, std::string_view repo) {
    const auto* t = index.creation_template(k, repo);
    return t ? t->metadata.name : std::string("none");
  };
  EXPECT_EQ(name_for(kEu, "prod/team/api"), "prod-team");
  EXPECT_EQ(name_for(kEu, "prod/app"), "prod");
  EXPECT_EQ(name_for(kEu, "prod"), "root");         // a prefix is a namespace: "prod" covers prod/...
  EXPECT_EQ(name_for(kEu, "production/x"), "root");
  EXPECT_EQ(name_for(kEu, "cache/x"), "root");       // not applied for REPLICATION
  EXPECT_EQ(name_for(kWest, "prod/app"), "west");
  EXPECT_EQ(name_for(kWest, "other"), "none");
  EXPECT_EQ(name_for(kSrc, "prod/app"), "none");

  auto r = new_replicated_repository(kEu, "prod/app", kSrc, "2026-11-28T14:00:00Z",
                                     index.creation_template(kEu, "prod/app"));
  EXPECT_EQ(r.spec.encryption_type, "KMS");
  EXPECT_EQ(r.spec.kms_key, "alias/prod");
  EXPECT_EQ(r.spec.image_tag_mutability, "MUTABLE");
  EXPECT_EQ(r.status.template_name, "prod");
  auto json = boost::json::serialize(to_json(r));
  EXPECT_THAT(json, HasSubstr("\"template\":\"prod\""));
  auto back = parse_resource(to_json(r));
  ASSERT_TRUE(back.resource) << (back.errors.empty() ? "" : to_string(back.errors.front()));
  EXPECT_EQ(std::get<Repository>(*back.resource).status.template_name, "prod");
}

TEST(CreationTemplate, ExclusionFiltersAndTagsTravelIntoTheRecord) {
  auto resources = load(creation_template("t", kEu, "ROOT",
                                          ", imageTagMutability: IMMUTABLE_WITH_EXCLUSION, "
                                          "imageTagMutabilityExclusionFilters: [{filter: \"latest\", filterType: "
                                          "WILDCARD}], resourceTags: [{Key: team, Value: platform}]"));
  ResourceIndex index(resources);
  auto r = new_replicated_repository(kEu, "app", kSrc, "2026-11-28T14:00:00Z", index.creation_template(kEu, "app"));
  EXPECT_EQ(r.spec.image_tag_mutability, "IMMUTABLE_WITH_EXCLUSION");
  ASSERT_EQ(r.spec.image_tag_mutability_exclusion_filters.size(), 1u);
  EXPECT_EQ(r.spec.resource_tags, (std::vector<ResourceTag>{{"team", "platform"}}));
  auto back = parse_resource(to_json(r));
  ASSERT_TRUE(back.resource);
  const auto& again = std::get<Repository>(*back.resource);
  EXPECT_TRUE(validate(again).empty());
  EXPECT_TRUE(tag_immutable(&again, "v1"));
  EXPECT_FALSE(tag_immutable(&again, "latest"));
}

}  // namespace
}  // namespace ferry::model
