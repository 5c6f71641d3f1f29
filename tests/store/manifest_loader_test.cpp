// Loading a set of manifest files: recursion, per-file problems, set problems, the shipped examples.
#include "store/manifest_loader.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

namespace ferry::store {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class ManifestDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ferry-loader-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "sub");
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const fs::path& rel, const std::string& text) {
    std::ofstream(dir_ / rel) << text;
  }
  static std::vector<std::string> lines(const LoadedSet& s) {
    std::vector<std::string> out;
    for (const auto& p : s.unreadable) out.push_back(p.to_string());
    for (const auto& p : s.invalid) out.push_back(p.to_string());
    return out;
  }
  fs::path dir_;
};

constexpr const char* kConfig = R"(apiVersion: ferry.dev/v1alpha1
kind: ReplicationConfig
metadata: {name: NAME}
spec:
  registryId: "111111111111"
  region: us-east-1
  rules: [{destinations: [{region: us-west-2, registryId: "111111111111"}]}]
)";

std::string config_named(const std::string& name) {
  std::string s = kConfig;
  s.replace(s.find("NAME"), 4, name);
  return s;
}

TEST_F(ManifestDir, ReadsYamlAndJsonRecursivelyAndSkipsOtherFiles) {
  write("a.yaml", config_named("a"));
  write("sub/b.json", R"({"apiVersion":"ferry.dev/v1alpha1","kind":"Registry","metadata":{"name":"b"},
    "spec":{"registryId":"111111111111","region":"us-east-1","endpoint":"http://127.0.0.1:5000"}})");
  write("notes.txt", "not yaml: [");
  auto set = load_manifests({dir_});
  EXPECT_THAT(lines(set), IsEmpty());
  EXPECT_EQ(set.resources.size(), 2u);
}

TEST_F(ManifestDir, InvalidObjectsAreReportedAndLeftOutWhileValidOnesLoad) {
  write("a.yaml", config_named("a") + "---\n" +
                      R"(apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: bad}
spec: {registryId: "1", region: us-east-1, endpoint: "http://h"}
)");
  auto set = load_manifests({dir_});
  const std::string file = (dir_ / "a.yaml").string();
  EXPECT_THAT(lines(set),
              ElementsAre(file + ": Registry/bad: spec.registryId: \"1\" is not a registry id; must be 12 digits"));
  ASSERT_EQ(set.resources.size(), 1u);
  EXPECT_EQ(model::kind_of(set.resources[0].resource), "ReplicationConfig");
}

TEST_F(ManifestDir, SecondConfigForOneSourceNamesBothFiles) {
  write("a.yaml", config_named("a"));
  write("b.yaml", config_named("b"));
  auto set = load_manifests({dir_});
  EXPECT_THAT(lines(set),
              ElementsAre((dir_ / "b.yaml").string() +
                          ": ReplicationConfig/b: spec: ReplicationConfig/a already covers "
                          "111111111111/us-east-1; at most one ReplicationConfig per source registry "
                          "(the other is in " + (dir_ / "a.yaml").string() + ")"));
  EXPECT_EQ(set.resources.size(), 1u);
}

TEST_F(ManifestDir, SyntaxErrorsAndMissingFilesAreUnreadable) {
  write("broken.yaml", "apiVersion: ferry.dev/v1alpha1\nkind: [Registry\n");
  auto set = load_manifests({dir_ / "broken.yaml", dir_ / "missing.yaml"});
  ASSERT_EQ(set.unreadable.size(), 2u);
  EXPECT_THAT(set.unreadable[0].to_string(), HasSubstr("missing.yaml: no such file or directory"));
  EXPECT_THAT(set.unreadable[1].to_string(), HasSubstr("broken.yaml:3:1: "));
}

TEST(ShippedExamples, AreOneValidSet) {
  auto set = load_manifests({fs::path(FERRY_SOURCE_DIR) / "examples"});
  std::vector<std::string> problems;
  for (const auto& p : set.unreadable) problems.push_back(p.to_string());
  for (const auto& p : set.invalid) problems.push_back(p.to_string());
  EXPECT_THAT(problems, IsEmpty());
  EXPECT_GE(set.resources.size(), 10u);
}

}  // namespace
}  // namespace ferry::store
