// KubeStore, cluster mode's record store, against a real kube-apiserver and etcd
// (tests/support/kube_control_plane.py) with Ferry's CRDs applied by real kubectl.
#include "store/kube_store.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "kube/client.hpp"
#include "kube/config.hpp"
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
    control_plane_ = std::make_unique<ferry::testing::ControlPlane>(dir_.path().string());
    kubeconfig_ = control_plane_->kubeconfig();
    auto config = kube::load_kubeconfig(kubeconfig_, "");
    ASSERT_TRUE(config) << config.error();
    client_ = std::make_unique<kube::Client>(*config);
    api_ = std::make_unique<kube::Api>(*client_);
  }

  std::string kubectl(const std::string& args) {
    auto r = run(peers_bin() + "/kubectl --kubeconfig " + shell_quote(kubeconfig_) + " --cache-dir " +
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

  static std::string peers_bin() {
    if (const char* d = std::getenv("FERRY_PEERS_BIN"); d && *d) return d;
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    return (xdg && *xdg ? std::string(xdg) : std::string(std::getenv("HOME")) + "/.cache") + "/ferry-peers/bin";
  }

  // Local ports of this process's established TCP connections to the API server: the socket
  // inodes under /proc/self/fd matched against /proc/self/net/tcp.
  std::set<int> api_connections() const {
    const auto server = client_->config().server;
    const int api_port = std::stoi(server.substr(server.rfind(':') + 1));
    std::set<std::string> inodes;
    for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      const auto target = std::filesystem::read_symlink(fd.path(), ec).string();
      if (!ec && target.starts_with("socket:[")) inodes.insert(target.substr(8, target.size() - 9));
    }
    std::ifstream tcp("/proc/self/net/tcp");
    std::string line;
    std::getline(tcp, line);  // header
    std::set<int> ports;
    while (std::getline(tcp, line)) {
      std::istringstream in(line);
      std::string slot, local, remote, state, queues, timer, retrans, uid, timeout, inode;
      in >> slot >> local >> remote >> state >> queues >> timer >> retrans >> uid >> timeout >> inode;
      if (state != "01" || !inodes.contains(inode)) continue;  // 01: ESTABLISHED
      if (std::stoi(remote.substr(remote.find(':') + 1), nullptr, 16) != api_port) continue;
      ports.insert(std::stoi(local.substr(local.find(':') + 1), nullptr, 16));
    }
    return ports;
  }

  TempDir dir_;
  std::string kubeconfig_;
  std::unique_ptr<ferry::testing::ControlPlane> control_plane_;
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
  ASSERT_OK(s.save(rec));
  const auto first = api_connections();
  ASSERT_EQ(first.size(), 1u) << "one request, one kept connection";
  for (int i = 0; i < 20; ++i) {
    rec.status.replication_statuses[0].message = "write " + std::to_string(i);
    ASSERT_OK(s.save(rec));
    EXPECT_EQ(api_connections(), first) << "write " << i << " did not reuse the kept connection";
  }
  EXPECT_EQ(s.image_replications().at(0).status.replication_statuses.at(0).message, "write 19");
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
  EXPECT_EQ(s.load_state("effective").value(), std::nullopt);  // never saved: absent, not an error
  json::value v = {{"111111111111/us-east-1", {{"111111111111/us-west-2", "2026-11-28T10:00:00Z"}}}};
  ASSERT_OK(s.save_state("effective", v));
  EXPECT_EQ(s.load_state("effective").value(), v);
  json::value w = {{"x", 1}};
  ASSERT_OK(s.save_state("effective", w));
  EXPECT_EQ(store().load_state("effective").value(), w);
  EXPECT_EQ(kubectl("get configmaps -n ferry-system -o name"), "configmap/ferry-state-effective\n");
}

TEST_F(KubeStoreTest, LargeStateIsChunkedAndAnInterruptedWriteLeavesThePreviousOne) {
  auto s = store(1000);
  json::object repos;
  for (int i = 0; i < 200; ++i) repos["repo-" + std::to_string(i)] = json::object{{"v1", std::string(71, 'd')}};
  json::value first = {{"baselined", true}, {"repositories", repos}};
  ASSERT_OK(s.save_state("known-111111111111-us-east-1", first));
  EXPECT_EQ(store(1000).load_state("known-111111111111-us-east-1").value(), first);
  const auto names = kubectl("get configmaps -n ferry-system -o name");
  EXPECT_NE(names.find("configmap/ferry-state-known-111111111111-us-east-1-a-0"), std::string::npos) << names;
  EXPECT_NE(names.find("-a-10"), std::string::npos) << names;

  // The next write fills the other slot, then replaces the head. Interrupted before the head
  // (a ValidatingAdmissionPolicy makes the API server refuse updates of the head), it leaves
  // the previous state readable, not a mix.
  repos["repo-new"] = json::object{{"v1", "x"}};
  json::value second = {{"baselined", true}, {"repositories", repos}};
  const std::string head = "ferry-state-known-111111111111-us-east-1";
  kubectl("apply -f - <<'EOF'\n"
          "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\n"
          "metadata: {name: refuse-head-write}\nspec:\n  failurePolicy: Fail\n  matchConstraints:\n"
          "    resourceRules:\n    - {apiGroups: [''], apiVersions: [v1], operations: [UPDATE], "
          "resources: [configmaps], resourceNames: [" + head + "]}\n"
          "  validations:\n  - {expression: 'false', message: 'test: head write refused'}\n---\n"
          "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\n"
          "metadata: {name: refuse-head-write}\nspec: {policyName: refuse-head-write, validationActions: [Deny]}\n"
          "EOF");
  // The policy takes effect a moment later; a server-side dry run goes through admission.
  auto head_refused = [&] {
    return run(peers_bin() + "/kubectl --kubeconfig " + shell_quote(kubeconfig_) + " -n " + kNs +
               " annotate --dry-run=server --overwrite configmap " + head + " probe=1 2>&1")
               .exit_code != 0;
  };
  for (int i = 0; i < 100 && !head_refused(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(head_refused());
  EXPECT_FALSE(s.save_state("known-111111111111-us-east-1", second));
  EXPECT_NE(kubectl("get configmaps -n ferry-system -o name").find("-b-0"), std::string::npos);
  EXPECT_EQ(s.load_state("known-111111111111-us-east-1").value(), first);
  kubectl("delete validatingadmissionpolicybinding refuse-head-write");
  for (int i = 0; i < 100 && head_refused(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_OK(s.save_state("known-111111111111-us-east-1", second));
  EXPECT_EQ(store(1000).load_state("known-111111111111-us-east-1").value(), second);

  // A chunk that does not belong to the head's write is never read as state, nor as absent.
  kubectl("annotate configmap -n ferry-system ferry-state-known-111111111111-us-east-1-b-3 "
          "ferry.dev/state-generation=torn --overwrite");
  auto torn = s.load_state("known-111111111111-us-east-1");
  ASSERT_FALSE(torn);
  EXPECT_NE(torn.error().find("torn state"), std::string::npos) << torn.error();
}

}  // namespace
}  // namespace ferry::store
