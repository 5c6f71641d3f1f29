// Status computation and admission decisions of the reconcilers: table-driven, no sockets.
#include "reconcilers/status.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "reconcilers/admission.hpp"
#include "reconcilers/model/parse.hpp"

namespace ferry::reconcilers {
namespace {

namespace json = boost::json;

json::value object(std::string_view text) { return json::parse(text); }

template <class T>
T parse_as(const json::value& v) {
  auto p = model::parse_resource(v);
  EXPECT_TRUE(p.errors.empty()) << (p.errors.empty() ? "" : model::to_string(p.errors.front()));
  return std::get<T>(*p.resource);
}

const json::object& condition(const json::object& status, std::string_view type) {
  for (const auto& c : status.at("conditions").as_array()) {
    if (c.at("type").as_string() == type) return c.as_object();
  }
  static const json::object none;
  ADD_FAILURE() << "no condition " << type;
  return none;
}

bool has_condition(const json::object& status, std::string_view type) {
  for (const auto& c : status.at("conditions").as_array()) {
    if (c.at("type").as_string() == type) return true;
  }
  return false;
}

TEST(Conditions, TransitionTimeMovesOnlyWhenStatusChanges) {
  std::vector<model::Condition> conds;
  set_condition(conds, {"Ready", "False", "A", "m", "", 1}, "t1");
  set_condition(conds, {"Ready", "False", "B", "n", "", 2}, "t2");
  ASSERT_EQ(conds.size(), 1u);
  EXPECT_EQ(conds[0].last_transition_time, "t1");
  EXPECT_EQ(conds[0].reason, "B");
  set_condition(conds, {"Ready", "True", "C", "", "", 2}, "t3");
  EXPECT_EQ(conds[0].last_transition_time, "t3");
  remove_condition(conds, "Ready");
  EXPECT_TRUE(conds.empty());
}

TEST(InvalidObject, StalledWithTheValidationMessageAndNoRewriteWhenUnchanged) {
  auto obj = object(R"({"apiVersion":"ferry.dev/v1alpha1","kind":"RegistryPolicy",
      "metadata":{"name":"p","generation":3},"spec":{"registryId":"1","region":"us-east-1","policy":{}}})");
  model::FieldErrors errs{{"spec.registryId", "must be 12 digits"}};
  auto st = invalid_object_status(obj, "RegistryPolicy", "p", errs, "t1");
  EXPECT_EQ(st.at("observedGeneration").as_int64(), 3);
  EXPECT_EQ(condition(st, "Stalled").at("status").as_string(), "True");
  EXPECT_EQ(condition(st, "Ready").at("status").as_string(), "False");
  EXPECT_EQ(condition(st, "Ready").at("message").as_string(),
            "RegistryPolicy/p: spec.registryId: must be 12 digits");
  EXPECT_EQ(condition(st, "Ready").at("observedGeneration").as_int64(), 3);
  EXPECT_FALSE(has_condition(st, "Reconciling"));
  // Same input later: the same status, so the reconciler writes nothing.
  obj.as_object()["status"] = st;
  EXPECT_EQ(invalid_object_status(obj, "RegistryPolicy", "p", errs, "t2"), st);
}

TEST(Registry, ReachableReadyElseReconciling) {
  auto obj = object(
      R"({"apiVersion":"ferry.dev/v1alpha1","kind":"Registry","metadata":{"name":"r","generation":2},
      "spec":{"registryId":"111111111111","region":"us-east-1","endpoint":"http://127.0.0.1:5000"}})");
  auto reg = parse_as<model::Registry>(obj);
  auto ok = registry_status(obj, reg, {true, true, "GET /v2/ answered 200"}, "t1");
  EXPECT_EQ(condition(ok, "Ready").at("status").as_string(), "True");
  EXPECT_EQ(condition(ok, "Ready").at("reason").as_string(), "EndpointReachable");
  EXPECT_EQ(ok.at("observedGeneration").as_int64(), 2);
  auto down = registry_status(obj, reg, {false, std::nullopt, "connection refused"}, "t1");
  EXPECT_EQ(condition(down, "Ready").at("status").as_string(), "False");
  // Not Reconciling forever (kstatus InProgress): Ready False and Stalled True after the first
  // failed probe, naming the endpoint and the error.
  EXPECT_FALSE(has_condition(down, "Reconciling"));
  EXPECT_EQ(condition(down, "Ready").at("reason").as_string(), "Unreachable");
  EXPECT_EQ(condition(down, "Ready").at("message").as_string(),
            "endpoint http://127.0.0.1:5000: connection refused");
  EXPECT_EQ(condition(down, "Stalled").at("status").as_string(), "True");
  // Reachable again: Ready, the Stalled condition goes.
  obj.as_object()["status"] = down;
  auto healed = registry_status(obj, reg, {true, true, "GET /v2/ answered 200"}, "t2");
  EXPECT_EQ(condition(healed, "Ready").at("status").as_string(), "True");
  EXPECT_FALSE(has_condition(healed, "Stalled"));
  auto rejected = registry_status(obj, reg, {true, false, "credentials rejected"}, "t1");
  EXPECT_EQ(condition(rejected, "Ready").at("reason").as_string(), "CredentialsRejected");
}

std::vector<model::Resource> resources(std::string_view yaml) {
  std::vector<model::Resource> out;
  auto docs = model::load_documents(yaml, model::Format::Yaml);
  EXPECT_TRUE(docs);
  for (const auto& d : *docs) {
    auto p = model::parse_resource(d);
    EXPECT_TRUE(p.errors.empty()) << (p.errors.empty() ? "" : model::to_string(p.errors.front()));
    if (p.resource) out.push_back(*p.resource);
  }
  return out;
}

constexpr std::string_view kCatalog = R"(
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: a-use1}
spec: {registryId: "111111111111", region: us-east-1, endpoint: "http://127.0.0.1:1"}
---
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: a-usw2}
spec: {registryId: "111111111111", region: us-west-2, endpoint: "http://127.0.0.1:2"}
---
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: b-euw1}
spec: {registryId: "222222222222", region: eu-west-1, endpoint: "http://127.0.0.1:3"}
---
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: c-euw1}
spec: {registryId: "333333333333", region: eu-west-1, endpoint: "http://127.0.0.1:4"}
---
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: d-aps1}
spec: {registryId: "444444444444", region: ap-south-1, endpoint: "http://127.0.0.1:5", enabled: false}
---
apiVersion: ferry.dev/v1alpha1
kind: RegistryPolicy
metadata: {name: b-policy}
spec:
  registryId: "222222222222"
  region: eu-west-1
  policy:
    Version: "2012-10-17"
    Statement:
    - {Sid: AllowA, Effect: Allow, Principal: {AWS: "arn:aws:iam::111111111111:root"}, Action: [ecr:ReplicateImage, ecr:CreateRepository], Resource: "arn:aws:ecr:eu-west-1:222222222222:repository/*"}
---
apiVersion: ferry.dev/v1alpha1
kind: RegistryPolicy
metadata: {name: c-policy}
spec:
  registryId: "333333333333"
  region: eu-west-1
  policy:
    Version: "2012-10-17"
    Statement:
    - {Sid: DenyAll, Effect: Deny, Principal: "*", Action: "ecr:*", Resource: "*"}
)";

constexpr std::string_view kConfig =
    R"({"apiVersion":"ferry.dev/v1alpha1","kind":"ReplicationConfig",
  "metadata":{"name":"cfg","generation":1},
  "spec":{"registryId":"111111111111","region":"us-east-1","rules":[
    {"destinations":[{"region":"us-west-2","registryId":"111111111111"},{"region":"eu-west-1","registryId":"222222222222"}],
     "repositoryFilters":[{"filter":"prod","filterType":"PREFIX_MATCH"}]},
    {"destinations":[{"region":"eu-west-1","registryId":"222222222222"},{"region":"eu-west-1","registryId":"333333333333"},
                     {"region":"eu-central-1","registryId":"555555555555"},{"region":"ap-south-1","registryId":"444444444444"},
                     {"region":"us-east-2","registryId":"666666666666"}]}]}})";

TEST(ReplicationConfig, DestinationStates) {
  auto res = resources(kCatalog);
  res.push_back(model::Registry{
      {.name = "f-use2"},
      {.registry_id = "666666666666", .region = "us-east-2", .endpoint = "http://x"},
      {}});
  model::ResourceIndex index(res);
  auto cfg = parse_as<model::ReplicationConfig>(object(kConfig));
  auto states = destination_states(cfg, index);
  struct Want {
    std::string region, id, state;
  };
  const Want want[] = {{"us-west-2", "111111111111", "Ready"},
                       {"eu-west-1", "222222222222", "Ready"},
                       {"eu-west-1", "333333333333", "Denied"},
                       {"eu-central-1", "555555555555", "RegionNotEnabled"},
                       {"ap-south-1", "444444444444", "RegionNotEnabled"},
                       {"us-east-2", "666666666666", "NoPolicy"}};
  ASSERT_EQ(states.size(), std::size(want)) << "each destination once";
  for (std::size_t i = 0; i < states.size(); ++i) {
    EXPECT_EQ(states[i].region, want[i].region) << i;
    EXPECT_EQ(states[i].registry_id, want[i].id) << i;
    EXPECT_EQ(states[i].state, want[i].state) << i << ": " << states[i].message;
  }
  EXPECT_NE(states[2].message.find("DenyAll"), std::string::npos) << states[2].message;
  EXPECT_EQ(states[4].message, "Registry d-aps1 has enabled: false");
}

TEST(ReplicationConfig, EffectiveSinceFollowsTheEnginesTimePerDestination) {
  auto res = resources(kCatalog);
  model::ResourceIndex index(res);
  auto obj = object(kConfig);
  auto cfg = parse_as<model::ReplicationConfig>(obj);
  auto dests = destination_states(cfg, index);
  ASSERT_GE(dests.size(), 2u);
  std::map<model::RegistryKey, std::string> effective;
  // Only some destinations recorded by the engine: each shows its own time; the configuration's
  // time stays the reconcile time.
  effective[{dests[0].registry_id, dests[0].region}] = "2026-11-28T10:00:00.000Z";
  auto partial = replication_config_status(obj, cfg, index, {}, "2026-11-28T12:00:00Z", effective);
  EXPECT_EQ(partial.at("effectiveSince").as_string(), "2026-11-28T12:00:00Z");
  const auto& pd = partial.at("destinations").as_array();
  EXPECT_EQ(pd[0].at("effectiveSince").as_string(), "2026-11-28T10:00:00.000Z");
  EXPECT_EQ(pd[1].as_object().if_contains("effectiveSince"), nullptr);
  // All recorded: the configuration took effect when its last destination did.
  for (std::size_t i = 1; i < dests.size(); ++i) {
    effective[{dests[i].registry_id, dests[i].region}] = "2026-11-28T09:00:00.000Z";
  }
  effective[{dests[1].registry_id, dests[1].region}] = "2026-11-28T11:30:00.500Z";
  auto all = replication_config_status(obj, cfg, index, {}, "2026-11-28T12:00:00Z", effective);
  EXPECT_EQ(all.at("effectiveSince").as_string(), "2026-11-28T11:30:00.500Z");
  EXPECT_EQ(all.at("destinations").as_array()[1].at("effectiveSince").as_string(), "2026-11-28T11:30:00.500Z");
  // A new leader reconciles before its engine has loaded the times: what was recorded stays.
  obj.as_object()["status"] = all;
  auto starting = replication_config_status(obj, cfg, index, {}, "2026-11-28T13:00:00Z", {});
  EXPECT_EQ(starting, all);
}

TEST(ReplicationConfig, EffectiveSinceKeptWhileGenerationUnchangedAndCredentials) {
  auto res = resources(kCatalog);
  model::ResourceIndex index(res);
  auto obj = object(kConfig);
  auto cfg = parse_as<model::ReplicationConfig>(obj);
  std::map<model::RegistryKey, ProbeResult> probes{
      {{"111111111111", "us-east-1"}, {true, true, "ok"}},
      {{"222222222222", "eu-west-1"}, {true, true, "ok"}}};
  auto st = replication_config_status(obj, cfg, index, probes, "t1");
  EXPECT_EQ(st.at("effectiveSince").as_string(), "t1");
  // Denied, disabled and policy-less destinations: not Ready (this used to assert Ready True, the
  // defect), the reason names the first problem, the message each bad destination; not Stalled.
  EXPECT_EQ(condition(st, "Ready").at("status").as_string(), "False");
  EXPECT_EQ(condition(st, "Ready").at("reason").as_string(), "DestinationDenied");
  const std::string msg(condition(st, "Ready").at("message").as_string());
  EXPECT_NE(msg.find("333333333333/eu-west-1 Denied"), std::string::npos) << msg;
  EXPECT_NE(msg.find("444444444444/ap-south-1 RegionNotEnabled"), std::string::npos) << msg;
  EXPECT_NE(msg.find("666666666666/us-east-2 RegionNotEnabled"), std::string::npos) << msg;
  EXPECT_FALSE(has_condition(st, "Stalled"));
  EXPECT_FALSE(has_condition(st, "Reconciling"));
  EXPECT_EQ(condition(st, "CredentialsReady").at("status").as_string(), "True");
  EXPECT_EQ(st.at("destinations").as_array().size(), 6u);
  obj.as_object()["status"] = st;
  auto again = replication_config_status(obj, cfg, index, probes, "t2");
  EXPECT_EQ(again, st) << "nothing changed: nothing to write";
  obj.as_object()["metadata"].as_object()["generation"] = 2;
  auto cfg2 = parse_as<model::ReplicationConfig>(obj);
  auto bumped = replication_config_status(obj, cfg2, index, probes, "t3");
  EXPECT_EQ(bumped.at("effectiveSince").as_string(), "t3");
  EXPECT_EQ(bumped.at("observedGeneration").as_int64(), 2);
  probes[{"222222222222", "eu-west-1"}] = {false, std::nullopt, "connection refused"};
  auto failing = replication_config_status(obj, cfg2, index, probes, "t4");
  EXPECT_EQ(condition(failing, "CredentialsReady").at("status").as_string(), "False");
  EXPECT_EQ(condition(failing, "CredentialsReady").at("message").as_string(),
            "222222222222/eu-west-1: connection refused");
  EXPECT_EQ(failing.at("destinations").as_array()[1].at("state").as_string(), "Unreachable");
  EXPECT_EQ(failing.at("destinations").as_array()[1].at("message").as_string(),
            "connection refused");
}

TEST(Admission, AllowsValidDeniesInvalidRejectsMalformed) {
  auto review = [](std::string_view obj) {
    return std::string(
               R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","operation":"CREATE","object":)") +
           std::string(obj) + "}}";
  };
  auto ok = review_admission(
      review(R"({"apiVersion":"ferry.dev/v1alpha1","kind":"Registry","metadata":{"name":"r"},
      "spec":{"registryId":"111111111111","region":"us-east-1","endpoint":"http://127.0.0.1:5000"}})"));
  EXPECT_EQ(ok.http_status, 200u);
  EXPECT_TRUE(ok.allowed);
  auto body = json::parse(ok.body);
  EXPECT_EQ(body.at("response").at("uid").as_string(), "u-1");
  EXPECT_TRUE(body.at("response").at("allowed").as_bool());

  auto bad = review_admission(
      review(R"({"apiVersion":"ferry.dev/v1alpha1","kind":"Registry","metadata":{"name":"r"},
      "spec":{"registryId":"12","region":"us-east-1","endpoint":"http://127.0.0.1:5000","zone":"x"}})"));
  EXPECT_FALSE(bad.allowed);
  auto bad_body = json::parse(bad.body);
  EXPECT_FALSE(bad_body.at("response").at("allowed").as_bool());
  EXPECT_EQ(bad_body.at("response").at("status").at("message").as_string(), bad.message);
  EXPECT_NE(bad.message.find("Registry/r: spec.zone: unknown field"), std::string::npos)
      << bad.message;

  auto foreign =
      review_admission(review(R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}})"));
  EXPECT_TRUE(foreign.allowed);
  auto del = review_admission(
      R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"DELETE","object":null}})");
  EXPECT_TRUE(del.allowed);

  for (
      std::string_view m :
      {"", "not json", "[]", R"({"apiVersion":"v1","kind":"AdmissionReview"})",
       R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"})",
       R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}})",
       R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE"}})"}) {
    EXPECT_EQ(review_admission(m).http_status, 400u) << m;
  }
}

TEST(ReplicationConfig, ReadyOnlyWhenEveryDestinationIs) {
  auto res = resources(kCatalog);
  model::ResourceIndex index(res);
  auto obj = object(
      R"({"apiVersion":"ferry.dev/v1alpha1","kind":"ReplicationConfig","metadata":{"name":"ok","generation":1},
      "spec":{"registryId":"111111111111","region":"us-east-1","rules":[
        {"destinations":[{"region":"us-west-2","registryId":"111111111111"},{"region":"eu-west-1","registryId":"222222222222"}]}]}})");
  auto cfg = parse_as<model::ReplicationConfig>(obj);
  auto st = replication_config_status(obj, cfg, index, {}, "t1");
  EXPECT_EQ(condition(st, "Ready").at("status").as_string(), "True");
  std::map<model::RegistryKey, ProbeResult> probes{
      {{"222222222222", "eu-west-1"}, {false, std::nullopt, "connection refused"}}};
  obj.as_object()["status"] = st;
  auto down = replication_config_status(obj, cfg, index, probes, "t2");
  EXPECT_EQ(condition(down, "Ready").at("status").as_string(), "False");
  EXPECT_EQ(condition(down, "Ready").at("reason").as_string(), "DestinationUnreachable");
  EXPECT_EQ(condition(down, "Ready").at("message").as_string(),
            "1 of 2 destinations ready; 222222222222/eu-west-1 Unreachable: connection refused");
  EXPECT_FALSE(has_condition(down, "Stalled"));
}

TEST(ImageReplication, CompleteAndFailedConditions) {
  model::ImageReplication r;
  r.status.replication_statuses = {{.region = "us-west-2", .registry_id = "111111111111", .status = "COMPLETE"},
                                   {.region = "eu-west-1", .registry_id = "222222222222", .status = "IN_PROGRESS"}};
  image_replication_conditions(r, "t1");
  const auto* c = find_condition(r.status.conditions, "Complete");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->status, "False");
  EXPECT_EQ(find_condition(r.status.conditions, "Failed")->status, "False");
  r.status.replication_statuses[1].status = "FAILED";
  r.status.replication_statuses[1].message = "denied";
  image_replication_conditions(r, "t2");
  EXPECT_EQ(find_condition(r.status.conditions, "Failed")->status, "True");
  EXPECT_EQ(find_condition(r.status.conditions, "Failed")->message,
            "1 of 2 destinations FAILED: 222222222222/eu-west-1: denied");
  EXPECT_EQ(find_condition(r.status.conditions, "Complete")->status, "False");
  r.status.replication_statuses[1].status = "COMPLETE";
  image_replication_conditions(r, "t3");
  EXPECT_EQ(find_condition(r.status.conditions, "Complete")->status, "True");
  EXPECT_EQ(find_condition(r.status.conditions, "Complete")->last_transition_time, "t3");
  EXPECT_EQ(find_condition(r.status.conditions, "Failed")->status, "False");
}

}  // namespace
}  // namespace ferry::reconcilers
