// Informer: list, watch, resume from the last resourceVersion, re-list on 410 Gone.
#include "operator/runtime/informer.hpp"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <condition_variable>

namespace ferry::runtime {

namespace json = boost::json;

Informer::Informer(kube::Api& api, kube::ResourceType type, std::string ns, Handler handler,
                   bool keep_objects)
    : api_(api),
      type_(std::move(type)),
      namespace_(std::move(ns)),
      handler_(std::move(handler)),
      keep_objects_(keep_objects) {}

std::string Informer::key_of(const json::value& object) {
  auto ns = kube::namespace_of(object);
  auto name = kube::name_of(object);
  return ns.empty() ? name : ns + "/" + name;
}

std::optional<json::value> Informer::get(const std::string& key) const {
  std::lock_guard lock(mutex_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return std::nullopt;
  return it->second;
}

std::vector<json::value> Informer::items() const {
  std::lock_guard lock(mutex_);
  std::vector<json::value> out;
  out.reserve(cache_.size());
  for (const auto& [k, v] : cache_) out.push_back(v);
  return out;
}

bool Informer::relist(std::stop_token stop) {
  // With a cache the list replaces it whole (what vanished from it is DELETED). Without one,
  // each page's objects go to the handler as they arrive: an informer over every
  // ImageReplication never holds them all.
  std::map<std::string, json::value> fresh;
  std::size_t n = 0;
  auto listed = api_.list_pages(
      type_, namespace_, 500,
      [&](std::vector<json::value>&& items) {
        n += items.size();
        for (auto& item : items) {
          if (keep_objects_) {
            fresh.emplace(key_of(item), std::move(item));
          } else {
            handler_("ADDED", item);
          }
        }
      },
      stop);
  if (!listed) {
    if (stop.stop_requested()) return false;
    spdlog::warn("msg=\"list failed\" resource={} error=\"{}\"", type_.plural,
                 listed.error().to_string());
    return false;
  }
  std::vector<json::value> gone;
  if (keep_objects_) {
    std::lock_guard lock(mutex_);
    for (auto& [k, v] : cache_) {
      if (!fresh.contains(k)) gone.push_back(std::move(v));
    }
    cache_ = fresh;
  }
  state_.listed(*listed);
  ++lists_;
  const bool first = !synced_.exchange(true);
  spdlog::info("msg=\"listed\" resource={} items={} resourceVersion={}", type_.plural, n, *listed);
  for (const auto& obj : gone) handler_("DELETED", obj);
  for (const auto& [k, obj] : fresh) handler_("ADDED", obj);
  if (first && on_synced_) on_synced_();
  return true;
}

void Informer::run(std::stop_token stop) {
  std::mutex m;
  std::condition_variable_any cv;
  auto backoff = std::chrono::milliseconds(1000);
  auto pause = [&] {
    std::unique_lock lock(m);
    cv.wait_for(lock, stop, backoff, [] { return false; });
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(30));
  };
  while (!stop.stop_requested()) {
    if (state_.phase() == WatcherState::Phase::NeedList) {
      if (!relist(stop)) {
        pause();
        continue;
      }
    }
    kube::WatchParams params;
    params.resource_version = state_.resource_version();
    params.allow_bookmarks = true;
    params.timeout_seconds = 290;
    auto on_event = [&](const kube::WatchEvent& ev) {
      state_.saw(ev.resource_version());
      if (ev.type == "BOOKMARK") return;
      json::value obj = ev.object;
      const auto key = key_of(obj);
      if (keep_objects_) {
        std::lock_guard lock(mutex_);
        if (ev.type == "DELETED") {
          cache_.erase(key);
        } else {
          cache_[key] = obj;
        }
      }
      handler_(ev.type, obj);
    };
    auto end = api_.watch(type_, namespace_, params, on_event, stop);
    if (!end) {
      spdlog::warn("msg=\"watch failed\" resource={} resourceVersion={} error=\"{}\"", type_.plural,
                   state_.resource_version(), end.error().to_string());
      pause();
      continue;
    }
    backoff = std::chrono::milliseconds(1000);
    state_.watch_ended(*end);
    if (*end == kube::WatchEnd::Gone) {
      spdlog::info("msg=\"watch expired (410 Gone); re-listing\" resource={} resourceVersion={}",
                   type_.plural, state_.resource_version());
    } else if (*end == kube::WatchEnd::Closed) {
      spdlog::debug("msg=\"watch closed; resuming\" resource={} resourceVersion={}", type_.plural,
                    state_.resource_version());
    }
  }
}

}  // namespace ferry::runtime
