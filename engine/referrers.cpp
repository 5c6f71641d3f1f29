// Referrers (S19): signatures, SBOMs and other artifacts whose `subject` is an image follow that
// image to every destination it reached. When a record finishes with a COMPLETE destination, its
// image's referrers at the source are looked up (the referrers API, or the sha256-<hex> tag of the
// tag schema) and each becomes a record of its own to those destinations, through the ordinary
// copy path (S2, S8, S12, S13 apply as to a push). Polling looks again for a while, on registries
// with the API, since a referrer pushed there by digest alone shows in no tag list.
#include <spdlog/spdlog.h>

#include <boost/asio/detached.hpp>

#include "engine/engine_impl.hpp"

namespace ferry::engine {

namespace {

constexpr std::size_t kRecheckRecords = 500;     // per poll
constexpr std::chrono::hours kRecheckWindow{1};  // records this young are looked at again
constexpr std::string_view kReferrersPushId = "referrers-of-";  // push id of a referrer's record

}  // namespace

void ReplicationEngine::Impl::follow_referrers_soon(const std::string& record) {
  asio::co_spawn(io, follow_referrers(record), asio::detached);
}

void ReplicationEngine::Impl::follow_referrers_soon(RegistryKey source, std::string repository,
                                                    std::string digest,
                                                    std::vector<RegistryKey> dests) {
  asio::co_spawn(io, follow_referrers_of(source, repository, digest, dests), asio::detached);
}

bool ReplicationEngine::Impl::has_record_for(const RegistryKey& source,
                                             const model::PushEvent& push) const {
  for (const auto& [name, rec] : records) {
    const auto& s = rec.spec.source;
    if (s.repository_name == push.repository && s.image_digest == push.digest &&
        s.image_tag == push.tag && s.registry_id == source.registry_id &&
        s.region == source.region) {
      return true;
    }
  }
  return false;
}

asio::awaitable<void> ReplicationEngine::Impl::follow_referrers(std::string name) {
  auto self = shared_from_this();
  auto it = records.find(name);
  if (it == records.end() || stopped) co_return;
  // Named copies, not temporaries: GCC 12 destroys temporaries of a co_await's call too early.
  const model::ImageSource src = it->second.spec.source;
  const RegistryKey source{src.registry_id, src.region};
  std::vector<RegistryKey> dests;
  for (const auto& st : it->second.status.replication_statuses) {
    if (st.status == model::kComplete) dests.push_back({st.registry_id, st.region});
  }
  co_await follow_referrers_of(source, src.repository_name, src.image_digest, std::move(dests));
}

asio::awaitable<void> ReplicationEngine::Impl::follow_referrers_of(RegistryKey src_key,
                                                                   std::string repository,
                                                                   std::string digest,
                                                                   std::vector<RegistryKey> dests) {
  auto self = shared_from_this();
  if (stopped) co_return;
  auto ep = endpoints.find(key_text(src_key));
  if (dests.empty() || ep == endpoints.end() || !ep->second.error.empty()) co_return;
  const std::string host = ep->second.host;
  if (auto ready = co_await ecr_ready(src_key); !ready) co_return;
  auto copier_now = copier;
  const auto source = copier_now->client(host, registry::Side::Source);
  auto refs = co_await source->referrers(repository, digest);
  if (!refs) {
    spdlog::warn("msg=\"cannot list referrers\" registry={} repository={} digest={} error=\"{}\"",
                 key_text(src_key), repository, digest, refs.error().to_string());
    co_return;
  }
  if (refs->api) referrers_api.insert(key_text(src_key));
  std::vector<model::PushEvent> found;
  const std::string push_id = std::string(kReferrersPushId) + digest;
  if (!refs->fallback_tag.empty()) {
    // The tag schema's index lists every referrer: copying it as the tag it is takes them along
    // and keeps them discoverable at a destination without the referrers API.
    found.push_back({.id = push_id,
                     .repository = repository,
                     .digest = refs->fallback_index,
                     .tag = refs->fallback_tag,
                     .media_type = std::string(registry::media::oci_index)});
  } else {
    for (const auto& d : refs->manifests) {
      found.push_back({.id = push_id,
                       .repository = repository,
                       .digest = d.digest,
                       .media_type = d.media_type});
    }
  }
  if (stopped) co_return;
  for (const auto& p : found) {
    if (is_self_write(src_key, p) || has_record_for(src_key, p)) continue;
    auto record = new_record(src_key, p, dests);
    if (records.contains(record.metadata.name)) continue;
    // Named first: GCC 12 destroys temporaries built in a co_await's arguments twice.
    const std::string lane = "ir/" + record.metadata.name;
    StoreWriter::Write write = [store = &state, record] { return store->save(record); };
    auto w = co_await writer.write(lane, std::move(write));
    if (stopped) co_return;
    if (records.contains(record.metadata.name)) continue;  // recorded meanwhile
    if (!w) {
      // Looked for again when the subject is (polling) or when the referrer is pushed again.
      spdlog::error("msg=\"cannot record referrer\" record={} error=\"{}\"", record.metadata.name,
                    w.error());
      continue;
    }
    pushes.Add({{"via", "referrers"}, {"outcome", "replicating"}}).Increment();
    spdlog::info(
        "msg=\"referrer recorded\" record={} registry={} repository={} digest={} tag={} subject={} "
        "destinations={}",
        record.metadata.name, key_text(src_key), p.repository, p.digest, p.tag, digest,
        dests.size());
    const std::string rec_name = record.metadata.name;
    note_recorded(record);
    records.emplace(rec_name, std::move(record));
    for (const auto& d : dests) enqueue(rec_name, d);
  }
}

// After a poll of a registry with the referrers API: the images replicated from it in the last
// hour (at most 500, newest first) are asked for referrers again.
asio::awaitable<void> ReplicationEngine::Impl::recheck_referrers(RegistryKey source) {
  auto self = shared_from_this();
  if (!referrers_api.contains(key_text(source))) co_return;
  const auto now = std::chrono::system_clock::now();
  std::vector<std::pair<model::Timestamp, std::string>> young;
  for (const auto& [name, rec] : records) {
    const auto& s = rec.spec.source;
    if (s.registry_id != source.registry_id || s.region != source.region || !model::finished(rec))
      continue;
    auto created = model::parse_rfc3339(rec.metadata.creation_timestamp);
    if (created && now - *created <= kRecheckWindow) young.emplace_back(*created, name);
  }
  std::ranges::sort(young, std::greater<>());
  if (young.size() > kRecheckRecords) young.resize(kRecheckRecords);
  co_await for_each_bounded(young.size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
    co_await follow_referrers(young[i].second);
  });
}

}  // namespace ferry::engine
