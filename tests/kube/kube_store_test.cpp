// KubeStore, cluster mode's record store, against the Kubernetes API server double
// (tests/support/kube_apiserver_double.py) with Ferry's CRDs applied by real kubectl.
#include "store/kube_store.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <set>

#include "operator/kube/client.hpp"
#include "operator/kube/config.hpp"
#include "reconcilers/model/replication.hpp"
#include "tests/support/registry_harness.hpp"

namespace ferry::store {
namespace {

namespace json = boost::json;
using ferry::testing::Process;
using ferry::testing::TempDir;
using ferry::testing::run;
using ferry::testing::shell_quote;

constexpr const char* kNs = "ferry-system";

#define ASSERT_OK(call)                              \
  do {                                               \
    auto r_ = (call);                                \
    ASSERT_TRUE(r_) << #call << ": " << r_.error(); \
  } while (0)

class KubeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = ferry::testing::free_port();
    double_ = std::make_unique<Process>(
        std::vector<std::string>{"/usr/bin/python3", ferry::testing::support_dir() + "/kube_apiserver_double.py",
                                 "--port", std::to_string(port_), "--kubeconfig-out", dir_ / "kubeconfig"},
        dir_ / "double.log");
    ASSERT_TRUE(ferry::testing::wait_for_port(port_));
    kubectl("apply -f " + shell_quote(std::string(FERRY_SOURCE_DIR) + "/crds"));
    kubectl("apply -f - <<'EOF'\n{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"" +
            std::string(kNs) + "\"}}\nEOF");
    auto config = kube::load_kubeconfig(dir_ / "kubeconfig", "");
    ASSERT_TRUE(config) << config.error();
    client_ = std::make_unique<kube::Client>(*config);
    api_ = std::make_unique<kube::Api>(*client_);
  }

  std::string kubectl(const std::string& args) {
    auto r = run("/usr/bin/kubectl --kubeconfig " + shell_quote(dir_ / "kubeconfig") + " --cache-dir " +
                 shell_quote(dir_ / "cache") + " 2>&1 " + args);
    EXPECT_EQ(r.exit_code, 0) << args << ": " << r.output;
    return r.output;
  }

  KubeStore store(std::size_t chunk = 512 * 1024) { return KubeStore(*api_, {kNs, chunk}); }

  static model::ImageReplication record(const std::string& tag) {
    model::PushEvent push;
    push.repository = "prod/app";
    push.tag = tag;
    push.digest = "sha256:" + std::string(64, "abcdef"[tag.size() % 6]);
    push.timestamp = "2026-11-28T10:00:00Z";
    return model::new_image_replication({"111111111111", "us-east-1"}, push, {{"111111111111", "us-west-2"}},
                                        "2026-11-28T10:00:01Z");
  }

  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<Process> double_;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<kube::Api> api_;
};

TEST_F(KubeStoreTest, ImageReplicationsAreObjectsWithStatusAndSurviveANewStore) {
  auto rec = record("v1");
  {
    auto s = store();
    ASSERT_OK(s.save(rec));
    rec.status.replication_statuses[0].status = model::kComplete;
    rec.status.replication_statuses[0].completed_at = "2026-11-28T10:00:02Z";
    model::summarize(rec);
    ASSERT_OK(s.save(rec));  // an update: the status subresource, with the version it wrote
  }
  EXPECT_NE(kubectl("get imagereplications").find("1/1"), std::string::npos);
  auto fresh = store();  // as after a restart: versions unknown
  std::vector<std::string> problems;
  auto all = fresh.image_replications(&problems);
  EXPECT_TRUE(problems.empty());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].metadata.name, rec.metadata.name);
  EXPECT_EQ(all[0].status.replication_statuses.at(0).status, model::kComplete);
  EXPECT_EQ(all[0].spec.source.image_tag, "v1");
  // Someone edits the status meanwhile: the next save re-reads and wins instead of failing.
  kubectl("patch imagereplication " + rec.metadata.name +
          " --subresource=status --type=merge -p '{\"status\":{\"progress\":\"x\"}}'");
  rec.status.replication_statuses[0].message = "after a conflict";
  ASSERT_OK(fresh.save(rec));
  EXPECT_EQ(fresh.image_replications()[0].status.replication_statuses[0].message, "after a conflict");
  ASSERT_TRUE(fresh.remove_image_replication(rec.metadata.name));
  EXPECT_TRUE(fresh.image_replications().empty());
  EXPECT_TRUE(fresh.remove_image_replication(rec.metadata.name));  // already gone: fine
}

TEST_F(KubeStoreTest, RequestsShareKeptAliveConnections) {
  auto s = store();
  auto rec = record("v3");
  for (int i = 0; i < 20; ++i) {
    rec.status.replication_statuses[0].message = "write " + std::to_string(i);
    ASSERT_OK(s.save(rec));
  }
  auto log = run("curl -sf http://127.0.0.1:" + std::to_string(port_) + "/__double/requests");
  ASSERT_EQ(log.exit_code, 0);
  std::set<std::int64_t> ports;
  std::size_t requests = 0;
  const json::value entries = json::parse(log.output);
  for (const auto& q : entries.as_array()) {
    if (q.at("userAgent").as_string().starts_with("kubectl")) continue;
    ++requests;
    ports.insert(q.at("clientPort").as_int64());
  }
  EXPECT_GE(requests, 21u);  // a create and 20 status writes
  EXPECT_EQ(ports.size(), 1u) << "requests made one after another use one connection";
}

TEST_F(KubeStoreTest, ADeletedRecordThatIsStillWorkedOnComesBack) {
  auto s = store();
  auto rec = record("v2");
  ASSERT_OK(s.save(rec));
  kubectl("delete imagereplication " + rec.metadata.name);
  ASSERT_OK(s.save(rec));
  EXPECT_EQ(s.image_replications().size(), 1u);
}

TEST_F(KubeStoreTest, RepositoryRecordsNeverOverwriteAUsersRepository) {
  auto s = store();
  const model::RegistryKey dest{"222222222222", "eu-west-1"}, src{"111111111111", "us-east-1"};
  auto made = model::new_replicated_repository(dest, "prod/app", src, "2026-11-28T10:00:00Z");
  ASSERT_OK(s.save(made));
  auto listed = s.repositories();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].status.created_by, "Replication");
  ASSERT_OK(s.save(made));  // again: nothing changes, no error

  // A user's Repository, made first to pre-set settings, keeps them.
  auto user = model::new_replicated_repository(dest, "prod/locked", src, "2026-11-28T10:00:00Z");
  kubectl("apply -f - <<'EOF'\napiVersion: ferry.dev/v1alpha1\nkind: Repository\nmetadata: {name: " +
          user.metadata.name +
          "}\nspec: {registryId: \"222222222222\", region: eu-west-1, repositoryName: prod/locked, "
          "imageTagMutability: IMMUTABLE}\nEOF");
  ASSERT_OK(s.save(user));
  auto obj = json::parse(kubectl("get repository " + user.metadata.name + " -o json"));
  EXPECT_EQ(obj.at("spec").at("imageTagMutability"), "IMMUTABLE");
  EXPECT_EQ(obj.as_object().if_contains("status"), nullptr);
  EXPECT_EQ(s.repositories().size(), 1u);  // only the one replication created
}

TEST_F(KubeStoreTest, SmallStateIsOneConfigMap) {
  auto s = store();
  EXPECT_FALSE(s.load_state("effective"));
  json::value v = {{"111111111111/us-east-1", {{"111111111111/us-west-2", "2026-11-28T10:00:00Z"}}}};
  ASSERT_OK(s.save_state("effective", v));
  EXPECT_EQ(*s.load_state("effective"), v);
  json::value w = {{"x", 1}};
  ASSERT_OK(s.save_state("effective", w));
  EXPECT_EQ(*store().load_state("effective"), w);
  EXPECT_EQ(kubectl("get configmaps -n ferry-system -o name"), "configmap/ferry-state-effective\n");
}

TEST_F(KubeStoreTest, LargeStateIsChunkedAndAnInterruptedWriteLeavesThePreviousOne) {
  auto s = store(1000);
  json::object repos;
  for (int i = 0; i < 200; ++i) repos["repo-" + std::to_string(i)] = json::object{{"v1", std::string(71, 'd')}};
  json::value first = {{"baselined", true}, {"repositories", repos}};
  ASSERT_OK(s.save_state("known-111111111111-us-east-1", first));
  EXPECT_EQ(*store(1000).load_state("known-111111111111-us-east-1"), first);
  const auto names = kubectl("get configmaps -n ferry-system -o name");
  EXPECT_NE(names.find("configmap/ferry-state-known-111111111111-us-east-1-a-0"), std::string::npos) << names;
  EXPECT_NE(names.find("-a-10"), std::string::npos) << names;

  // The next write fills the other slot, then replaces the head. Interrupted before the head
  // (the double fails that one PUT), it leaves the previous state readable, not a mix.
  repos["repo-new"] = json::object{{"v1", "x"}};
  json::value second = {{"baselined", true}, {"repositories", repos}};
  auto injected = run("curl -sf -X POST -H 'Content-Type: application/json' http://127.0.0.1:" +
                      std::to_string(port_) + "/__double/fail -d " +
                      shell_quote(R"({"method": "PUT", "pathRegex": "configmaps/ferry-state-known-111111111111-us-east-1$",)"
                                  R"( "status": 500, "count": 1})"));
  ASSERT_EQ(injected.exit_code, 0) << injected.output;
  EXPECT_FALSE(s.save_state("known-111111111111-us-east-1", second));
  EXPECT_NE(kubectl("get configmaps -n ferry-system -o name").find("-b-0"), std::string::npos);
  EXPECT_EQ(*s.load_state("known-111111111111-us-east-1"), first);
  ASSERT_OK(s.save_state("known-111111111111-us-east-1", second));
  EXPECT_EQ(*store(1000).load_state("known-111111111111-us-east-1"), second);

  // A chunk that does not belong to the head's write is never read as state.
  kubectl("annotate configmap -n ferry-system ferry-state-known-111111111111-us-east-1-b-3 "
          "ferry.dev/state-generation=torn --overwrite");
  EXPECT_FALSE(s.load_state("known-111111111111-us-east-1"));
}

}  // namespace
}  // namespace ferry::store
