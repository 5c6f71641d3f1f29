// The engine's intake decisions on an in-memory store: no sockets, no copies (start() is never
// called, so nothing leaves the queue). What a user would see: which pushes become records, what
// a registry is answered, and that a store that cannot be read loses no push and moves no S3 time.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <boost/json.hpp>
#include <map>
#include <string>

#include "engine/replication_engine.hpp"
#include "reconcilers/model/shard.hpp"
#include "store/record_store.hpp"
#include "test_util.hpp"

namespace ferry::engine {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// Runs an engine coroutine on `io` until it is done (the store writes inline: no pool).
template <class T>
T complete(boost::asio::io_context& io, boost::asio::awaitable<T> task) {
  auto done = boost::asio::co_spawn(io, std::move(task), boost::asio::use_future);
  while (done.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    io.restart();
    io.run_one_for(std::chrono::milliseconds(10));
  }
  return done.get();
}

// A RecordStore in memory whose reads and writes can be made to fail.
class MemoryStore : public store::RecordStore {
 public:
  bool reads_fail = false;
  bool writes_fail = false;
  std::map<std::string, model::ImageReplication> records;
  std::map<std::string, model::Repository> repositories_;
  std::map<std::string, json::value> state;

  std::expected<void, std::string> save(const model::ImageReplication& r) override {
    if (writes_fail) return std::unexpected("injected: the store refused the write");
    records[r.metadata.name] = r;
    return {};
  }
  std::expected<void, std::string> save(const model::Repository& r) override {
    if (writes_fail) return std::unexpected("injected: the store refused the write");
    repositories_.try_emplace(r.metadata.name, r);
    return {};
  }
  std::expected<void, std::string> remove_image_replication(const std::string& name) override {
    records.erase(name);
    return {};
  }
  std::vector<model::ImageReplication> image_replications(
      std::vector<std::string>*) const override {
    std::vector<model::ImageReplication> out;
    for (const auto& [n, r] : records) out.push_back(r);
    return out;
  }
  std::vector<model::Repository> repositories(std::vector<std::string>*) const override {
    std::vector<model::Repository> out;
    for (const auto& [n, r] : repositories_) out.push_back(r);
    return out;
  }
  std::expected<void, std::string> save_state(const std::string& key,
                                              const json::value& v) override {
    if (writes_fail) return std::unexpected("injected: the store refused the write");
    state[key] = v;
    return {};
  }
  std::expected<std::optional<json::value>, std::string> load_state(
      const std::string& key) const override {
    if (reads_fail) return std::unexpected("injected: the API server did not answer");
    auto it = state.find(key);
    if (it == state.end()) return std::optional<json::value>{};
    return std::optional<json::value>{it->second};
  }
};

const std::string kDigest = "sha256:" + std::string(64, 'a');
constexpr std::string_view kContentType = "application/vnd.docker.distribution.events.v2+json";

// Source us-east-1 replicates prod/* to us-west-2 (same account); polling off; a token Secret.
std::vector<model::Resource> resources() {
  const std::string yaml = R"(---
apiVersion: v1
kind: Secret
metadata: {name: hook, namespace: ferry}
stringData: {token: s3cret}
---
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: east}
spec: {registryId: "111111111111", region: us-east-1, endpoint: "http://127.0.0.1:9", pollInterval: "0s",
       notifications: {tokenSecretRef: {name: hook, namespace: ferry}}}
---
apiVersion: ferry.dev/v1alpha1
kind: Registry
metadata: {name: west}
spec: {registryId: "111111111111", region: us-west-2, endpoint: "http://127.0.0.1:9", pollInterval: "0s"}
---
apiVersion: ferry.dev/v1alpha1
kind: ReplicationConfig
metadata: {name: east}
spec:
  registryId: "111111111111"
  region: us-east-1
  rules:
  - destinations: [{region: us-west-2, registryId: "111111111111"}]
    repositoryFilters: [{filter: prod, filterType: PREFIX_MATCH}]
)";
  return model::testing::load_all(yaml);
}

std::string push(const std::string& repo, const std::string& tag, const std::string& when,
                 const std::string& agent = "skopeo/1.9.3", const std::string& id = "") {
  return R"({"events":[{"id":")" + (id.empty() ? "e-" + repo + tag + when : id) +
         R"(","timestamp":")" + when +
         R"(","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
         kDigest + R"(","repository":")" + repo + R"(","tag":")" + tag +
         R"("},"request":{"useragent":")" + agent + R"("}}]})";
}

const std::string kBearer = "Bearer s3cret";
const std::string kEffectiveKey = "effective";
const std::string kEast = "111111111111/us-east-1";
const std::string kWest = "111111111111/us-west-2";

class Intake : public ::testing::Test {
 protected:
  boost::asio::io_context io;
  MemoryStore store;

  NotificationOutcome notify(ReplicationEngine& e, const std::string& body) {
    return complete(io, e.on_notification("east", std::string(kContentType), kBearer, body));
  }
  std::string stored_effective_time() {
    auto it = store.state.find(kEffectiveKey);
    if (it == store.state.end()) return "";
    const auto* src = it->second.as_object().if_contains(kEast);
    const auto* dst = src ? src->as_object().if_contains(kWest) : nullptr;
    return dst ? std::string(dst->as_string()) : "";
  }
};

TEST_F(Intake, APushARuleCoversIsRecordedBeforeTheRegistryIsAnswered) {
  ReplicationEngine engine(io, store);
  engine.set_resources(resources());
  auto out = notify(engine, push("prod/app", "v1", "2099-01-01T00:00:00Z"));
  EXPECT_EQ(out.status, 200u) << out.message;
  ASSERT_THAT(store.records, SizeIs(1));
  const auto& rec = store.records.begin()->second;
  EXPECT_EQ(rec.spec.source.repository_name, "prod/app");
  EXPECT_EQ(rec.spec.source.image_tag, "v1");
  ASSERT_THAT(rec.status.replication_statuses, SizeIs(1));
  EXPECT_EQ(rec.status.replication_statuses[0].region, "us-west-2");
  EXPECT_EQ(rec.status.replication_statuses[0].status, "IN_PROGRESS");

  // The same event again (registries re-send) is the same record, not a second one.
  EXPECT_EQ(notify(engine, push("prod/app", "v1", "2099-01-01T00:00:00Z")).status, 200u);
  EXPECT_THAT(store.records, SizeIs(1));
  // Outside every rule (S5): answered, nothing recorded.
  EXPECT_EQ(notify(engine, push("dev/app", "v1", "2099-01-01T00:00:00Z")).status, 200u);
  EXPECT_THAT(store.records, SizeIs(1));
}

TEST_F(Intake, AnotherEventOfTheSameImageNoLaterThanItsRecordIsThatPushNotASecondOne) {
  // A poll records what it finds at poll time; the registry's own event of that push (another
  // id, the push's earlier time) comes after. One push, one record, one copy.
  ReplicationEngine engine(io, store);
  engine.set_resources(resources());
  const std::string agent = "skopeo/1.9.3";
  ASSERT_EQ(notify(engine, push("prod/app", "v1", "2099-01-01T00:00:05Z", agent, "poll-1")).status, 200u);
  EXPECT_EQ(notify(engine, push("prod/app", "v1", "2099-01-01T00:00:04Z", agent, "event-1")).status, 200u);
  EXPECT_EQ(notify(engine, push("prod/app", "v1", "2099-01-01T00:00:05Z", agent, "event-2")).status, 200u);
  EXPECT_THAT(store.records, SizeIs(1));
  // A push of the same image after that moment is a push of its own.
  EXPECT_EQ(notify(engine, push("prod/app", "v1", "2099-01-01T00:00:06Z", agent, "event-3")).status, 200u);
  EXPECT_THAT(store.records, SizeIs(2));
  // So is one of the same digest under another tag.
  EXPECT_EQ(notify(engine, push("prod/app", "v2", "2099-01-01T00:00:04Z", agent, "event-4")).status, 200u);
  EXPECT_THAT(store.records, SizeIs(3));
}

TEST_F(Intake, OwnWritesAndPushesBeforeTheConfigurationAppliedAreNotReplicated) {
  ReplicationEngine engine(io, store);
  engine.set_resources(resources());
  // S4: Ferry's own user agent.
  EXPECT_EQ(
      notify(engine, push("prod/app", "v1", "2099-01-01T00:00:00Z", "ferry-replicator/0.1")).status,
      200u);
  // S3: pushed before the destination started to apply (now).
  EXPECT_EQ(notify(engine, push("prod/app", "v2", "2001-01-01T00:00:00Z")).status, 200u);
  EXPECT_THAT(store.records, IsEmpty());
}

TEST_F(Intake, ATokenIsCheckedBeforeTheBody) {
  ReplicationEngine engine(io, store);
  engine.set_resources(resources());
  auto wrong = engine.authenticate_notification("east", "Bearer guess");
  ASSERT_TRUE(wrong.has_value());
  EXPECT_EQ(wrong->status, 401u);
  EXPECT_FALSE(engine.authenticate_notification("east", kBearer).has_value());
  auto unknown = engine.authenticate_notification("nowhere", kBearer);
  ASSERT_TRUE(unknown.has_value());
  EXPECT_EQ(unknown->status, 404u);
  // The whole notification path refuses a wrong token whatever the body holds.
  EXPECT_EQ(complete(io, engine.on_notification("east", std::string(kContentType), "", "not json")).status,
            401u);
}

TEST_F(Intake, AFailedRecordWriteIsAnsweredWithAnErrorSoTheRegistrySendsItAgain) {
  ReplicationEngine engine(io, store);
  engine.set_resources(resources());
  store.writes_fail = true;
  auto out = notify(engine, push("prod/app", "v1", "2099-01-01T00:00:00Z"));
  EXPECT_EQ(out.status, 503u);
  EXPECT_THAT(out.message, HasSubstr("refused the write"));
  EXPECT_THAT(store.records, IsEmpty());
  store.writes_fail = false;
  EXPECT_EQ(notify(engine, push("prod/app", "v1", "2099-01-01T00:00:00Z")).status, 200u);
  EXPECT_THAT(store.records, SizeIs(1));
}

// Issue 11 item 6 / issue 15: a read that fails at start-up is not "absent". The stored S3 time
// (2026-01-01) must survive it; had it been rewritten as "now", the re-sent push of 2026-06-01
// would be dropped as older than the configuration.
TEST_F(Intake, UnreadableEffectiveTimesHoldPushesBackAndMoveNoTime) {
  store.state[kEffectiveKey] = json::object{{kEast, json::object{{kWest, "2026-01-01T00:00:00Z"}}}};
  store.reads_fail = true;
  ReplicationEngine engine(io, store);
  engine.set_resources(resources());
  const std::string resent = push("prod/app", "v1", "2026-06-01T00:00:00Z");
  auto held = notify(engine, resent);
  EXPECT_EQ(held.status, 503u);  // the registry keeps the event and sends it again
  EXPECT_THAT(held.message, HasSubstr("effective times"));
  EXPECT_THAT(store.records, IsEmpty());
  EXPECT_EQ(stored_effective_time(), "2026-01-01T00:00:00Z");

  store.reads_fail = false;
  io.run_for(
      std::chrono::milliseconds(1500));  // the engine reads again on its own (first retry 500 ms)
  EXPECT_EQ(stored_effective_time(), "2026-01-01T00:00:00Z");
  EXPECT_EQ(engine.effective_since({"111111111111", "us-east-1"}).at({"111111111111", "us-west-2"}),
            "2026-01-01T00:00:00Z");
  auto out = notify(engine, resent);
  EXPECT_EQ(out.status, 200u) << out.message;
  EXPECT_THAT(store.records, SizeIs(1));
}

// Scale-out (SPEC §8): engines of shards 0 and 1 of 2, each given every notification, record
// only the pushes of their own repositories, and between them every push, once.
TEST_F(Intake, EachShardsEngineRecordsOnlyItsRepositoriesAndTogetherTheyRecordEveryPushOnce) {
  MemoryStore other;
  auto shard = [](std::uint32_t i) {
    EngineOptions o;
    o.owns = [i](const model::RegistryKey& source, const std::string& repository) {
      return model::shard_of(source, repository, 2) == i;
    };
    return o;
  };
  ReplicationEngine zero(io, store, shard(0));
  ReplicationEngine one(io, other, shard(1));
  zero.set_resources(resources());
  one.set_resources(resources());
  const model::RegistryKey east{"111111111111", "us-east-1"};
  std::map<std::uint32_t, int> expected;
  for (int i = 0; i < 12; ++i) {
    const std::string repo = "prod/app" + std::to_string(i);
    ++expected[model::shard_of(east, repo, 2)];
    const auto body = push(repo, "v1", "2099-01-01T00:00:00Z");
    EXPECT_EQ(notify(zero, body).status, 200u);
    EXPECT_EQ(notify(one, body).status, 200u);
  }
  ASSERT_GT(expected[0], 0);
  ASSERT_GT(expected[1], 0);
  EXPECT_THAT(store.records, SizeIs(expected[0]));
  EXPECT_THAT(other.records, SizeIs(expected[1]));
  for (const auto& [name, r] : store.records) EXPECT_EQ(model::shard_of(east, r.spec.source.repository_name, 2), 0u);
  for (const auto& [name, r] : other.records) EXPECT_EQ(model::shard_of(east, r.spec.source.repository_name, 2), 1u);
}

// The header check a sharded replica makes without an engine of its own.
TEST(NotificationToken, IsCheckedFromTheResourcesAlone) {
  const model::ResourceIndex index(resources());
  EXPECT_FALSE(authenticate_notification(index, "east", kBearer).has_value());
  EXPECT_EQ(authenticate_notification(index, "east", "Bearer wrong")->status, 401u);
  EXPECT_EQ(authenticate_notification(index, "east", "")->status, 401u);
  EXPECT_EQ(authenticate_notification(index, "nowhere", kBearer)->status, 404u);
  EXPECT_FALSE(authenticate_notification(index, "west", "").has_value()) << "no token configured";
}

}  // namespace
}  // namespace ferry::engine
