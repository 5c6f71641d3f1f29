// The queue (pushes before backfill), copies in flight, finishing and retrying a destination.
#include <spdlog/spdlog.h>

#include <random>

#include "engine/engine_impl.hpp"
#include "reconcilers/status.hpp"
#include "registry/retry.hpp"

namespace ferry::engine {

void ReplicationEngine::Impl::enqueue(const std::string& record, const RegistryKey& dest) {
  const std::string key = record + "|" + key_text(dest);
  if (!queued.insert(key).second) return;
  unfinished.emplace(key, std::chrono::steady_clock::now());
  (backfill_of.contains(record) ? backfill_queue : queue).emplace_back(record, dest);
  update_copy_gauges();
  if (started) pump();
}

std::pair<std::string, std::string> ReplicationEngine::Impl::copy_registries(
    const std::string& record, const RegistryKey& dest) const {
  auto it = records.find(record);
  std::string source = it == records.end() ? std::string()
                                           : key_text({it->second.spec.source.registry_id,
                                                       it->second.spec.source.region});
  return {std::move(source), key_text(dest)};
}

bool ReplicationEngine::Impl::has_room(const std::pair<std::string, std::string>& regs) const {
  for (const auto* k : {&regs.first, &regs.second}) {
    auto ep = endpoints.find(*k);
    if (ep == endpoints.end() || ep->second.max_copies == 0) continue;
    auto at = copies_at.find(*k);
    if (at != copies_at.end() && at->second >= ep->second.max_copies) return false;
  }
  return true;
}

// Starts queued copies while slots are free: pushes first, then backfilled images (at most
// backfill_slots() of them). A copy whose source or destination registry is at its
// maxConcurrentCopies (S21) waits in place; the next one that fits goes first.
void ReplicationEngine::Impl::pump() {
  while (!stopped && running < opts.max_parallel) {
    auto pick = [this](std::deque<std::pair<std::string, RegistryKey>>& from)
        -> std::optional<std::pair<std::string, RegistryKey>> {
      for (auto it = from.begin(); it != from.end(); ++it) {
        if (!has_room(copy_registries(it->first, it->second))) continue;
        auto item = std::move(*it);
        from.erase(it);
        return item;
      }
      return std::nullopt;
    };
    bool low = false;
    auto next = pick(queue);
    if (!next && backfill_running < backfill_slots()) {
      next = pick(backfill_queue);
      low = next.has_value();
    }
    if (!next) break;
    auto [name, dest] = std::move(*next);
    auto regs = copy_registries(name, dest);
    ++running;
    if (low) ++backfill_running;
    ++copies_at[regs.first];
    if (regs.second != regs.first) ++copies_at[regs.second];
    update_copy_gauges();
    asio::co_spawn(io, replicate(name, dest),
                   [self = shared_from_this(), name, dest, low, regs](std::exception_ptr e) {
                     --self->running;
                     self->drain_signal.cancel();
                     if (low) --self->backfill_running;
                     for (const auto* k : {&regs.first, &regs.second}) {
                       if (k == &regs.second && regs.second == regs.first) break;
                       if (auto at = self->copies_at.find(*k);
                           at != self->copies_at.end() && --at->second == 0) {
                         self->copies_at.erase(at);
                       }
                     }
                     self->queued.erase(name + "|" + key_text(dest));
                     self->update_copy_gauges();
                     if (e) {
                       try {
                         std::rethrow_exception(e);
                       } catch (const std::exception& ex) {
                         spdlog::error(
                             "msg=\"replication crashed\" record={} destination={} error=\"{}\"",
                             name, key_text(dest), ex.what());
                       }
                     }
                     self->pump();
                   });
  }
}

void ReplicationEngine::Impl::update_copy_gauges() {
  in_flight_gauge.Set(static_cast<double>(queued.size()));
  m->running.Set(static_cast<double>(running));
  m->queued.Set(static_cast<double>(queued.size() - std::min(queued.size(), running)));
  m->pausing.Set(static_cast<double>(unfinished.size() - std::min(unfinished.size(), queued.size())));
  auto oldest = std::chrono::steady_clock::time_point::max();
  for (const auto& [k, since] : unfinished) oldest = std::min(oldest, since);
  m->oldest.Set(unfinished.empty() ? 0.0
                               : std::chrono::duration<double>(std::chrono::steady_clock::now() - oldest)
                                     .count());
}

std::string ReplicationEngine::Impl::registry_label(const RegistryKey& key) const {
  if (const auto* r = index.registry(key)) return r->metadata.name;
  return key_text(key);
}

model::ReplicationStatus* ReplicationEngine::Impl::status_of(model::ImageReplication& rec,
                                                             const RegistryKey& dest) {
  for (auto& s : rec.status.replication_statuses) {
    if (s.registry_id == dest.registry_id && s.region == dest.region) return &s;
  }
  return nullptr;
}

const model::Repository* ReplicationEngine::Impl::repository_settings(
    const RegistryKey& dest, const std::string& repo) const {
  if (const auto* user = index.repository(dest, repo)) return user;
  const auto name = model::repository_record_name(dest, repo);
  if (auto it = created_repositories.find(name); it != created_repositories.end()) return &it->second;
  auto pending = unsaved_repositories.find(name);  // created, its record not written yet
  return pending == unsaved_repositories.end() ? nullptr : &pending->second;
}

void ReplicationEngine::Impl::save_record(const model::ImageReplication& rec) {
  // The record as it is now; a newer version submitted before this one starts replaces it.
  writer.submit("ir/" + rec.metadata.name, [store = &state, rec] { return store->save(rec); },
                [self = shared_from_this(), name = rec.metadata.name](const StoreWriter::Result& w) {
                  if (w) {
                    self->unsaved_records.erase(name);
                    return;
                  }
                  spdlog::error(
                      "msg=\"cannot persist record; written again every second until it is\" "
                      "record={} error=\"{}\"",
                      name, w.error());
                  self->unsaved_records.insert(name);
                  self->once_after(&Impl::unsaved_armed, std::chrono::seconds(1), &Impl::save_unsaved);
                });
}

void ReplicationEngine::Impl::save_repository(model::Repository repo) {
  const std::string name = repo.metadata.name;
  unsaved_repositories[name] = repo;  // found by repository_settings() until it is written
  writer.submit("repo/" + name, [store = &state, repo = std::move(repo)] { return store->save(repo); },
                [self = shared_from_this(), name](const StoreWriter::Result& w) {
                  auto it = self->unsaved_repositories.find(name);
                  if (it == self->unsaved_repositories.end()) return;  // written by a later try
                  if (!w) {
                    spdlog::error("msg=\"cannot record repository; written again every second until it is\" "
                                  "record={} error=\"{}\"",
                                  name, w.error());
                    self->once_after(&Impl::unsaved_armed, std::chrono::seconds(1), &Impl::save_unsaved);
                    return;
                  }
                  spdlog::info("msg=\"repository recorded\" record={}", name);
                  self->created_repositories[name] = std::move(it->second);
                  self->unsaved_repositories.erase(it);
                });
}

// Records whose last write failed (the API server away, a full disk): the copy they describe is
// done and is not repeated; only the write is, until it succeeds.
void ReplicationEngine::Impl::save_unsaved() {
  for (const auto& name : std::vector<std::string>(unsaved_records.begin(), unsaved_records.end())) {
    auto rec = records.find(name);
    if (rec == records.end()) {
      unsaved_records.erase(name);
    } else {
      save_record(rec->second);
    }
  }
  for (const auto& [name, repo] : std::map<std::string, model::Repository>(unsaved_repositories)) {
    save_repository(repo);
  }
}

void ReplicationEngine::Impl::finish(const std::string& name, const RegistryKey& dest,
                                     std::string_view status, std::string failure_code,
                                     std::string message, bool tagged) {
  auto it = records.find(name);
  if (it == records.end()) return;
  auto& rec = it->second;
  auto* st = status_of(rec, dest);
  if (!st) return;
  st->status = status;
  st->failure_code = std::move(failure_code);
  st->message = std::move(message);
  st->tagged = tagged;
  st->next_attempt_at.clear();
  st->completed_at = now_text();
  model::summarize(rec);
  reconcilers::image_replication_conditions(rec,
                                            st->completed_at);  // Complete / Failed, for kstatus
  save_record(rec);
  backfill_item_done(name, status);
  // S19: the image's referrers follow it to the destinations it reached.
  if (model::finished(rec) &&
      std::ranges::any_of(rec.status.replication_statuses,
                          [](const auto& s) { return s.status == model::kComplete; })) {
    follow_referrers_soon(name);
  }
  attempts.erase(name + "|" + key_text(dest));
  creating_repository.erase(name + "|" + key_text(dest));
  unfinished.erase(name + "|" + key_text(dest));
  const std::string dest_label = registry_label(dest);
  replications
      .Add({{"destination", dest_label},
            {"result", std::string(status)},
            {"failure_code", st->failure_code}})
      .Increment();
  if (status == model::kComplete) {
    auto pushed = model::parse_rfc3339(rec.spec.source.pushed_at);
    if (pushed) {
      m->latency_for(dest_label).Observe(
          std::chrono::duration<double>(std::chrono::system_clock::now() - *pushed).count());
    }
    spdlog::info(
        "msg=\"replication complete\" record={} repository={} digest={} tag={} destination={} "
        "tagged={}",
        name, rec.spec.source.repository_name, rec.spec.source.image_digest,
        rec.spec.source.image_tag, key_text(dest), tagged);
  } else {
    spdlog::warn(
        "msg=\"replication failed\" record={} repository={} digest={} destination={} "
        "failure_code={} "
        "reason=\"{}\"",
        name, rec.spec.source.repository_name, rec.spec.source.image_digest, key_text(dest),
        st->failure_code, st->message);
    if (opts.on_failed) opts.on_failed(rec, *st);
  }
}

void ReplicationEngine::Impl::once_after(bool Impl::*armed, std::chrono::milliseconds d,
                                         void (Impl::*fn)()) {
  if (this->*armed) return;
  this->*armed = true;
  auto t = std::make_shared<asio::steady_timer>(io, d);
  t->async_wait([self = shared_from_this(), t, armed, fn](boost::system::error_code ec) {
    self.get()->*armed = false;
    if (!ec && !self->stopped) (self.get()->*fn)();
  });
}

// After a failed attempt: another one after a pause that grows (one backoff for every attempt,
// capped at retry_pause_max), or FAILED. A transient cause keeps the destination IN_PROGRESS past
// the attempt cycle, catching up until the record is failed_ttl old (S20), so a destination that is
// down for hours still gets every push; any other cause fails it once the cycle is spent.
asio::awaitable<void> ReplicationEngine::Impl::retry_or_fail(std::string name, RegistryKey dest,
                                                             Failure why) {
  if (stopped) co_return;  // resumed at the next start
  const std::string key = name + "|" + key_text(dest);
  const int n = ++attempts[key];
  auto it = records.find(name);
  if (it == records.end()) co_return;
  auto* st = status_of(it->second, dest);
  if (!st) co_return;
  const auto now = std::chrono::system_clock::now();
  const auto since = model::parse_rfc3339(it->second.metadata.creation_timestamp);
  const bool expired = since && now - *since >= opts.failed_ttl;
  if (n >= opts.max_attempts && (!why.transient || expired)) {
    finish(name, dest, model::kFailed, std::string(model::kReplicationFailed),
           why.text + " (after " + std::to_string(n) + " attempts" +
               (why.transient ? ", retried since " + it->second.metadata.creation_timestamp : "") +
               ")",
           false);
    co_return;
  }
  static thread_local std::mt19937 rng{std::random_device{}()};
  const registry::RetryPolicy pauses{.base_delay = opts.retry_base,
                                     .max_delay = opts.retry_pause_max};
  const auto delay =
      registry::retry_delay(pauses, n, std::uniform_real_distribution<double>(0, 1)(rng));
  const auto next = now + delay;
  st->message = "attempt " + std::to_string(n) + " failed: " + why.text +
                (n >= opts.max_attempts ? "; catching up until the destination answers" : "");
  st->next_attempt_at = model::format_rfc3339(
      std::chrono::time_point_cast<std::chrono::system_clock::duration>(next), true);
  save_record(it->second);
  spdlog::warn(
      "msg=\"replication attempt failed; retrying\" record={} destination={} attempt={} "
      "delay_ms={} catching_up={} error=\"{}\"",
      name, key_text(dest), n, delay.count(), n >= opts.max_attempts, why.text);
  // The pause holds no copy slot: a destination that is down for an hour must not keep copies to
  // the others waiting. The timer queues the destination again.
  auto timer = std::make_shared<asio::steady_timer>(io, delay);
  timer->async_wait([self = shared_from_this(), timer, name, dest](boost::system::error_code ec) {
    if (!ec && !self->stopped) self->enqueue(name, dest);
  });
  co_return;
}

std::size_t ReplicationEngine::Impl::retry_now(const std::string& name,
                                               const std::string& requested_at) {
  auto it = records.find(name);
  if (it == records.end() || requested_at.empty()) return 0;
  auto& rec = it->second;
  if (rec.status.last_handled_retry_at == requested_at) return 0;
  rec.status.last_handled_retry_at = requested_at;
  std::vector<RegistryKey> again;
  for (auto& st : rec.status.replication_statuses) {
    const bool failed = st.status == model::kFailed;
    const bool waiting = st.status == model::kInProgress && !st.next_attempt_at.empty();
    if (!failed && !waiting) continue;
    if (failed) {
      // A new start: authorization is decided again from the policy as it is now (S2, S9).
      st.status = model::kInProgress;
      st.failure_code.clear();
      st.completed_at.clear();
      st.authorized_by.clear();
      st.tagged = false;
    }
    st.message = "retry requested at " + requested_at;
    st.next_attempt_at.clear();
    again.push_back({st.registry_id, st.region});
    attempts.erase(name + "|" + key_text(again.back()));
  }
  model::summarize(rec);
  reconcilers::image_replication_conditions(rec, now_text());
  save_record(rec);
  spdlog::info("msg=\"retry requested\" record={} requested_at={} destinations={}", name,
               requested_at, again.size());
  for (const auto& d : again) enqueue(name, d);
  return again.size();
}

}  // namespace ferry::engine
