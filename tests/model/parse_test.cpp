// Parsing: YAML/JSON documents, unknown fields, types, defaults.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "reconcilers/model/parse.hpp"
#include "test_util.hpp"

namespace ferry::model {
namespace {

using ::testing::ElementsAre;
using testing::errors_of;
using testing::parse_one;

TEST(Parse, RegistryDefaultsAreApplied) {
  auto p = parse_one(R"(
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: r}
spec: {registryId: "111111111111", region: cn-north-1, endpoint: "http://127.0.0.1:5000"}
)");
  ASSERT_TRUE(p.resource);
  const auto& r = std::get<Registry>(*p.resource);
  EXPECT_EQ(r.spec.partition, Partition::AwsCn);
  EXPECT_FALSE(r.spec.partition_explicit);
  EXPECT_TRUE(r.spec.enabled);
  EXPECT_EQ(r.spec.type, RegistryType::Oci);
  EXPECT_EQ(r.spec.poll_interval, std::chrono::seconds(30));
  EXPECT_FALSE(r.spec.credentials_secret_ref.has_value());
}

TEST(Parse, RegistryExplicitFields) {
  auto p = parse_one(R"(
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: r}
spec:
  registryId: "111111111111"
  region: us-east-1
  partition: aws-us-gov
  endpoint: https://reg.example.com
  enabled: false
  pollInterval: 1m30s
  credentialsSecretRef: {namespace: ferry-system, name: creds}
  tls: {insecureSkipVerify: true, caSecretRef: {namespace: ferry-system, name: ca}}
  notifications: {tokenSecretRef: {namespace: ferry-system, name: tok}}
)");
  ASSERT_TRUE(p.resource);
  const auto& r = std::get<Registry>(*p.resource);
  EXPECT_EQ(r.spec.partition, Partition::AwsUsGov);
  EXPECT_TRUE(r.spec.partition_explicit);
  EXPECT_FALSE(r.spec.enabled);
  EXPECT_EQ(r.spec.poll_interval, std::chrono::seconds(90));
  EXPECT_EQ(r.spec.credentials_secret_ref, (SecretRef{"ferry-system", "creds"}));
  EXPECT_TRUE(r.spec.tls_insecure_skip_verify);
  EXPECT_EQ(r.spec.tls_ca_secret_ref, (SecretRef{"ferry-system", "ca"}));
  EXPECT_EQ(r.spec.notifications_token_secret_ref, (SecretRef{"ferry-system", "tok"}));
}

TEST(Parse, UnknownFieldsAreRejectedWithTheirPath) {
  EXPECT_THAT(errors_of(R"(
apiVersion: ferry.dev/v1alpha1
kind: ReplicationConfig
metadata: {name: c, colour: red}
spec:
  registryId: "111111111111"
  region: us-east-1
  rules:
  - destinations: [{region: us-west-2, registryId: "111111111111", zone: a}]
    repositoryFilters: [{filter: prod, filterType: PREFIX_MATCH, negate: true}]
  extra: 1
)"),
              ElementsAre("metadata.colour: unknown field",
                          "spec.rules[0].destinations[0].zone: unknown field",
                          "spec.rules[0].repositoryFilters[0].negate: unknown field",
                          "spec.extra: unknown field"));
}

TEST(Parse, TypesAndRequiredFieldsAreNamed) {
  EXPECT_THAT(errors_of(R"(
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: r}
spec: {registryId: 111111111111, region: us-east-1, enabled: "yes"}
)"),
              ElementsAre("spec.registryId: must be a string, got an integer (quote it)",
                          "spec.endpoint: required",
                          "spec.enabled: must be true or false, got a string"));
}

TEST(Parse, MissingNameKindAndWrongApiVersion) {
  EXPECT_THAT(errors_of("apiVersion: ferry.dev/v1alpha1\nkind: Registry\nspec: {}\n"),
              ::testing::Contains("metadata.name: required"));
  EXPECT_THAT(errors_of("apiVersion: ferry.dev/v1\nkind: Registry\nmetadata: {name: x}\nspec: {}\n"),
              ElementsAre("apiVersion: \"ferry.dev/v1\" is not served; use ferry.dev/v1alpha1"));
  EXPECT_THAT(errors_of("apiVersion: ferry.dev/v1alpha1\nkind: Mirror\nmetadata: {name: x}\n"),
              ElementsAre(::testing::StartsWith("kind: \"Mirror\" is not a ferry.dev kind")));
}

TEST(Parse, OtherApiGroupsAreSkippedNotRejected) {
  for (const char* doc : {"apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: x}\nspec: {a: 1}\n",
                          "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n"}) {
    auto p = parse_one(doc);
    EXPECT_TRUE(p.foreign) << doc;
    EXPECT_TRUE(p.errors.empty()) << doc;
    EXPECT_FALSE(p.resource) << doc;
  }
  // A misspelt Ferry version is Ferry's business.
  EXPECT_FALSE(parse_one("apiVersion: ferry.dev/v1alph1\nkind: Registry\nmetadata: {name: x}\n").foreign);
  EXPECT_FALSE(parse_one("apiVersion: v2\nkind: Secret\nmetadata: {name: x}\n").foreign);
}

TEST(Parse, FilterTypeDefaultsToPrefixMatch) {
  auto p = parse_one(R"(
apiVersion: ferry.dev/v1alpha1
kind: ReplicationConfig
metadata: {name: c}
spec:
  registryId: "111111111111"
  region: us-east-1
  rules: [{destinations: [{region: us-west-2, registryId: "111111111111"}], repositoryFilters: [{filter: prod}]}]
)");
  ASSERT_TRUE(p.resource);
  const auto& rc = std::get<ReplicationConfig>(*p.resource);
  ASSERT_EQ(rc.spec.rules.size(), 1u);
  EXPECT_EQ(rc.spec.rules[0].repository_filters[0].filter_type, "PREFIX_MATCH");
}

TEST(Parse, TagFilterTypeDefaultsToWildcard) {
  auto p = parse_one(R"(
apiVersion: ferry.dev/v1alpha1
kind: ReplicationConfig
metadata: {name: c}
spec:
  registryId: "111111111111"
  region: us-east-1
  rules: [{destinations: [{region: us-west-2, registryId: "111111111111"}], tagFilters: [{filter: "v*"}, {filter: latest, filterType: WILDCARD}]}]
)");
  ASSERT_TRUE(p.resource);
  const auto& rc = std::get<ReplicationConfig>(*p.resource);
  ASSERT_EQ(rc.spec.rules[0].tag_filters.size(), 2u);
  EXPECT_EQ(rc.spec.rules[0].tag_filters[0].filter, "v*");
  EXPECT_EQ(rc.spec.rules[0].tag_filters[0].filter_type, "WILDCARD");
  EXPECT_EQ(rc.spec.rules[0].tag_filters[1].filter, "latest");
  EXPECT_TRUE(rc.spec.rules[0].repository_filters.empty());
}

TEST(Parse, MultiDocumentYamlAndListKind) {
  auto docs = load_documents(R"(
---
apiVersion: v1
kind: List
items:
- {apiVersion: ferry.dev/v1alpha1, kind: Registry, metadata: {name: a}}
- {apiVersion: ferry.dev/v1alpha1, kind: Registry, metadata: {name: b}}
---
---
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: c}
)",
                             Format::Yaml);
  ASSERT_TRUE(docs);
  EXPECT_EQ(docs->size(), 3u);
}

TEST(Parse, YamlSyntaxErrorHasLineAndColumn) {
  auto docs = load_documents("kind: Registry\nmetadata:\n  name: [a\n", Format::Yaml);
  ASSERT_FALSE(docs);
  EXPECT_EQ(docs.error().line, 4);
  EXPECT_GT(docs.error().column, 0);
}

// Found by tests/fuzz (fuzz_resource): yaml-cpp 0.7's LoadAll loops forever, adding a null
// document each turn, on a stray ',' (jbeder/yaml-cpp#1040); it is a syntax error here.
TEST(Parse, YamlThatStopsTheParserIsASyntaxError) {
  for (std::string text : {", a\n", "kind: Registry\n---\n, cross-region.yaml)\nb: c\n", ","}) {
    auto docs = load_documents(text, Format::Yaml);
    ASSERT_FALSE(docs) << text;
    EXPECT_EQ(docs.error().message, "unexpected ','") << text;
    EXPECT_GT(docs.error().line, 0) << text;
  }
  auto docs = load_documents("# comment\n---\n---\na: 1\n...\n---\nb: 2\n", Format::Yaml);
  ASSERT_TRUE(docs) << docs.error().message;
  EXPECT_EQ(docs->size(), 2u);
}

// A plain scalar that looks like a float but is out of double's range stays text (as an
// integer out of int64's range does) instead of std::stod's std::out_of_range escaping.
TEST(Parse, YamlFloatsOutOfRangeStayText) {
  auto docs = load_documents("a: 1e999\nb: -1e-999\nc: 1.5e3\n", Format::Yaml);
  ASSERT_TRUE(docs) << docs.error().message;
  const auto& o = docs->front().as_object();
  EXPECT_EQ(o.at("a"), "1e999");
  EXPECT_EQ(o.at("b"), "-1e-999");
  EXPECT_EQ(o.at("c"), 1500.0);
}

TEST(Parse, JsonDocumentsAndSyntaxErrors) {
  auto docs = load_documents(R"({"apiVersion":"ferry.dev/v1alpha1","kind":"Registry","metadata":{"name":"a"},
"spec":{"registryId":"111111111111","region":"us-east-1","endpoint":"http://h:1"}})",
                             Format::Json);
  ASSERT_TRUE(docs);
  ASSERT_EQ(docs->size(), 1u);
  EXPECT_TRUE(parse_resource(docs->front()).resource.has_value());

  auto bad = load_documents("{\"a\": 1,\n \"b\": }", Format::Json);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().line, 2);
  EXPECT_EQ(bad.error().column, 7);
}

TEST(Parse, QuotedScalarsStayStrings) {
  auto docs = load_documents("a: 'true'\nb: true\nc: \"12\"\nd: 12\ne: ~\n", Format::Yaml);
  ASSERT_TRUE(docs);
  const auto& o = docs->front().as_object();
  EXPECT_TRUE(o.at("a").is_string());
  EXPECT_TRUE(o.at("b").is_bool());
  EXPECT_TRUE(o.at("c").is_string());
  EXPECT_TRUE(o.at("d").is_int64());
  EXPECT_TRUE(o.at("e").is_null());
}

TEST(Parse, SecretsOfBothShapes) {
  auto docker = parse_one(R"(
apiVersion: v1
kind: Secret
metadata: {name: d, namespace: ferry-system}
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: eyJhdXRocyI6eyIxMjcuMC4wLjE6NTAwMCI6eyJhdXRoIjoiZFhObGNqcHdZWE56In19fQ==
)");
  ASSERT_TRUE(docker.resource);
  const auto& s = std::get<Secret>(*docker.resource);
  EXPECT_EQ(s.data.at(".dockerconfigjson"), R"({"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"}}})");

  auto bad = errors_of(R"(
apiVersion: v1
kind: Secret
metadata: {name: d, namespace: ferry-system}
data: {password: "not base64!"}
)");
  EXPECT_THAT(bad, ElementsAre("data.password: is not valid base64"));
}

TEST(Parse, Durations) {
  EXPECT_EQ(parse_duration("0"), std::chrono::milliseconds(0));
  EXPECT_EQ(parse_duration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(parse_duration("1h2m3s"), std::chrono::milliseconds(3'723'000));
  EXPECT_FALSE(parse_duration("10"));
  EXPECT_FALSE(parse_duration("1d"));
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("-1s"));
}

// Found by tests/fuzz (fuzz_duration): each term fitted, their sum overflowed int64 (UB).
TEST(Parse, DurationsBeyondInt64MillisecondsAreRefused) {
  EXPECT_FALSE(parse_duration("000000000002000000000000h6h3h000000800000000000h0006h3h"));
  EXPECT_FALSE(parse_duration("2562047788015h2562047788015h"));
  EXPECT_FALSE(parse_duration("9223372036854775807ms1ms"));
  EXPECT_EQ(parse_duration("9223372036854775807ms"), std::chrono::milliseconds(INT64_MAX));
}

TEST(Parse, ByteQuantities) {
  EXPECT_EQ(parse_byte_quantity("0"), 0u);
  EXPECT_EQ(parse_byte_quantity("1048576"), 1u << 20);
  EXPECT_EQ(parse_byte_quantity("10Mi"), 10u << 20);
  EXPECT_EQ(parse_byte_quantity("100M"), 100'000'000u);
  EXPECT_EQ(parse_byte_quantity("2Gi"), 2ull << 30);
  EXPECT_EQ(parse_byte_quantity("1k"), 1000u);
  EXPECT_EQ(parse_byte_quantity("8388608Ti"), 1ull << 63);
  for (const char* bad : {"", "Mi", "1.5Mi", "-1", "+1", "1MB", "1m", "1 Mi", "8388609Ti",
                          "99999999999999999999"}) {
    EXPECT_FALSE(parse_byte_quantity(bad)) << bad;
  }
}

TEST(Parse, RegistryLimits) {
  auto p = parse_one(R"(
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: r}
spec:
  registryId: "111111111111"
  region: us-east-1
  endpoint: http://127.0.0.1:5000
  limits: {requestsPerSecond: 2.5, bytesPerSecond: 10Mi, maxConcurrentCopies: 3}
)");
  ASSERT_TRUE(p.resource);
  const auto& l = std::get<Registry>(*p.resource).spec.limits;
  EXPECT_EQ(l.requests_per_second, 2.5);
  EXPECT_EQ(l.bytes_per_second, 10u << 20);
  EXPECT_EQ(l.max_concurrent_copies, 3);
  auto plain = parse_one(R"(
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: r}
spec: {registryId: "111111111111", region: us-east-1, endpoint: "http://x", limits: {bytesPerSecond: 4096}}
)");
  ASSERT_TRUE(plain.resource);
  EXPECT_EQ(std::get<Registry>(*plain.resource).spec.limits.bytes_per_second, 4096u);
  EXPECT_EQ(std::get<Registry>(*plain.resource).spec.limits.requests_per_second, 0);
}

TEST(Parse, ImageReplicationWithStatus) {
  auto p = parse_one(R"(
apiVersion: ferry.dev/v1alpha1
kind: ImageReplication
metadata: {name: ir, generation: 2}
spec:
  source: {registryId: "111111111111", region: us-east-1, repositoryName: prod/app,
           imageDigest: "sha256:0000000000000000000000000000000000000000000000000000000000000000",
           imageTag: v1, pushedAt: "2026-11-28T14:00:00Z"}
  destinations: [{region: us-west-2, registryId: "111111111111"}]
status:
  observedGeneration: 2
  replicationStatuses:
  - {region: us-west-2, registryId: "111111111111", status: FAILED,
     failureCode: DESTINATION_REGISTRY_ACCESS_DENIED, tagged: false}
)");
  ASSERT_TRUE(p.resource) << testing::join_lines([&] {
    std::vector<std::string> v;
    for (auto& e : p.errors) v.push_back(to_string(e));
    return v;
  }());
  const auto& ir = std::get<ImageReplication>(*p.resource);
  EXPECT_EQ(ir.metadata.generation, 2);
  ASSERT_EQ(ir.status.replication_statuses.size(), 1u);
  EXPECT_EQ(ir.status.replication_statuses[0].failure_code, "DESTINATION_REGISTRY_ACCESS_DENIED");
  EXPECT_FALSE(ir.status.replication_statuses[0].tagged);
}

}  // namespace
}  // namespace ferry::model
