// Rule matching (S5, S18): prefix filters, tag filters, rules without filters, one destination
// per push.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "reconcilers/model/rules.hpp"

namespace ferry::model {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const RegistryKey kWest{"111111111111", "us-west-2"};
const RegistryKey kEu{"222222222222", "eu-west-1"};
const RegistryKey kAp{"333333333333", "ap-south-1"};

ReplicationRule rule(std::vector<RegistryKey> d, std::vector<std::string> filters) {
  ReplicationRule r;
  r.destinations = std::move(d);
  for (auto& f : filters) r.repository_filters.push_back({f, "PREFIX_MATCH"});
  return r;
}

TEST(Rules, PrefixFilterMatchesOnlyPrefixes) {
  auto r = rule({kWest}, {"prod"});
  EXPECT_TRUE(rule_applies(r, "prod"));
  EXPECT_TRUE(rule_applies(r, "prod/app"));
  EXPECT_TRUE(rule_applies(r, "production"));
  EXPECT_FALSE(rule_applies(r, "dev/prod"));
  EXPECT_FALSE(rule_applies(r, "pro"));
}

TEST(Rules, AnyFilterOfARuleIsEnough) {
  auto r = rule({kWest}, {"prod", "stage"});
  EXPECT_TRUE(rule_applies(r, "stage/app"));
  EXPECT_FALSE(rule_applies(r, "dev/app"));
}

TEST(Rules, RuleWithoutFiltersAppliesToAll) {
  EXPECT_TRUE(rule_applies(rule({kWest}, {}), "anything/at/all"));
}

TEST(Rules, DestinationsAreUniqueAcrossRulesInOrder) {
  ReplicationConfigSpec spec;
  spec.rules = {rule({kWest, kEu}, {"prod"}), rule({kEu, kAp}, {"prod/app"}), rule({kAp}, {"dev"})};
  EXPECT_THAT(destinations_for(spec, "prod/app", "latest"), ElementsAre(kWest, kEu, kAp));
  EXPECT_THAT(destinations_for(spec, "prod/other", "latest"), ElementsAre(kWest, kEu));
  EXPECT_THAT(destinations_for(spec, "dev/x", "latest"), ElementsAre(kAp));
  EXPECT_THAT(destinations_for(spec, "test/x", "latest"), IsEmpty());
  EXPECT_THAT(unique_destinations(spec), ElementsAre(kWest, kEu, kAp));
}

TEST(Rules, NoRulesNoDestinations) {
  EXPECT_THAT(destinations_for(ReplicationConfigSpec{}, "prod", "latest"), IsEmpty());
}

ReplicationRule tag_rule(std::vector<RegistryKey> d, std::vector<std::string> repos,
                         std::vector<std::string> tags) {
  ReplicationRule r = rule(std::move(d), std::move(repos));
  for (auto& t : tags) r.tag_filters.push_back({t, "WILDCARD"});
  return r;
}

struct WildcardCase {
  const char* filter;
  const char* tag;
  bool match;
};

TEST(TagFilters, WildcardMatchesWholeTagCaseSensitively) {
  const WildcardCase cases[] = {
      {"*", "latest", true},         {"*", "v1", true},
      {"*", "", false},              // a push by digest only matches no filter
      {"v*", "v1", true},            {"v*", "v", true},          {"v*", "v1.2.3-rc1", true},
      {"v*", "latest", false},       {"v*", "V1", false},        {"v*", "av1", false},
      {"*-rc*", "1.0-rc1", true},    {"*-rc*", "-rc", true},     {"*-rc*", "1.0-rc", true},
      {"*-rc*", "1.0", false},       {"*-rc*", "1.0-RC1", false},
      {"latest", "latest", true},    {"latest", "latest2", false}, {"latest", "xlatest", false},
      {"latest", "Latest", false},   {"latest", "", false},
      {"a*b*c", "abc", true},        {"a*b*c", "aXbYc", true},   {"a*b*c", "abcb", false},
      {"**", "x", true},             {"*.*", "1.2", true},       {"*.*", "12", false},
      {"v1.0", "v1x0", false},       // `.` is literal
  };
  for (const auto& c : cases) {
    EXPECT_EQ(wildcard_match(c.filter, c.tag), c.match) << c.filter << " vs \"" << c.tag << "\"";
  }
}

TEST(TagFilters, RuleWithoutTagFiltersAppliesToEveryPush) {
  auto r = rule({kWest}, {"prod"});
  EXPECT_TRUE(rule_applies(r, "prod/app", "latest"));
  EXPECT_TRUE(rule_applies(r, "prod/app", ""));  // by digest only, exactly as ECR
  EXPECT_FALSE(rule_applies(r, "dev/app", "latest"));
}

TEST(TagFilters, RepositoryAndTagFiltersBothHold) {
  auto r = tag_rule({kWest}, {"prod"}, {"v*", "stable"});
  EXPECT_TRUE(rule_applies(r, "prod/app", "v2"));
  EXPECT_TRUE(rule_applies(r, "prod/app", "stable"));
  EXPECT_FALSE(rule_applies(r, "prod/app", "latest"));
  EXPECT_FALSE(rule_applies(r, "prod/app", ""));
  EXPECT_FALSE(rule_applies(r, "dev/app", "v2"));
  auto any_repo = tag_rule({kWest}, {}, {"v*"});
  EXPECT_TRUE(rule_applies(any_repo, "x/y", "v1"));
  EXPECT_FALSE(rule_applies(any_repo, "x/y", "latest"));
}

TEST(TagFilters, DestinationIsWrittenOnceIfAnyRuleReachingItApplies) {
  ReplicationConfigSpec spec;
  spec.rules = {tag_rule({kWest, kEu}, {"prod"}, {"v*"}), tag_rule({kEu, kAp}, {}, {"*-rc*"}),
                rule({kAp}, {"dev"})};
  EXPECT_THAT(destinations_for(spec, "prod/app", "v1"), ElementsAre(kWest, kEu));
  EXPECT_THAT(destinations_for(spec, "prod/app", "v1-rc1"), ElementsAre(kWest, kEu, kAp));
  EXPECT_THAT(destinations_for(spec, "prod/app", "latest"), IsEmpty());
  EXPECT_THAT(destinations_for(spec, "prod/app", ""), IsEmpty());
  EXPECT_THAT(destinations_for(spec, "dev/app", ""), ElementsAre(kAp));
  EXPECT_THAT(destinations_for(spec, "dev/app", "2.0-rc"), ElementsAre(kEu, kAp));
}

}  // namespace
}  // namespace ferry::model
