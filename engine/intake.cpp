// Notifications and pushes become durable ImageReplication records (S1, S3, S4, S5).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "engine/engine_impl.hpp"
#include "reconcilers/status.hpp"

namespace ferry::engine {

bool ReplicationEngine::Impl::is_self_write(const RegistryKey& reg,
                                            const model::PushEvent& push) const {
  if (push.user_agent.starts_with(opts.user_agent.substr(0, opts.user_agent.find('/') + 1)))
    return true;
  return self_writes.contains(key_text(reg) + "|" + push.repository + "|" + push.digest);
}

std::string ReplicationEngine::Impl::image_key(const RegistryKey& source,
                                               const std::string& repository,
                                               const std::string& tag, const std::string& digest) {
  return key_text(source) + "|" + repository + "|" + tag + "|" + digest;
}

namespace {
std::string recorded_key(const model::ImageSource& s) {
  return ReplicationEngine::Impl::image_key({s.registry_id, s.region}, s.repository_name,
                                            s.image_tag, s.image_digest);
}
}  // namespace

void ReplicationEngine::Impl::note_recorded(const model::ImageReplication& r) {
  const auto at = model::parse_rfc3339(r.spec.source.pushed_at);
  if (!at) return;
  auto [it, added] = latest_recorded.try_emplace(recorded_key(r.spec.source), r.metadata.name);
  if (added || it->second == r.metadata.name) return;
  auto prev = records.find(it->second);
  const auto seen = prev == records.end() ? std::nullopt
                                          : model::parse_rfc3339(prev->second.spec.source.pushed_at);
  if (!seen || *at > *seen) it->second = r.metadata.name;
}

void ReplicationEngine::Impl::forget_recorded(const model::ImageReplication& r) {
  auto it = latest_recorded.find(recorded_key(r.spec.source));
  if (it != latest_recorded.end() && it->second == r.metadata.name) latest_recorded.erase(it);
}

bool ReplicationEngine::Impl::recorded_already(const RegistryKey& src, const model::PushEvent& push,
                                               const std::vector<RegistryKey>& dests) const {
  const auto pushed = model::parse_rfc3339(push.timestamp);
  if (!pushed) return false;
  auto covers = [&](const model::ImageReplication& r) {
    const auto seen = model::parse_rfc3339(r.spec.source.pushed_at);
    if (!seen || *pushed > *seen) return false;
    return std::ranges::all_of(dests, [&](const RegistryKey& d) {
      return std::ranges::find(r.spec.destinations, d) != r.spec.destinations.end();
    });
  };
  const std::string key = image_key(src, push.repository, push.tag, push.digest);
  if (auto it = latest_recorded.find(key); it != latest_recorded.end()) {
    auto rec = records.find(it->second);
    if (rec != records.end() && covers(rec->second)) return true;
  }
  auto [from, to] = recording.equal_range(key);
  return std::any_of(from, to, [&](const auto& kv) { return covers(*kv.second); });
}

model::ImageReplication ReplicationEngine::Impl::new_record(const RegistryKey& src,
                                                            const model::PushEvent& push,
                                                            const std::vector<RegistryKey>& dests) const {
  auto record = model::new_image_replication(src, push, dests, now_text());
  reconcilers::image_replication_conditions(record, record.metadata.creation_timestamp);
  return record;
}

// Records one push; an error means it was not recorded and the caller must report failure.
asio::awaitable<std::expected<void, std::string>> ReplicationEngine::Impl::handle_push(
    RegistryKey src, model::PushEvent push, const char* via) {
  if (is_self_write(src, push)) {
    pushes.Add({{"via", via}, {"outcome", "own_write"}}).Increment();
    co_return std::expected<void, std::string>{};
  }
  if (opts.owns && !opts.owns(src, push.repository)) co_return std::expected<void, std::string>{};  // another shard's
  if (!effective_loaded) {
    pushes.Add({{"via", via}, {"outcome", "state_unreadable"}}).Increment();
    co_return std::unexpected(
        std::string("the effective times (S3) could not be read yet; the push is not recorded"));
  }
  auto dests = model::destinations_for_push(index, src, push.repository, push.tag);
  const auto pushed = model::parse_rfc3339(push.timestamp);
  std::erase_if(dests, [&](const RegistryKey& d) {
    auto since = model::parse_rfc3339(effective_since(src, d));
    if (!pushed || !since) return false;
    // A push time in whole seconds (ECR's imagePushedAt as some APIs give it) is compared in
    // whole seconds: a push in the second the destination started to apply counts as after.
    if (std::chrono::floor<std::chrono::seconds>(*pushed) == *pushed) {
      return *pushed < std::chrono::floor<std::chrono::seconds>(*since);
    }
    return *pushed < *since;  // S3: before this destination applied
  });
  // The baseline learns a tag only once its push is decided: a push whose record could not be
  // written is seen again by the next poll.
  if (dests.empty()) {
    note_known(src, push.repository, push.tag, push.digest);
    pushes.Add({{"via", via}, {"outcome", "no_destination"}}).Increment();
    co_return std::expected<void, std::string>{};
  }
  auto record = new_record(src, push, dests);
  if (records.contains(record.metadata.name) || recorded_already(src, push, dests)) {
    note_known(src, push.repository, push.tag, push.digest);
    pushes.Add({{"via", via}, {"outcome", "duplicate"}}).Increment();
    co_return std::expected<void, std::string>{};
  }
  // Durable before the registry hears 200 (S1); the engine's thread goes on meanwhile.
  const std::string name = record.metadata.name;
  // Named first: GCC 12 destroys temporaries built in a co_await's arguments twice.
  const std::string lane = "ir/" + name;
  StoreWriter::Write write = [store = &state, record] { return store->save(record); };
  struct Recording {  // a twin arriving meanwhile (a poll and the notification) finds this one
    std::multimap<std::string, const model::ImageReplication*>& all;
    std::multimap<std::string, const model::ImageReplication*>::iterator at;
    ~Recording() { all.erase(at); }
  } recording_now{recording, recording.emplace(recorded_key(record.spec.source), &record)};
  auto w = co_await writer.write(lane, std::move(write));
  if (!w) co_return std::unexpected(w.error());
  if (records.contains(name)) {  // the same push, recorded by a twin that was written first
    note_known(src, push.repository, push.tag, push.digest);
    pushes.Add({{"via", via}, {"outcome", "duplicate"}}).Increment();
    co_return std::expected<void, std::string>{};
  }
  note_known(src, push.repository, push.tag, push.digest);
  pushes.Add({{"via", via}, {"outcome", "replicating"}}).Increment();
  spdlog::info(
      "msg=\"push recorded\" record={} registry={} repository={} digest={} tag={} destinations={} "
      "via={}",
      record.metadata.name, key_text(src), push.repository, push.digest, push.tag, dests.size(),
      via);
  note_recorded(record);
  records.emplace(name, std::move(record));
  for (const auto& d : dests) enqueue(name, d);
  co_return std::expected<void, std::string>{};
}

std::optional<NotificationOutcome> authenticate_notification(const model::ResourceIndex& index,
                                                            const std::string& registry_name,
                                                            const std::string& authorization) {
  const model::Registry* reg = index.registry_named(registry_name);
  if (!reg) return NotificationOutcome{404, "no Registry named \"" + registry_name + "\""};
  if (reg->spec.notifications_token_secret_ref) {
    const auto& ref = *reg->spec.notifications_token_secret_ref;
    const model::Secret* s = index.secret(ref);
    auto tok = s ? s->data.find("token") : decltype(s->data.end()){};
    if (!s || tok == s->data.end()) {
      return NotificationOutcome{503, "notification token Secret " + ref.namespace_ + "/" +
                                          ref.name + " not found or has no token key"};
    }
    const std::string expected = "Bearer " + tok->second;
    bool same = expected.size() == authorization.size();
    unsigned char diff = 0;
    for (std::size_t i = 0; same && i < expected.size(); ++i)
      diff |= expected[i] ^ authorization[i];
    if (!same || diff != 0) return NotificationOutcome{401, "missing or wrong bearer token"};
  }
  return std::nullopt;
}

std::optional<NotificationOutcome> ReplicationEngine::Impl::authenticate_notification(
    const std::string& registry_name, const std::string& authorization) const {
  return engine::authenticate_notification(index, registry_name, authorization);
}

asio::awaitable<NotificationOutcome> ReplicationEngine::Impl::on_notification(
    std::string registry_name, std::string content_type, std::string authorization, std::string body) {
  auto out = co_await take_notification(registry_name, content_type, authorization, body);
  count_notification(registry_name, out.status);
  co_return out;
}

// ferry_notifications_total{registry, code}: a name that is no Registry counts as "unknown", so
// requests to made-up paths cannot grow the label set.
void ReplicationEngine::Impl::count_notification(const std::string& registry_name,
                                                 int status) const {
  const bool known_name = index.registry_named(registry_name) != nullptr;
  m->notifications
      .Add({{"registry", known_name ? registry_name : std::string("unknown")},
            {"code", std::to_string(status)}})
      .Increment();
}

asio::awaitable<NotificationOutcome> ReplicationEngine::Impl::take_notification(
    const std::string& registry_name, const std::string& content_type,
    const std::string& authorization, const std::string& body) {
  if (auto refused = authenticate_notification(registry_name, authorization)) co_return *refused;
  const model::Registry* reg = index.registry_named(registry_name);
  if (!model::is_notification_content_type(content_type)) {
    co_return NotificationOutcome{
        415, "content type \"" + content_type +
                 "\" is not application/vnd.docker.distribution.events.v1+json or v2+json"};
  }
  auto events = model::parse_notification(body);
  if (!events) co_return NotificationOutcome{400, events.error()};
  for (const auto& e : *events) {
    const RegistryKey source = reg->key();
    auto r = co_await handle_push(source, e, "notification");
    if (!r) {
      spdlog::error("msg=\"cannot record push\" registry={} repository={} digest={} error=\"{}\"",
                    registry_name, e.repository, e.digest, r.error());
      co_return NotificationOutcome{503, "cannot record push: " + r.error()};
    }
  }
  save_known_soon();
  co_return NotificationOutcome{200, std::to_string(events->size()) + " manifest pushes"};
}

}  // namespace ferry::engine
