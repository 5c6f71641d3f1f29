// The polling safety net: tags that changed since the baseline are pushes (S3, S4).
#include <spdlog/spdlog.h>

#include <boost/asio/detached.hpp>

#include "engine/engine_impl.hpp"

namespace ferry::engine {

void ReplicationEngine::Impl::restart_polling() {
  const std::uint64_t gen = ++poll_generation;
  if (stopped) return;
  for (const auto& c : index.configs()) {
    const model::Registry* reg = index.registry(c.key());
    if (!reg || !reg->spec.enabled) continue;
    if (reg->spec.type == model::RegistryType::Ecr && !reg->spec.ecr_events_queue_url.empty()) {
      asio::co_spawn(io, sqs_loop(gen, c.key()), asio::detached);
    }
    if (reg->spec.poll_interval.count() == 0) {
      // No polling: the baseline is still taken once so that enabling it later copies nothing old.
      continue;
    }
    asio::co_spawn(io, poll_loop(gen, c.key(), reg->spec.poll_interval), asio::detached);
  }
}

asio::awaitable<void> ReplicationEngine::Impl::poll_loop(std::uint64_t gen, RegistryKey reg,
                                                         std::chrono::milliseconds interval) {
  auto self = shared_from_this();
  // Before the first poll, let start() load the records so duplicates are recognised.
  while (!started && !stopped && gen == poll_generation) {
    asio::steady_timer t(io, std::chrono::milliseconds(50));
    co_await t.async_wait(asio::use_awaitable);
  }
  while (!stopped && gen == poll_generation) {
    co_await poll_once(reg);
    asio::steady_timer t(io, interval);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

asio::awaitable<void> ReplicationEngine::Impl::poll_once(RegistryKey reg) {
  auto ep_it = endpoints.find(key_text(reg));
  if (ep_it == endpoints.end() || !ep_it->second.error.empty()) co_return;
  const Endpoint ep = ep_it->second;
  auto copier_now = copier;
  const auto began = std::chrono::steady_clock::now();
  // ferry_polls_total, ferry_poll_duration_seconds, ferry_poll_last_success_timestamp_seconds
  const std::string label = registry_label(reg);
  auto polled = [&](bool ok) {
    m->polls.Add({{"registry", label}, {"result", ok ? "success" : "error"}}).Increment();
    m->poll_duration_for(label).Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    if (ok) {
      m->poll_success.Add({{"registry", label}})
          .Set(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                   .count());
    }
  };
  std::vector<model::PushEvent> found;
  std::size_t repositories = 0, seen = 0;
  if (ecr_of(reg)) {
    // ECR has no _catalog: DescribeRepositories and DescribeImages, with ECR's push times.
    std::set<std::string> names;
    auto listed = co_await list_ecr_images(reg, {});
    if (!listed) {
      spdlog::warn("msg=\"poll failed\" registry={} error=\"{}\"", key_text(reg), listed.error());
      polled(false);
      co_return;
    }
    for (auto& e : *listed) {
      if (opts.owns && !opts.owns(reg, e.repository)) continue;  // another shard's
      if (++seen > opts.max_known_tags_per_registry) break;
      names.insert(e.repository);
      found.push_back(std::move(e));
    }
    repositories = names.size();
  } else {
    const auto source = copier_now->client(ep.host, registry::Side::Source);
    auto& client = *source;
    auto repos = co_await client.catalog(1000);
    if (!repos) {
      spdlog::warn("msg=\"poll failed\" registry={} error=\"{}\"", key_text(reg),
                   repos.error().to_string());
      polled(false);
      co_return;
    }
    if (opts.owns) std::erase_if(*repos, [&](const std::string& r) { return !opts.owns(reg, r); });
    repositories = repos->size();
    // Tags of every repository, then each tag's digest: HEADs in parallel (loopback registries
    // answer a HEAD in milliseconds, so a sequential scan of 10,000 tags would take half a minute).
    std::vector<std::vector<std::string>> tag_lists(repos->size());
    co_await for_each_bounded(
        repos->size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
          auto tags = co_await client.tags((*repos)[i], 1000);
          if (tags) tag_lists[i] = std::move(*tags);  // else deleted meanwhile, or no tags yet
        });
    for (std::size_t i = 0; i < repos->size(); ++i) {
      for (auto& tag : tag_lists[i]) {
        if (++seen > opts.max_known_tags_per_registry) break;
        model::PushEvent e;
        e.repository = (*repos)[i];
        e.tag = std::move(tag);
        found.push_back(std::move(e));
      }
    }
    co_await for_each_bounded(
        found.size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
          auto head = co_await client.head_manifest(found[i].repository, found[i].tag);
          if (head && *head) {
            found[i].digest = (*head)->digest;
            found[i].media_type = (*head)->media_type;
          }
        });
    std::erase_if(found, [](const model::PushEvent& e) { return e.digest.empty(); });
  }
  if (seen > opts.max_known_tags_per_registry) {
    spdlog::warn(
        "msg=\"poll baseline bound reached; tags beyond it are not watched\" registry={} bound={}",
        key_text(reg), opts.max_known_tags_per_registry);
  }
  if (stopped) co_return;
  Known* known_now = known_for(reg);
  if (!known_now || !effective_loaded) {
    spdlog::warn(
        "msg=\"poll skipped: its baseline or the effective times cannot be read\" registry={}",
        key_text(reg));
    polled(false);
    co_return;
  }
  Known& kn = *known_now;
  if (!kn.baselined) {
    // S3: what exists when a configuration starts to apply is the baseline, never copied.
    for (const auto& e : found) note_known(reg, e.repository, e.tag, e.digest);
    kn.baselined = true;
    kn.dirty = true;
    save_known(reg);
    spdlog::info("msg=\"poll baseline recorded\" registry={} tags={}", key_text(reg), found.size());
    polled(true);
    co_return;
  }
  const std::string now = now_text();
  std::size_t new_pushes = 0;
  for (auto& e : found) {
    bool tag_known = false;
    auto r = kn.tags.find(e.repository);
    if (r != kn.tags.end()) {
      auto t = r->second.find(e.tag);
      if (t != r->second.end() && t->second == e.digest) continue;
      tag_known = t != r->second.end();
    }
    // A tag the baseline never learned whose image has a record (or one being written): that
    // push was decided and only the baseline's save was lost (a crash between the two), or its
    // notification is being recorded right now. Not a second push.
    const std::string image = image_key(reg, e.repository, e.tag, e.digest);
    if (!tag_known && (latest_recorded.contains(image) || recording.contains(image))) {
      note_known(reg, e.repository, e.tag, e.digest);
      continue;
    }
    e.id = "poll-" + now;
    if (e.timestamp.empty()) e.timestamp = now;  // ECR's imagePushedAt where it has one
    ++new_pushes;
    auto res = co_await handle_push(reg, e, "poll");
    if (!res) {
      spdlog::error("msg=\"cannot record polled push\" registry={} repository={} error=\"{}\"",
                    key_text(reg), e.repository, res.error());
    }
  }
  save_known(reg);
  co_await recheck_referrers(reg);
  polled(true);
  spdlog::info("msg=\"poll complete\" registry={} repositories={} tags={} new={} seconds={:.3f}",
               key_text(reg), repositories, found.size(), new_pushes,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
}

}  // namespace ferry::engine
