// `ferry validate`: exit codes and the exact lines a user sees, on the real binary.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/cli/run_ferry.hpp"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using ferry::cli_test::ferry;

class ValidateCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ferry-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  fs::path dir_;
};

std::string config(const std::string& rules, const std::string& region = "us-east-1") {
  return "apiVersion: ferry.dev/v1alpha1\nkind: ReplicationConfig\nmetadata: {name: cfg}\nspec:\n"
         "  registryId: \"111111111111\"\n  region: " + region + "\n  rules:\n" + rules;
}

TEST(ValidateExamples, ShippedExamplesAreValid) {
  auto r = ferry("validate -f " FERRY_SOURCE_DIR "/examples");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("resources valid"));
}

TEST_F(ValidateCli, ValidFileExitsZero) {
  auto f = write("ok.yaml", config("  - destinations: [{region: us-west-2, registryId: \"111111111111\"}]\n"));
  auto r = ferry("validate -f " + f);
  EXPECT_EQ(r.exit_code, 0) << r.out;
}

TEST_F(ValidateCli, TooManyFiltersNamesPathAndLimit) {
  std::string filters;
  for (int i = 0; i < 101; ++i) filters += "f" + std::to_string(i) + "x, ";
  std::string rules = "  - destinations: [{region: us-west-2, registryId: \"111111111111\"}]\n"
                      "    repositoryFilters: [";
  for (int i = 0; i < 101; ++i) rules += "{filter: team" + std::to_string(i) + "}, ";
  rules += "]\n";
  auto f = write("filters.yaml", config(rules));
  auto r = ferry("validate -f " + f);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, f + ": ReplicationConfig/cfg: spec.rules[0].repositoryFilters: 101 filters, at most 100 allowed\n");
}

TEST_F(ValidateCli, EachInvalidCaseHasItsMessage) {
  struct Case {
    std::string rules;
    std::string region;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"  - destinations: [{region: us-west-2, registryId: \"111111111111\"}]\n"
       "    repositoryFilters: [{filter: a}]\n",
       "us-east-1", "spec.rules[0].repositoryFilters[0].filter: \"a\" is 1 characters long, must be 2 to 256"},
      {"  - destinations: [{region: us-west-2, registryId: \"111111111111\"}]\n"
       "    repositoryFilters: [{filter: Prod}]\n",
       "us-east-1", "spec.rules[0].repositoryFilters[0].filter: \"Prod\" does not match"},
      {"  - destinations: [{region: us-west-2, registryId: \"111111111111\"}]\n"
       "    repositoryFilters: [{filter: prod, filterType: WILDCARD}]\n",
       "us-east-1", "spec.rules[0].repositoryFilters[0].filterType: \"WILDCARD\" is not supported; only PREFIX_MATCH"},
      {"  - destinations: [{region: cn-north-1, registryId: \"111111111111\"}]\n", "us-west-2",
       "spec.rules[0].destinations[0].region: cn-north-1 is in partition aws-cn, the source us-west-2 is in aws; "
       "replication cannot cross partitions"},
      {"  - destinations: [{region: us-east-1, registryId: \"111111111111\"}]\n", "us-east-1",
       "spec.rules[0].destinations[0]: 111111111111/us-east-1 is the source registry"},
  };
  for (const auto& c : cases) {
    auto f = write("case.yaml", config(c.rules, c.region));
    auto r = ferry("validate -f " + f);
    EXPECT_EQ(r.exit_code, 1) << c.message;
    EXPECT_THAT(r.out, HasSubstr(f + ": ReplicationConfig/cfg: " + c.message));
  }
  auto gov = write("gov.yaml", config("  - destinations: [{region: us-gov-east-1, registryId: \"111111111111\"}]\n",
                                      "us-gov-west-1"));
  EXPECT_EQ(ferry("validate -f " + gov).exit_code, 0);
}

TEST_F(ValidateCli, ElevenRulesFail) {
  std::string rules;
  for (int i = 0; i < 11; ++i) rules += "  - destinations: [{region: us-west-2, registryId: \"111111111111\"}]\n";
  auto f = write("rules.yaml", config(rules));
  auto r = ferry("validate -f " + f);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, f + ": ReplicationConfig/cfg: spec.rules: 11 rules, at most 10 allowed\n");
}

TEST_F(ValidateCli, UnparsableFileExitsTwoWithLineAndColumn) {
  auto bad = write("bad.yaml", "apiVersion: ferry.dev/v1alpha1\nkind: Registry\nmetadata: {name: [x}\n");
  auto r = ferry("validate -f " + bad);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr(bad + ":3:"));
  auto missing = ferry("validate -f " + (dir_ / "nope.yaml").string());
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.out, HasSubstr("nope.yaml: no such file or directory"));
}

TEST_F(ValidateCli, PolicyWithConditionIsRejected) {
  auto f = write("policy.yaml", R"(apiVersion: ferry.dev/v1alpha1
kind: RegistryPolicy
metadata: {name: p}
spec:
  registryId: "222222222222"
  region: eu-west-1
  policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*","Resource":"*","Condition":{}}]}'
)");
  auto r = ferry("validate " + f);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr(f + ": RegistryPolicy/p: spec.policy.Statement[0].Condition: Condition is not evaluated by Ferry"));
}

TEST(Cli, UnknownCommandExitsTwo) {
  auto r = ferry("frobnicate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("unknown command 'frobnicate'"));
}

}  // namespace

namespace {

TEST_F(ValidateCli, OtherApiGroupsAreSkipped) {
  auto f = write("mixed.yaml", config("  - destinations: [{region: us-west-2, registryId: \"111111111111\"}]\n") +
                                   "---\napiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: ferry}\n"
                                   "spec: {project: default}\n");
  auto r = ferry("validate -f " + f);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("1 resources valid, 1 objects of other API groups skipped"));
}

}  // namespace
