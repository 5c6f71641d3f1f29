// Rule matching (S5): prefix filters, rules without filters, one destination per push.
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
  EXPECT_THAT(destinations_for(spec, "prod/app"), ElementsAre(kWest, kEu, kAp));
  EXPECT_THAT(destinations_for(spec, "prod/other"), ElementsAre(kWest, kEu));
  EXPECT_THAT(destinations_for(spec, "dev/x"), ElementsAre(kAp));
  EXPECT_THAT(destinations_for(spec, "test/x"), IsEmpty());
  EXPECT_THAT(unique_destinations(spec), ElementsAre(kWest, kEu, kAp));
}

TEST(Rules, NoRulesNoDestinations) {
  EXPECT_THAT(destinations_for(ReplicationConfigSpec{}, "prod"), IsEmpty());
}

}  // namespace
}  // namespace ferry::model
