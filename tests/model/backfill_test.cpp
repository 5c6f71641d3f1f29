// S17 backfill decisions: scope through the configuration's rules and the backfill's filters,
// one at a time per (source, destination region), at most 10 per source, the 50 % rule.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "reconcilers/model/backfill.hpp"
#include "test_util.hpp"

namespace ferry::model {
namespace {

using Decision = BackfillAdmission::Decision;

std::vector<Resource> load(const std::string& yaml) { return testing::load_all(yaml); }

const std::string kConfig = R"(---
apiVersion: ferry.dev/v1alpha1
kind: ReplicationConfig
metadata: {name: src}
spec:
  registryId: "111111111111"
  region: us-east-1
  rules:
  - destinations: [{region: us-west-2, registryId: "111111111111"}]
    repositoryFilters: [{filter: prod, filterType: PREFIX_MATCH}]
  - destinations: [{region: us-west-2, registryId: "111111111111"}]
    repositoryFilters: [{filter: tools, filterType: PREFIX_MATCH}]
    tagFilters: [{filter: "v*"}]
  - destinations: [{region: eu-west-1, registryId: "222222222222"}]
)";

ReplicationBackfill backfill(const std::string& name, const std::string& region = "us-west-2",
                             const std::string& account = "111111111111", std::vector<std::string> filters = {},
                             const std::string& created = "2026-12-01T10:00:00Z", const std::string& source_region = "us-east-1") {
  ReplicationBackfill b;
  b.metadata.name = name;
  b.metadata.creation_timestamp = created;
  b.spec.registry_id = "111111111111";
  b.spec.region = source_region;
  b.spec.destination = {account, region};
  for (auto& f : filters) b.spec.repository_filters.push_back({f, "PREFIX_MATCH"});
  return b;
}

TEST(Backfill, ScopeIsTheRulesThatSendToTheDestinationNarrowedByItsFilters) {
  auto resources = load(kConfig);
  ResourceIndex index(resources);
  auto west = backfill("w");
  EXPECT_TRUE(backfill_covers(index, west, "prod/app", "latest"));
  EXPECT_TRUE(backfill_covers(index, west, "tools/lint", "v1.2"));
  EXPECT_FALSE(backfill_covers(index, west, "tools/lint", "nightly"));  // that rule's tag filter (S18)
  EXPECT_FALSE(backfill_covers(index, west, "team/app", "v1"));        // no rule to us-west-2 covers it
  EXPECT_TRUE(backfill_covers_repository(index, west, "tools/lint"));
  EXPECT_FALSE(backfill_covers_repository(index, west, "team/app"));
  auto eu = backfill("e", "eu-west-1", "222222222222");
  EXPECT_TRUE(backfill_covers(index, eu, "team/app", "v1"));
  auto narrowed = backfill("n", "us-west-2", "111111111111", {"prod/pay"});
  EXPECT_TRUE(backfill_covers(index, narrowed, "prod/payments", "v1"));
  EXPECT_FALSE(backfill_covers(index, narrowed, "prod/app", "v1"));
  EXPECT_FALSE(backfill_covers(index, narrowed, "tools/lint", "v1"));
}

TEST(Backfill, ProblemsNameWhatIsMissing) {
  auto resources = load(kConfig);
  ResourceIndex index(resources);
  EXPECT_EQ(backfill_problem(index, backfill("w")), std::nullopt);
  EXPECT_EQ(backfill_problem(index, backfill("x", "ap-south-1")),
            "111111111111/ap-south-1 is not a destination of ReplicationConfig/src");
  EXPECT_EQ(backfill_problem(index, backfill("y", "us-west-2", "111111111111", {}, "", "us-east-2")),
            "no ReplicationConfig for the source registry 111111111111/us-east-2");
}

TEST(Backfill, OneAtATimePerSourceAndDestinationRegionOldestFirst) {
  std::vector<ReplicationBackfill> all{backfill("later", "us-west-2", "111111111111", {}, "2026-12-01T11:00:00Z"),
                                       backfill("first", "us-west-2", "333333333333", {}, "2026-12-01T10:00:00Z"),
                                       backfill("other-region", "eu-west-1", "222222222222", {}, "2026-12-01T12:00:00Z"),
                                       backfill("done", "us-west-2", "111111111111", {}, "2026-12-01T09:00:00Z")};
  auto a = admit_backfills(all, {{"done", "COMPLETE"}});
  EXPECT_EQ(a["first"].decision, Decision::Run);
  EXPECT_EQ(a["other-region"].decision, Decision::Run);
  EXPECT_EQ(a["later"].decision, Decision::Wait);
  EXPECT_EQ(a["later"].message,
            "waiting for ReplicationBackfill/first: one backfill at a time from 111111111111/us-east-1 into region "
            "us-west-2");
  EXPECT_FALSE(a.contains("done"));
  // One already running keeps its place, even against an older one created since.
  all.push_back(backfill("older", "us-west-2", "444444444444", {}, "2026-12-01T08:00:00Z"));
  a = admit_backfills(all, {{"done", "COMPLETE"}, {"later", "IN_PROGRESS"}});
  EXPECT_EQ(a["later"].decision, Decision::Run);
  EXPECT_EQ(a["first"].decision, Decision::Wait);
  EXPECT_EQ(a["older"].decision, Decision::Wait);
}

TEST(Backfill, AtMostTenUnfinishedPerSource) {
  std::vector<ReplicationBackfill> all;
  std::map<std::string, std::string> phases;
  for (int i = 0; i < 12; ++i) {
    all.push_back(backfill("b" + std::to_string(10 + i), "region-" + std::to_string(i), "111111111111", {},
                           "2026-12-01T10:00:" + std::to_string(10 + i) + "Z"));
  }
  all.push_back(backfill("finished", "region-x", "111111111111", {}, "2026-12-01T09:00:00Z"));
  phases["finished"] = "STOPPED";
  auto a = admit_backfills(all, phases);
  EXPECT_EQ(a["b19"].decision, Decision::Run);
  EXPECT_EQ(a["b20"].decision, Decision::Refuse);
  EXPECT_EQ(a["b21"].message, "more than 10 unfinished backfills for the source 111111111111/us-east-1");
}

TEST(Backfill, FailsOnItsOwnWhenHalfOfAtLeastAHundredFailed) {
  EXPECT_FALSE(backfill_failing({.total = 99, .replicated = 0, .skipped = 0, .failed = 99}));
  EXPECT_TRUE(backfill_failing({.total = 300, .replicated = 50, .skipped = 200, .failed = 50}));
  EXPECT_FALSE(backfill_failing({.total = 300, .replicated = 51, .skipped = 200, .failed = 49}));
  EXPECT_FALSE(backfill_failing({.total = 1000, .replicated = 0, .skipped = 990, .failed = 10}));
}

TEST(Backfill, ParsesValidatesAndNamesFieldPaths) {
  EXPECT_THAT(testing::errors_of(R"(
apiVersion: ferry.dev/v1alpha1
kind: ReplicationBackfill
metadata: {name: b}
spec:
  registryId: "111111111111"
  region: us-east-1
  destination: {region: us-east-1, registryId: "111111111111"}
  repositoryFilters: [{filter: "P", filterType: SUFFIX}]
)"),
              ::testing::ElementsAre(::testing::StartsWith("spec.destination: 111111111111/us-east-1 is the source"),
                                     ::testing::StartsWith("spec.repositoryFilters[0].filter: \"P\" is 1 characters"),
                                     "spec.repositoryFilters[0].filterType: \"SUFFIX\" is not supported; only "
                                     "PREFIX_MATCH"));
  EXPECT_THAT(testing::errors_of(R"(
apiVersion: ferry.dev/v1alpha1
kind: ReplicationBackfill
metadata: {name: b}
spec: {registryId: "111111111111", region: us-east-1, stop: "yes"}
)"),
              ::testing::ElementsAre("spec.destination: required", "spec.stop: must be true or false, got a string"));
}

}  // namespace
}  // namespace ferry::model
