// Registry policy evaluation (S2): principals, wildcards, explicit deny, invalid elements.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>

#include <boost/json.hpp>

#include "reconcilers/model/policy.hpp"

namespace ferry::model {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

PolicyDocument must_parse(std::string_view text) {
  auto v = json::parse(text);
  auto p = parse_policy(v);
  if (!p) {
    std::string all;
    for (const auto& e : p.error()) all += to_string(e) + "\n";
    ADD_FAILURE() << all;
    return {};
  }
  return *p;
}

std::vector<std::string> policy_errors(const json::value& v) {
  std::vector<std::string> out;
  auto p = parse_policy(v);
  if (!p) {
    for (const auto& e : p.error()) out.push_back(to_string(e));
  }
  return out;
}

const std::string kRepoArn = "arn:aws:ecr:eu-west-1:222222222222:repository/prod/app";

PolicyRequest replicate(std::string account = "111111111111", std::string resource = kRepoArn) {
  return {Partition::Aws, std::move(account), "ecr:ReplicateImage", std::move(resource)};
}

constexpr std::string_view kSpecExample = R"({
  "Version": "2012-10-17",
  "Statement": [{
    "Sid": "ReplicationAccessCrossAccount",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
    "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
    "Resource": "arn:aws:ecr:eu-west-1:222222222222:repository/*"
  }]})";

TEST(Policy, AllowNamesTheStatement) {
  auto p = must_parse(kSpecExample);
  auto e = evaluate(p, replicate());
  EXPECT_EQ(e.decision, Decision::Allow);
  EXPECT_EQ(e.statement, "Sid ReplicationAccessCrossAccount");
  PolicyRequest create = replicate();
  create.action = "ecr:CreateRepository";
  EXPECT_EQ(evaluate(p, create).decision, Decision::Allow);
}

TEST(Policy, ImplicitDenyForOtherAccountsActionsAndResources) {
  auto p = must_parse(kSpecExample);
  EXPECT_EQ(evaluate(p, replicate("333333333333")).decision, Decision::ImplicitDeny);
  PolicyRequest other = replicate();
  other.action = "ecr:BatchGetImage";
  EXPECT_EQ(evaluate(p, other).decision, Decision::ImplicitDeny);
  EXPECT_EQ(evaluate(p, replicate("111111111111",
                                  "arn:aws:ecr:us-east-1:222222222222:repository/prod/app"))
                .decision,
            Decision::ImplicitDeny);
  EXPECT_EQ(evaluate(PolicyDocument{}, replicate()).decision, Decision::ImplicitDeny);
}

TEST(Policy, ExplicitDenyBeatsAllow) {
  auto p = must_parse(R"({"Version":"2012-10-17","Statement":[
    {"Sid":"All","Effect":"Allow","Principal":"*","Action":"ecr:*","Resource":"*"},
    {"Effect":"Deny","Principal":{"AWS":"111111111111"},"Action":"ecr:ReplicateImage",
     "Resource":"arn:aws:ecr:eu-west-1:222222222222:repository/prod/*"}]})");
  auto e = evaluate(p, replicate());
  EXPECT_EQ(e.decision, Decision::ExplicitDeny);
  EXPECT_EQ(e.statement, "Statement[1]");
  EXPECT_EQ(evaluate(p, replicate("111111111111",
                                  "arn:aws:ecr:eu-west-1:222222222222:repository/dev/app"))
                .decision,
            Decision::Allow);
}

struct PrincipalCase {
  std::string principal;  // JSON
  std::string account;
  Decision expected;
};

void PrintTo(const PrincipalCase& c, std::ostream* os) { *os << c.principal << " from " << c.account; }

// Readable CTest names: the case's index and its principal reduced to [A-Za-z0-9_].
std::string principal_case_name(const ::testing::TestParamInfo<PrincipalCase>& info) {
  std::string name = std::to_string(info.index) + "_";
  for (char c : info.param.principal) {
    if (std::isalnum(static_cast<unsigned char>(c))) name += c;
    else if (name.back() != '_') name += '_';
  }
  return name + "_from_" + info.param.account;
}

class PrincipalForms : public ::testing::TestWithParam<PrincipalCase> {};

TEST_P(PrincipalForms, Match) {
  const auto& c = GetParam();
  auto p = must_parse(R"({"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":)" +
                      c.principal + R"(,"Action":"ecr:ReplicateImage","Resource":"*"}})");
  EXPECT_EQ(evaluate(p, replicate(c.account)).decision, c.expected) << c.principal;
}

INSTANTIATE_TEST_SUITE_P(
    All, PrincipalForms,
    ::testing::Values(
        PrincipalCase{R"("*")", "999999999999", Decision::Allow},
        PrincipalCase{R"({"AWS":"*"})", "999999999999", Decision::Allow},
        PrincipalCase{R"({"AWS":"111111111111"})", "111111111111", Decision::Allow},
        PrincipalCase{R"({"AWS":"111111111111"})", "222222222222", Decision::ImplicitDeny},
        PrincipalCase{R"({"AWS":"arn:aws:iam::111111111111:root"})", "111111111111", Decision::Allow},
        PrincipalCase{R"({"AWS":["arn:aws:iam::333333333333:root","111111111111"]})", "111111111111",
                      Decision::Allow},
        // Another partition's ARN is another principal.
        PrincipalCase{R"({"AWS":"arn:aws-cn:iam::111111111111:root"})", "111111111111",
                      Decision::ImplicitDeny},
        // A role is not the replicating account.
        PrincipalCase{R"({"AWS":"arn:aws:iam::111111111111:role/x"})", "111111111111",
                      Decision::ImplicitDeny},
        PrincipalCase{R"({"Service":"ecr.amazonaws.com"})", "111111111111", Decision::ImplicitDeny}),
    principal_case_name);

TEST(Policy, WildcardActionsAreCaseInsensitiveResourcesAreNot) {
  auto p = must_parse(R"({"Statement":{"Effect":"Allow","Principal":"*","Action":"ECR:Replicate?mage",
    "Resource":"arn:aws:ecr:eu-west-1:222222222222:repository/prod/*"}})");
  EXPECT_EQ(evaluate(p, replicate()).decision, Decision::Allow);
  EXPECT_EQ(evaluate(p, replicate("111111111111",
                                  "arn:aws:ecr:eu-west-1:222222222222:repository/PROD/app"))
                .decision,
            Decision::ImplicitDeny);
}

TEST(Policy, WildcardMatcher) {
  EXPECT_TRUE(wildcard_match("*", "", false));
  EXPECT_TRUE(wildcard_match("a*b*c", "aXbYc", false));
  EXPECT_TRUE(wildcard_match("a?c", "abc", false));
  EXPECT_FALSE(wildcard_match("a?c", "ac", false));
  EXPECT_FALSE(wildcard_match("a*b", "acbx", false));
  EXPECT_TRUE(wildcard_match("ecr:*", "ECR:ReplicateImage", true));
  EXPECT_FALSE(wildcard_match("ecr:*", "ECR:ReplicateImage", false));
}

TEST(Policy, GivenAsAJsonString) {
  auto p = parse_policy(json::value(std::string(kSpecExample)));
  ASSERT_TRUE(p);
  EXPECT_EQ(evaluate(*p, replicate()).decision, Decision::Allow);
}

TEST(Policy, MalformedJsonStringIsRejectedWithItsPosition) {
  EXPECT_THAT(policy_errors(json::value("{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [}")),
              ElementsAre(::testing::AllOf(HasSubstr("spec.policy: is not valid JSON"),
                                           HasSubstr("at line 3, column 17"))));
}

TEST(Policy, ConditionAndNotElementsAreRejected) {
  auto errors = policy_errors(json::parse(R"({"Version":"2012-10-17","Statement":[
    {"Effect":"Allow","Principal":"*","Action":"ecr:*","Resource":"*",
     "Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-1"}}},
    {"Effect":"Allow","NotPrincipal":{"AWS":"1"},"Principal":"*","NotAction":"ecr:x","Action":"*","Resource":"*"}]})"));
  EXPECT_THAT(errors,
              ElementsAre("spec.policy.Statement[0].Condition: Condition is not evaluated by Ferry; "
                          "the policy is rejected rather than applied without it",
                          HasSubstr("spec.policy.Statement[1].NotPrincipal: NotPrincipal is not evaluated"),
                          HasSubstr("spec.policy.Statement[1].NotAction: NotAction is not evaluated")));
}

TEST(Policy, StructuralErrors) {
  EXPECT_THAT(policy_errors(json::parse(R"({"Version":"2020-01-01","Statement":[{"Effect":"Maybe",
    "Principal":"someone","Action":"ReplicateImage"}], "Extra": 1})")),
              ElementsAre("spec.policy.Version: must be \"2012-10-17\" or \"2008-10-17\"",
                          "spec.policy.Extra: unknown policy element",
                          "spec.policy.Statement[0].Effect: must be \"Allow\" or \"Deny\"",
                          HasSubstr("spec.policy.Statement[0].Principal: a string Principal must be"),
                          HasSubstr("spec.policy.Statement[0].Action: \"ReplicateImage\" is not an action"),
                          "spec.policy.Statement[0].Resource: required"));
  EXPECT_THAT(policy_errors(json::value(42)),
              ElementsAre("spec.policy: must be a policy document object or a JSON string, got a number"));
}

TEST(Policy, RepositoryArn) {
  EXPECT_EQ(repository_arn(Partition::AwsCn, "cn-north-1", "111111111111", "prod/app"),
            "arn:aws-cn:ecr:cn-north-1:111111111111:repository/prod/app");
}

}  // namespace
}  // namespace ferry::model
