// What the engine keeps besides records: S3 effective times, polling baselines, its own writes
// (S4).
#include <spdlog/spdlog.h>

#include "engine/engine_impl.hpp"

namespace ferry::engine {

namespace {

// State-file key for a registry's polling baseline.
std::string known_state_key(const RegistryKey& k) {
  return "known-" + k.registry_id + "-" + k.region;
}

}  // namespace

std::string ReplicationEngine::Impl::self_write_key(const RegistryKey& dest,
                                                    const model::ImageSource& src) {
  return key_text(dest) + "|" + src.repository_name + "|" + src.image_digest;
}

// S3: when each (source, destination) pair started to apply; kept across restarts.
void ReplicationEngine::Impl::update_effective_times() {
  if (!effective_loaded) {
    auto v = state.load_state("effective");
    if (!v) {
      spdlog::error(
          "msg=\"cannot read the effective times; pushes wait until they are read\" retry_in_ms={} "
          "error=\"{}\"",
          effective_retry.count(), v.error());
      retry_effective_times();
      return;
    }
    if (*v && (*v)->is_object()) {
      for (const auto& [src, dests] : (*v)->as_object()) {
        if (!dests.is_object()) continue;
        for (const auto& [dst, since] : dests.as_object()) {
          if (since.is_string()) effective[src][dst] = since.as_string();
        }
      }
    }
    effective_loaded = true;
  }
  std::map<std::string, std::map<std::string, std::string>> next;
  std::map<RegistryKey, std::map<RegistryKey, std::string>> snapshot;
  const std::string now = now_text();
  for (const auto& c : index.configs()) {
    const std::string src = key_text(c.key());
    for (const auto& d : model::unique_destinations(c.spec)) {
      const std::string dst = key_text(d);
      auto old = effective.find(src);
      std::string since = now;
      if (old != effective.end() && old->second.contains(dst)) since = old->second.at(dst);
      next[src][dst] = since;
      snapshot[c.key()][d] = since;
    }
  }
  {
    std::lock_guard lock(effective_mutex);
    effective_snapshot = std::move(snapshot);
  }
  if (next != effective) {
    effective = std::move(next);
    json::object o;
    for (const auto& [src, dests] : effective) {
      json::object d;
      for (const auto& [dst, since] : dests) d[dst] = since;
      o[src] = std::move(d);
    }
    writer.submit("state/effective", [store = &state, o = std::move(o)] { return store->save_state("effective", o); },
                  [](const StoreWriter::Result& w) {
                    if (!w) spdlog::error("msg=\"cannot persist effective times\" error=\"{}\"", w.error());
                  });
    if (opts.on_effective_change) opts.on_effective_change();
  }
}

void ReplicationEngine::Impl::retry_effective_times() {
  if (effective_retry_armed) return;
  once_after(&Impl::effective_retry_armed, effective_retry, &Impl::update_effective_times);
  effective_retry =
      std::min<std::chrono::milliseconds>(effective_retry * 2, std::chrono::seconds(30));
}

std::string ReplicationEngine::Impl::effective_since(const RegistryKey& src,
                                                     const RegistryKey& dst) const {
  auto s = effective.find(key_text(src));
  if (s == effective.end()) return {};
  auto d = s->second.find(key_text(dst));
  return d == s->second.end() ? std::string() : d->second;
}

// The polling baseline of a registry, read from the store once; nullptr while it cannot be
// read (an unreadable baseline taken for an empty one would make the next poll a new
// baseline and drop the pushes made meanwhile).
ReplicationEngine::Impl::Known* ReplicationEngine::Impl::known_for(const RegistryKey& reg) {
  const std::string k = key_text(reg);
  auto it = known.find(k);
  if (it != known.end()) return &it->second;
  Known kn;
  kn.key = reg;
  auto v = state.load_state(known_state_key(reg));
  if (!v) {
    spdlog::error("msg=\"cannot read the polling baseline\" registry={} error=\"{}\"", k,
                  v.error());
    return nullptr;
  }
  if (*v && (*v)->is_object()) {
    const auto& o = (*v)->as_object();
    if (auto* b = o.if_contains("baselined"); b && b->is_bool()) kn.baselined = b->as_bool();
    if (auto* repos = o.if_contains("repositories"); repos && repos->is_object()) {
      for (const auto& [repo, tags] : repos->as_object()) {
        if (!tags.is_object()) continue;
        for (const auto& [tag, digest] : tags.as_object()) {
          if (digest.is_string()) {
            kn.tags[std::string(repo)][std::string(tag)] = digest.as_string();
            ++kn.size;
          }
        }
      }
    }
  }
  return &known.emplace(k, std::move(kn)).first->second;
}

// Only registries polled as sources keep a baseline; elsewhere there is nothing to compare.
bool ReplicationEngine::Impl::polled(const RegistryKey& reg) const {
  const model::Registry* r = index.registry(reg);
  return r && r->spec.enabled && r->spec.poll_interval.count() > 0 &&
         index.config_for(reg) != nullptr;
}

void ReplicationEngine::Impl::note_known(const RegistryKey& reg, const std::string& repo,
                                         const std::string& tag, const std::string& digest) {
  if (tag.empty() || !polled(reg)) return;
  Known* kn = known_for(reg);
  if (!kn) return;  // the next poll sees the tag again
  auto& slot = kn->tags[repo][tag];
  if (slot == digest) return;
  if (slot.empty()) ++kn->size;
  slot = digest;
  kn->dirty = true;
}

void ReplicationEngine::Impl::save_known(const RegistryKey& reg) {
  if (!polled(reg)) return;
  Known* kn = known_for(reg);
  if (!kn || !kn->dirty) return;
  json::object repos;
  for (const auto& [repo, tags] : kn->tags) {
    json::object t;
    for (const auto& [tag, digest] : tags) t[tag] = digest;
    repos[repo] = std::move(t);
  }
  json::object o{{"baselined", kn->baselined}, {"repositories", std::move(repos)}};
  kn->dirty = false;  // set again if this write fails
  const std::string key = known_state_key(reg);
  writer.submit("state/" + key, [store = &state, key, o = std::move(o)] { return store->save_state(key, o); },
                [self = shared_from_this(), k = key_text(reg)](const StoreWriter::Result& w) {
                  if (w) return;
                  spdlog::error("msg=\"cannot persist polling baseline\" registry={} error=\"{}\"", k, w.error());
                  if (auto it = self->known.find(k); it != self->known.end()) it->second.dirty = true;
                });
}

void ReplicationEngine::Impl::save_known_soon() {
  once_after(&Impl::known_flush_armed, std::chrono::seconds(1), &Impl::save_all_known);
}

void ReplicationEngine::Impl::save_all_known() {
  for (auto& [k, kn] : known) {
    if (kn.dirty) save_known(kn.key);
  }
}

}  // namespace ferry::engine
