// Validation: SPEC §1, S6, S7 and S18 boundaries, each error naming its field and limit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "reconcilers/model/validate.hpp"
#include "test_util.hpp"

namespace ferry::model {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

ReplicationConfig config(std::string id = "111111111111", std::string region = "us-east-1") {
  ReplicationConfig rc;
  rc.metadata.name = "c";
  rc.spec.registry_id = std::move(id);
  rc.spec.region = std::move(region);
  return rc;
}

ReplicationRule rule_to(std::vector<RegistryKey> dests, std::vector<std::string> filters = {}) {
  ReplicationRule r;
  r.destinations = std::move(dests);
  for (auto& f : filters) r.repository_filters.push_back({f, "PREFIX_MATCH"});
  return r;
}

RegistryKey account_dest(int i, std::string region = "us-west-2") {
  std::string id = std::to_string(200000000000LL + i);
  return {id, std::move(region)};
}

std::vector<std::string> messages(const FieldErrors& errors) {
  std::vector<std::string> out;
  for (const auto& e : errors) out.push_back(to_string(e));
  return out;
}

TEST(ValidateReplicationConfig, TenRulesPassElevenFail) {
  auto rc = config();
  for (int i = 0; i < 10; ++i) rc.spec.rules.push_back(rule_to({account_dest(i)}));
  EXPECT_THAT(messages(validate(rc)), IsEmpty());
  rc.spec.rules.push_back(rule_to({account_dest(0)}));
  EXPECT_THAT(messages(validate(rc)), ElementsAre("spec.rules: 11 rules, at most 10 allowed"));
}

TEST(ValidateReplicationConfig, TwentyFiveUniqueDestinationsPassTwentySixFail) {
  auto rc = config();
  std::vector<RegistryKey> a, b;
  for (int i = 0; i < 13; ++i) a.push_back(account_dest(i));
  for (int i = 13; i < 25; ++i) b.push_back(account_dest(i));
  rc.spec.rules = {rule_to(a), rule_to(b)};
  EXPECT_THAT(messages(validate(rc)), IsEmpty());
  rc.spec.rules[1].destinations.push_back(account_dest(25));
  EXPECT_THAT(messages(validate(rc)),
              ElementsAre("spec.rules: 26 unique destinations across all rules, at most 25 allowed"));
}

TEST(ValidateReplicationConfig, ThirtyDestinationsOfWhichFiveRepeatPass) {
  auto rc = config();
  std::vector<RegistryKey> a, b;
  for (int i = 0; i < 15; ++i) a.push_back(account_dest(i));
  for (int i = 10; i < 25; ++i) b.push_back(account_dest(i));  // 10..14 repeat
  rc.spec.rules = {rule_to(a), rule_to(b)};
  ASSERT_EQ(a.size() + b.size(), 30u);
  EXPECT_THAT(messages(validate(rc)), IsEmpty());
}

TEST(ValidateReplicationConfig, HundredFiltersPassHundredOneFail) {
  auto rc = config();
  std::vector<std::string> filters;
  for (int i = 0; i < 100; ++i) filters.push_back("team" + std::to_string(i));
  rc.spec.rules = {rule_to({account_dest(0)}, filters)};
  EXPECT_THAT(messages(validate(rc)), IsEmpty());
  rc.spec.rules[0].repository_filters.push_back({"team100", "PREFIX_MATCH"});
  EXPECT_THAT(messages(validate(rc)),
              ElementsAre("spec.rules[0].repositoryFilters: 101 filters, at most 100 allowed"));
}

struct FilterCase {
  std::string filter;
  std::string filter_type;
  std::string expected;  // empty: valid
};

class FilterValidation : public ::testing::TestWithParam<FilterCase> {};

TEST_P(FilterValidation, NamesTheFieldAndLimit) {
  auto rc = config();
  rc.spec.rules = {rule_to({account_dest(0)})};
  rc.spec.rules[0].repository_filters.push_back({GetParam().filter, GetParam().filter_type});
  auto errors = messages(validate(rc));
  if (GetParam().expected.empty()) {
    EXPECT_THAT(errors, IsEmpty());
  } else {
    EXPECT_THAT(errors, ElementsAre(GetParam().expected));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Boundaries, FilterValidation,
    ::testing::Values(
        FilterCase{"ab", "PREFIX_MATCH", ""},
        FilterCase{std::string(256, 'a'), "PREFIX_MATCH", ""},
        FilterCase{"prod/team-a/", "PREFIX_MATCH", ""},
        FilterCase{"a", "PREFIX_MATCH",
                   "spec.rules[0].repositoryFilters[0].filter: \"a\" is 1 characters long, must be 2 to 256"},
        FilterCase{std::string(257, 'a'), "PREFIX_MATCH",
                   "spec.rules[0].repositoryFilters[0].filter: \"" + std::string(257, 'a') +
                       "\" is 257 characters long, must be 2 to 256"},
        FilterCase{"Prod", "PREFIX_MATCH",
                   "spec.rules[0].repositoryFilters[0].filter: \"Prod\" does not match "
                   "^(?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*$ (lower-case "
                   "repository name prefix)"},
        FilterCase{"prod", "SUFFIX_MATCH",
                   "spec.rules[0].repositoryFilters[0].filterType: \"SUFFIX_MATCH\" is not "
                   "supported; only PREFIX_MATCH"}));

TEST(ValidateReplicationConfig, HundredTagFiltersPassHundredOneFail) {
  auto rc = config();
  rc.spec.rules = {rule_to({account_dest(0)})};
  for (int i = 0; i < 100; ++i) rc.spec.rules[0].tag_filters.push_back({"v" + std::to_string(i) + "*", "WILDCARD"});
  EXPECT_THAT(messages(validate(rc)), IsEmpty());
  rc.spec.rules[0].tag_filters.push_back({"v100*", "WILDCARD"});
  EXPECT_THAT(messages(validate(rc)),
              ElementsAre("spec.rules[0].tagFilters: 101 filters, at most 100 allowed"));
}

class TagFilterValidation : public ::testing::TestWithParam<FilterCase> {};

TEST_P(TagFilterValidation, NamesTheFieldAndLimit) {
  auto rc = config();
  rc.spec.rules = {rule_to({account_dest(0)}, {"prod"})};
  rc.spec.rules[0].tag_filters = {{"v*", "WILDCARD"}, {"latest", "WILDCARD"}};
  rc.spec.rules[0].tag_filters.push_back({GetParam().filter, GetParam().filter_type});
  auto errors = messages(validate(rc));
  if (GetParam().expected.empty()) {
    EXPECT_THAT(errors, IsEmpty());
  } else {
    EXPECT_THAT(errors, ElementsAre(GetParam().expected));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Boundaries, TagFilterValidation,
    ::testing::Values(
        FilterCase{"*", "WILDCARD", ""},
        FilterCase{"v", "WILDCARD", ""},
        FilterCase{"*-rc*", "WILDCARD", ""},
        FilterCase{"Release_1.0-*", "WILDCARD", ""},
        FilterCase{std::string(128, 'a'), "WILDCARD", ""},
        FilterCase{"", "WILDCARD",
                   "spec.rules[0].tagFilters[2].filter: \"\" is 0 characters long, must be 1 to 128"},
        FilterCase{std::string(129, 'a'), "WILDCARD",
                   "spec.rules[0].tagFilters[2].filter: \"" + std::string(129, 'a') +
                       "\" is 129 characters long, must be 1 to 128"},
        FilterCase{"v1/x", "WILDCARD",
                   "spec.rules[0].tagFilters[2].filter: \"v1/x\" does not match "
                   "^[0-9a-zA-Z._*-]{1,128}$ (tag pattern, * matches any run of characters)"},
        FilterCase{"v?", "WILDCARD",
                   "spec.rules[0].tagFilters[2].filter: \"v?\" does not match "
                   "^[0-9a-zA-Z._*-]{1,128}$ (tag pattern, * matches any run of characters)"},
        FilterCase{"v*", "PREFIX_MATCH",
                   "spec.rules[0].tagFilters[2].filterType: \"PREFIX_MATCH\" is not supported; "
                   "only WILDCARD"},
        FilterCase{"v*", "REGEX",
                   "spec.rules[0].tagFilters[2].filterType: \"REGEX\" is not supported; only "
                   "WILDCARD"}));

TEST(ValidateReplicationConfig, CrossPartitionIsRejected) {
  auto rc = config("111111111111", "us-west-2");
  rc.spec.rules = {rule_to({{"111111111111", "cn-north-1"}})};
  EXPECT_THAT(messages(validate(rc)),
              ElementsAre("spec.rules[0].destinations[0].region: cn-north-1 is in partition aws-cn, "
                          "the source us-west-2 is in aws; replication cannot cross partitions"));
}

TEST(ValidateReplicationConfig, GovCloudToGovCloudPasses) {
  auto rc = config("111111111111", "us-gov-west-1");
  rc.spec.rules = {rule_to({{"111111111111", "us-gov-east-1"}})};
  EXPECT_THAT(messages(validate(rc)), IsEmpty());
}

TEST(ValidateReplicationConfig, CatalogPartitionOverrideCounts) {
  auto rc = config("111111111111", "us-east-1");
  rc.spec.rules = {rule_to({{"111111111111", "local-1"}})};
  EXPECT_THAT(messages(validate(rc)), IsEmpty());
  Registry reg;
  reg.spec.registry_id = "111111111111";
  reg.spec.region = "local-1";
  reg.spec.partition = Partition::AwsCn;
  reg.spec.partition_explicit = true;
  RegistryCatalog catalog;
  catalog.add(reg);
  EXPECT_THAT(messages(validate(rc, catalog)),
              ElementsAre(::testing::HasSubstr("replication cannot cross partitions")));
}

TEST(ValidateReplicationConfig, DestinationEqualToSourceIsRejected) {
  auto rc = config();
  rc.spec.rules = {rule_to({{"111111111111", "us-east-1"}})};
  EXPECT_THAT(messages(validate(rc)),
              ElementsAre("spec.rules[0].destinations[0]: 111111111111/us-east-1 is the source "
                          "registry; a registry cannot replicate to itself"));
}

TEST(ValidateReplicationConfig, RegionAndRegistryIdPatterns) {
  auto rc = config("1234", "US-EAST-1");
  rc.spec.rules = {rule_to({{"22222222222a", "x"}})};
  EXPECT_THAT(messages(validate(rc)),
              ElementsAre("spec.registryId: \"1234\" is not a registry id; must be 12 digits",
                          "spec.region: \"US-EAST-1\" is not a region; must match ^[0-9a-z-]{2,25}$",
                          "spec.rules[0].destinations[0].registryId: \"22222222222a\" is not a "
                          "registry id; must be 12 digits",
                          "spec.rules[0].destinations[0].region: \"x\" is not a region; must match "
                          "^[0-9a-z-]{2,25}$"));
}

TEST(ValidateReplicationConfig, RuleWithoutDestinations) {
  auto rc = config();
  rc.spec.rules = {rule_to({})};
  EXPECT_THAT(messages(validate(rc)),
              ElementsAre("spec.rules[0].destinations: at least 1 destination required"));
}

TEST(ValidateRegistry, EndpointAndType) {
  EXPECT_THAT(testing::errors_of(R"(
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: r}
spec: {registryId: "111111111111", region: us-east-1, endpoint: "ftp://x", type: ecr, pollInterval: 10ms,
       ecr: {apiEndpoint: "api.ecr", eventsQueueUrl: "sqs/111111111111/q"}}
)"),
              ElementsAre("spec.endpoint: \"ftp://x\" is not an http:// or https:// URL with a host",
                          "spec.ecr.apiEndpoint: \"api.ecr\" is not an http:// or https:// URL with a host",
                          "spec.ecr.eventsQueueUrl: \"sqs/111111111111/q\" is not an http:// or https:// URL with a host",
                          "spec.pollInterval: must be 0 (disabled) or at least 1s"));
  // Only an ECR registry may leave out its endpoint, and only it has ECR settings.
  EXPECT_THAT(testing::errors_of(R"(
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: r}
spec: {registryId: "111111111111", region: us-east-1, ecr: {apiEndpoint: "http://127.0.0.1:5000"}}
)"),
              ElementsAre("spec.endpoint: required", "spec.ecr: only allowed with type: ecr"));
  auto ecr = testing::parse_one(R"(
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: r}
spec: {registryId: "111111111111", region: cn-north-1, type: ecr}
)");
  ASSERT_TRUE(ecr.resource);
  EXPECT_EQ(std::get<Registry>(*ecr.resource).spec.endpoint, "https://111111111111.dkr.ecr.cn-north-1.amazonaws.com.cn");
  EXPECT_THAT(validate(*ecr.resource), IsEmpty());
}

TEST(ValidateRegistry, Limits) {
  EXPECT_THAT(testing::errors_of(R"(
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: r}
spec: {registryId: "111111111111", region: us-east-1, endpoint: "http://x",
       limits: {requestsPerSecond: 0.01, bytesPerSecond: 100, maxConcurrentCopies: -1}}
)"),
              ElementsAre("spec.limits.requestsPerSecond: must be between 0.1 and 100000",
                          "spec.limits.bytesPerSecond: must be at least 1Ki (1024 bytes per second); slower uploads time out",
                          "spec.limits.maxConcurrentCopies: must be between 1 and 1000 (absent: no limit)"));
  EXPECT_THAT(testing::errors_of(R"(
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: r}
spec: {registryId: "111111111111", region: us-east-1, endpoint: "http://x",
       limits: {requestsPerSecond: fast, bytesPerSecond: 1.5Mi, maxConcurrentCopies: 2.5, burst: 3}}
)"),
              ElementsAre("spec.limits.requestsPerSecond: must be a number, got a string",
                          "spec.limits.bytesPerSecond: \"1.5Mi\" is not a byte count; use e.g. 10485760, 10Mi or 100M",
                          "spec.limits.maxConcurrentCopies: must be an integer, got a number",
                          "spec.limits.burst: unknown field"));
}

TEST(ValidateRepository, NamesAndSettings) {
  EXPECT_THAT(testing::errors_of(R"(
apiVersion: ferry.dev/v1alpha1
kind: Repository
metadata: {name: r}
spec:
  registryId: "111111111111"
  region: us-east-1
  repositoryName: ../etc/passwd
  imageTagMutability: SOMETIMES
  encryptionConfiguration: {encryptionType: AES256, kmsKey: k}
)"),
              ElementsAre(::testing::StartsWith("spec.repositoryName: \"../etc/passwd\" is not a repository name"),
                          "spec.imageTagMutability: \"SOMETIMES\" must be MUTABLE, IMMUTABLE, "
                          "IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION",
                          "spec.encryptionConfiguration.kmsKey: only allowed with encryptionType KMS"));
}

TEST(ValidateRepository, RepositoryNameGrammar) {
  for (const char* ok : {"app", "prod/app", "a/b/c", "a.b", "a__b", "a--b", "a_b-c.d"}) {
    EXPECT_TRUE(is_valid_repository_name(ok)) << ok;
  }
  for (const char* bad : {"", "App", "/app", "app/", "a//b", "..", "a/../b", "a..b", "a___b", "-a",
                          "a b", "a:b"}) {
    EXPECT_FALSE(is_valid_repository_name(bad)) << bad;
  }
  EXPECT_TRUE(is_valid_repository_name(std::string(256, 'a')));
  EXPECT_FALSE(is_valid_repository_name(std::string(257, 'a')));
}

TEST(ValidateSet, DuplicatesAcrossTheSet) {
  std::vector<Resource> set;
  auto a = config();
  a.metadata.name = "a";
  auto b = config();
  b.metadata.name = "b";
  auto a2 = config("222222222222");
  a2.metadata.name = "a";
  set = {a, b, a2};
  auto problems = validate_set(set);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].index, 1u);
  EXPECT_EQ(problems[0].other, 0u);
  EXPECT_EQ(to_string(problems[0].error),
            "spec: ReplicationConfig/a already covers 111111111111/us-east-1; at most one "
            "ReplicationConfig per source registry");
  EXPECT_EQ(problems[1].index, 2u);
  EXPECT_EQ(to_string(problems[1].error), "metadata.name: ReplicationConfig/a is defined twice");
}

TEST(ValidateSet, SecondRegistryPolicyForOneRegistry) {
  RegistryPolicy p1, p2;
  p1.metadata.name = "p1";
  p2.metadata.name = "p2";
  p1.spec = p2.spec = {"222222222222", "eu-west-1", {}};
  std::vector<Resource> set{p1, p2};
  auto problems = validate_set(set);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0].error.message, ::testing::HasSubstr("at most one RegistryPolicy per destination registry"));
}

TEST(ValidateCreationTemplate, EveryFieldNamedByPath) {
  EXPECT_THAT(testing::errors_of(R"(
apiVersion: ferry.dev/v1alpha1
kind: RepositoryCreationTemplate
metadata: {name: t}
spec:
  registryId: "22222222222"
  region: eu-west-1
  prefix: Prod/
  appliedFor: [REPLICATION, REPLICATION, PUSH]
  imageTagMutability: IMMUTABLE_WITH_EXCLUSION
  imageTagMutabilityExclusionFilters:
  - {filter: "a"}
  - {filter: "b"}
  - {filter: "c"}
  - {filter: "d"}
  - {filter: "e"}
  - {filter: "latest?", filterType: PREFIX_MATCH}
  encryptionConfiguration: {encryptionType: KMS_DSSE}
  resourceTags: [{Key: team, Value: a}, {Key: team, Value: b}]
  lifecyclePolicy: "{not json"
)"),
              ElementsAre("spec.registryId: \"22222222222\" is not a registry id; must be 12 digits",
                          ::testing::StartsWith("spec.prefix: \"Prod/\" is neither ROOT nor a repository namespace"),
                          "spec.appliedFor[1]: \"REPLICATION\" is given twice",
                          "spec.appliedFor[2]: \"PUSH\" must be REPLICATION, PULL_THROUGH_CACHE or CREATE_ON_PUSH",
                          "spec.imageTagMutabilityExclusionFilters: 6 filters, at most 5 allowed",
                          ::testing::StartsWith("spec.imageTagMutabilityExclusionFilters[5].filter: \"latest?\" does "
                                                "not match"),
                          "spec.imageTagMutabilityExclusionFilters[5].filterType: \"PREFIX_MATCH\" is not supported; "
                          "only WILDCARD",
                          "spec.encryptionConfiguration.encryptionType: \"KMS_DSSE\" must be AES256 or KMS",
                          "spec.resourceTags[1].Key: \"team\" is given twice",
                          ::testing::StartsWith("spec.lifecyclePolicy: is a string but not a JSON object")));
}

TEST(ValidateCreationTemplate, ExclusionFiltersOnlyWithTheExclusionModes) {
  const std::string head = R"(
apiVersion: ferry.dev/v1alpha1
kind: RepositoryCreationTemplate
metadata: {name: t}
spec:
  registryId: "222222222222"
  region: eu-west-1
  prefix: ROOT
)";
  EXPECT_THAT(testing::errors_of(head + "  imageTagMutability: MUTABLE_WITH_EXCLUSION\n"),
              ElementsAre("spec.imageTagMutabilityExclusionFilters: required with imageTagMutability "
                          "MUTABLE_WITH_EXCLUSION: 1 to 5 filters"));
  EXPECT_THAT(testing::errors_of(head + "  imageTagMutability: IMMUTABLE\n"
                                        "  imageTagMutabilityExclusionFilters: [{filter: latest}]\n"),
              ElementsAre("spec.imageTagMutabilityExclusionFilters: only allowed with imageTagMutability "
                          "IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION"));
  EXPECT_THAT(testing::errors_of(head + "  imageTagMutability: IMMUTABLE_WITH_EXCLUSION\n"
                                        "  imageTagMutabilityExclusionFilters: [{filter: \"dev-*\"}]\n"
                                        "  repositoryPolicy: {Version: \"2012-10-17\", Statement: []}\n"
                                        "  lifecyclePolicy: '{\"rules\": []}'\n"),
              IsEmpty());
  EXPECT_THAT(testing::errors_of(head + "  unknownThing: 1\n"), ElementsAre("spec.unknownThing: unknown field"));
}

TEST(ValidateSet, OneTemplatePerPrefixAndRegistry) {
  RepositoryCreationTemplate a, b, c;
  a.metadata.name = "a";
  b.metadata.name = "b";
  c.metadata.name = "c";
  a.spec.registry_id = b.spec.registry_id = c.spec.registry_id = "222222222222";
  a.spec.region = b.spec.region = "eu-west-1";
  c.spec.region = "eu-west-2";
  a.spec.prefix = "prod";
  b.spec.prefix = "prod/";
  c.spec.prefix = "prod";
  std::vector<Resource> set{a, b, c};
  auto problems = validate_set(set);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].index, 1u);
  EXPECT_EQ(to_string(problems[0].error),
            "spec.prefix: RepositoryCreationTemplate/a already has prefix prod in 222222222222/eu-west-1; at most "
            "one template per prefix");
}

}  // namespace
}  // namespace ferry::model
