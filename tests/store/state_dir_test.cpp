// The state directory: records survive a restart; a torn write never replaces a good record.
#include "store/state_dir.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <fstream>

#include "reconcilers/model/replication.hpp"

namespace ferry::store {
namespace {

namespace fs = std::filesystem;

class StateDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ferry-state-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

model::ImageReplication record(const std::string& tag) {
  model::PushEvent push{"", "prod/app", "sha256:" + std::string(64, 'd'), tag,
                        "application/vnd.oci.image.manifest.v1+json", "2026-11-28T14:00:00Z", ""};
  return model::new_image_replication({"111111111111", "us-east-1"}, push,
                                      {{"111111111111", "us-west-2"}}, "2026-11-28T14:00:01Z");
}

TEST_F(StateDirTest, RecordsSurviveReopening) {
  auto r = record("v1");
  {
    StateDir s(dir_);
    ASSERT_TRUE(s.save(r));
    r.status.replication_statuses[0].status = "COMPLETE";
    ASSERT_TRUE(s.save(r));
    ASSERT_TRUE(s.save(model::new_replicated_repository({"111111111111", "us-west-2"}, "prod/app",
                                                        {"111111111111", "us-east-1"}, "now")));
    ASSERT_TRUE(s.save_state("baseline-a", boost::json::value{{"prod/app", {{"v1", "sha256:x"}}}}));
  }
  StateDir s(dir_);
  auto all = s.image_replications();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].status.replication_statuses[0].status, "COMPLETE");
  ASSERT_TRUE(s.image_replication(r.metadata.name));
  EXPECT_EQ(s.repositories().size(), 1u);
  EXPECT_EQ(s.load_state("baseline-a").value()->at("prod/app").at("v1").as_string(), "sha256:x");
  // Never saved is absent; unparsable is an error, never absent.
  EXPECT_EQ(s.load_state("never-saved").value(), std::nullopt);
  {
    std::ofstream torn(dir_ / "state" / "baseline-b.json");
    torn << "{\"prod/app\": {\"v1\"";
  }
  auto torn = s.load_state("baseline-b");
  ASSERT_FALSE(torn);
  EXPECT_NE(torn.error().find("baseline-b.json"), std::string::npos) << torn.error();
  ASSERT_TRUE(s.remove_image_replication(r.metadata.name));
  EXPECT_TRUE(s.image_replications().empty());
}

TEST_F(StateDirTest, ARepositoryRecordIsWrittenOnceAndKeepsItsFirstContent) {
  StateDir s(dir_);
  auto repo = model::new_replicated_repository({"111111111111", "us-west-2"}, "prod/app",
                                               {"111111111111", "us-east-1"}, "2026-11-28T14:00:00Z");
  ASSERT_TRUE(s.save(repo));
  auto again = repo;
  again.status.created_at = "2026-11-29T00:00:00Z";
  ASSERT_TRUE(s.save(again));
  auto all = s.repositories();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].status.created_at, "2026-11-28T14:00:00Z");
}

TEST_F(StateDirTest, LeftoverTemporaryFilesAndGarbageAreNotRecords) {
  StateDir s(dir_);
  ASSERT_TRUE(s.save(record("v1")));
  // What a crash mid-write leaves behind: a .tmp file; and a corrupted record.
  std::ofstream(dir_ / "imagereplications" / "x.json.tmp") << "{\"half";
  std::ofstream(dir_ / "imagereplications" / "broken.json") << "{\"half";
  std::vector<std::string> problems;
  EXPECT_EQ(s.image_replications(&problems).size(), 1u);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("broken.json"), std::string::npos);
}

TEST_F(StateDirTest, UnsafeNamesAreRefused) {
  StateDir s(dir_);
  auto r = record("v1");
  r.metadata.name = "../escape";
  EXPECT_FALSE(s.save(r));
  EXPECT_FALSE(s.save_state("../x", boost::json::value(1)));
  EXPECT_FALSE(fs::exists(dir_ / "escape.json"));
}

}  // namespace
}  // namespace ferry::store
