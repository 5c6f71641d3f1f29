// Notification envelopes: manifest pushes are kept, everything else skipped, bad bodies refused whole.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "reconcilers/model/events.hpp"

namespace ferry::model {
namespace {

using ::testing::HasSubstr;

const std::string kDigest = "sha256:" + std::string(64, 'a');

std::string event(const std::string& action, const std::string& media_type, const std::string& repo,
                  const std::string& tag = "") {
  return R"({"id":"e1","timestamp":"2026-11-28T14:00:00.123Z","action":")" + action +
         R"(","target":{"mediaType":")" + media_type + R"(","digest":")" + kDigest +
         R"(","repository":")" + repo + R"(")" + (tag.empty() ? "" : R"(,"tag":")" + tag + R"(")") +
         R"(},"request":{"useragent":"skopeo/1.9.3"},"actor":{"name":"alice"}})";
}

TEST(Notifications, ManifestPushesAreKept) {
  const std::string body =
      R"({"events":[)" + event("push", "application/vnd.oci.image.manifest.v1+json", "prod/app", "v1") +
      "," + event("push", "application/octet-stream", "prod/app") + "," +
      event("pull", "application/vnd.oci.image.manifest.v1+json", "prod/app", "v1") + "," +
      event("push", "application/vnd.oci.image.index.v1+json", "prod/app") + "]}";
  auto r = parse_notification(body);
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].repository, "prod/app");
  EXPECT_EQ((*r)[0].tag, "v1");
  EXPECT_EQ((*r)[0].digest, kDigest);
  EXPECT_EQ((*r)[0].user_agent, "skopeo/1.9.3");
  EXPECT_EQ((*r)[0].timestamp, "2026-11-28T14:00:00.123Z");
  EXPECT_EQ((*r)[1].tag, "");
  EXPECT_EQ((*r)[1].media_type, "application/vnd.oci.image.index.v1+json");
}

TEST(Notifications, EveryManifestKindCounts) {
  for (const char* t : {"application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json",
                        "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.oci.image.index.v1+json",
                        "application/vnd.oci.artifact.manifest.v1+json"}) {
    EXPECT_TRUE(is_manifest_media_type(t)) << t;
  }
  EXPECT_FALSE(is_manifest_media_type("application/vnd.docker.distribution.manifest.v1+prettyjws"));
  EXPECT_FALSE(is_manifest_media_type("application/vnd.oci.image.layer.v1.tar+gzip"));
}

TEST(Notifications, MalformedBodiesAreRefusedWithAReason) {
  EXPECT_THAT(parse_notification("{\"events\": [").error(), HasSubstr("body is not JSON"));
  EXPECT_THAT(parse_notification("[]").error(), HasSubstr("expected {\"events\": [...]}"));
  EXPECT_THAT(parse_notification(R"({"events":[{"target":{}}]})").error(),
              HasSubstr("events[0].action: required"));
  EXPECT_THAT(parse_notification(R"({"events":[{"action":"push"}]})").error(),
              HasSubstr("events[0].target: required object"));
  // One bad event spoils the envelope: nothing is half-applied.
  auto traversal = parse_notification(
      R"({"events":[)" + event("push", "application/vnd.oci.image.manifest.v1+json", "prod/app", "v1") +
      "," + event("push", "application/vnd.oci.image.manifest.v1+json", "../../etc") + "]}");
  ASSERT_FALSE(traversal);
  EXPECT_THAT(traversal.error(), HasSubstr("events[1].target.repository: \"../../etc\" is not a repository name"));
  auto bad_digest = parse_notification(
      R"({"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
      R"("repository":"a","digest":"md5:x"}}]})");
  ASSERT_FALSE(bad_digest);
  EXPECT_THAT(bad_digest.error(), HasSubstr("is not a sha256 digest"));
}

TEST(Notifications, ContentTypes) {
  EXPECT_TRUE(is_notification_content_type("application/vnd.docker.distribution.events.v1+json"));
  EXPECT_TRUE(is_notification_content_type("application/vnd.docker.distribution.events.v2+json; charset=utf-8"));
  EXPECT_FALSE(is_notification_content_type("text/plain"));
}

}  // namespace
}  // namespace ferry::model

#include "reconcilers/model/clock.hpp"

namespace ferry::model {
namespace {

TEST(Clock, Rfc3339RoundTripAndForms) {
  auto t = parse_rfc3339("2026-11-28T14:00:00Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(format_rfc3339(*t), "2026-11-28T14:00:00Z");
  auto nanos = parse_rfc3339("2026-11-28T14:00:00.123456789Z");
  ASSERT_TRUE(nanos);
  EXPECT_EQ(format_rfc3339(*nanos, true), "2026-11-28T14:00:00.123Z");
  // Kubernetes MicroTime: exactly six fractional digits, or the API server refuses the object.
  EXPECT_EQ(format_micro_time(*nanos), "2026-11-28T14:00:00.123456Z");
  EXPECT_EQ(format_micro_time(*parse_rfc3339("2026-11-28T14:00:00Z")), "2026-11-28T14:00:00.000000Z");
  EXPECT_LT(*t, *nanos);
  auto offset = parse_rfc3339("2026-11-28T15:30:00+01:30");
  ASSERT_TRUE(offset);
  EXPECT_EQ(*offset, *t);
  EXPECT_FALSE(parse_rfc3339("2026-11-28 14:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-11-28T14:00:00"));
  EXPECT_FALSE(parse_rfc3339("2026-13-28T14:00:00Z"));
}

// EventBridge "ECR Image Action" events, as an SQS message body holds them (AWS's documented shape).
std::string ecr_event(const std::string& action, const std::string& result, const std::string& detail_extra = "") {
  return R"({"version":"0","id":"13cde686-328b-6117-af20-0e5566167482","detail-type":"ECR Image Action",)"
         R"("source":"aws.ecr","account":"123456789012","time":"2026-11-28T14:00:00Z","region":"us-west-2",)"
         R"("resources":[],"detail":{"result":")" + result + R"(","repository-name":"prod/app","image-digest":")" +
         kDigest + R"(","action-type":")" + action + R"(","image-tag":"v1")" + detail_extra + "}}";
}

TEST(EcrImageActions, ASuccessfulPushIsAPush) {
  auto e = parse_ecr_image_action(ecr_event("PUSH", "SUCCESS",
                                            R"(,"manifest-media-type":"application/vnd.oci.image.manifest.v1+json")"));
  ASSERT_TRUE(e) << e.error();
  EXPECT_TRUE(e->successful_push);
  EXPECT_EQ(e->account, "123456789012");
  EXPECT_EQ(e->region, "us-west-2");
  EXPECT_EQ(e->push.repository, "prod/app");
  EXPECT_EQ(e->push.digest, kDigest);
  EXPECT_EQ(e->push.tag, "v1");
  EXPECT_EQ(e->push.timestamp, "2026-11-28T14:00:00Z");
  EXPECT_EQ(e->push.id, "13cde686-328b-6117-af20-0e5566167482");
  EXPECT_EQ(e->push.media_type, "application/vnd.oci.image.manifest.v1+json");
}

TEST(EcrImageActions, DeletesAndFailuresAreNotPushes) {
  auto del = parse_ecr_image_action(ecr_event("DELETE", "SUCCESS"));
  ASSERT_TRUE(del) << del.error();
  EXPECT_FALSE(del->successful_push);
  auto failed = parse_ecr_image_action(ecr_event("PUSH", "FAILURE"));
  ASSERT_TRUE(failed) << failed.error();
  EXPECT_FALSE(failed->successful_push);
}

TEST(EcrImageActions, MalformedOrForeignBodiesSayWhy) {
  EXPECT_THAT(parse_ecr_image_action("not json").error(), HasSubstr("not JSON"));
  EXPECT_THAT(parse_ecr_image_action("[1]").error(), HasSubstr("expected a JSON object"));
  EXPECT_THAT(parse_ecr_image_action(R"({"source":"aws.s3","detail-type":"Object Created"})").error(),
              HasSubstr("not an ECR Image Action event"));
  std::string bad_digest = ecr_event("PUSH", "SUCCESS");
  bad_digest.replace(bad_digest.find(kDigest), kDigest.size(), "sha256:short");
  EXPECT_THAT(parse_ecr_image_action(bad_digest).error(), HasSubstr("detail.image-digest"));
  std::string bad_repo = ecr_event("PUSH", "SUCCESS");
  bad_repo.replace(bad_repo.find("prod/app"), 8, "../etc");
  EXPECT_THAT(parse_ecr_image_action(bad_repo).error(), HasSubstr("detail.repository-name"));
  std::string bad_account = ecr_event("PUSH", "SUCCESS");
  bad_account.replace(bad_account.find("123456789012"), 12, "12345");
  EXPECT_THAT(parse_ecr_image_action(bad_account).error(), HasSubstr("account"));
}

}  // namespace
}  // namespace ferry::model
