// The queue (pushes before backfill), copies in flight, finishing and retrying a destination.
#include <spdlog/spdlog.h>

#include <random>

#include "engine/engine_impl.hpp"
#include "reconcilers/status.hpp"
#include "registry/retry.hpp"

namespace ferry::engine {

void ReplicationEngine::Impl::enqueue(const std::string& record, const RegistryKey& dest) {
  if (!queued.insert(record + "|" + key_text(dest)).second) return;
  (backfill_of.contains(record) ? backfill_queue : queue).emplace_back(record, dest);
  in_flight_gauge.Set(static_cast<double>(queued.size()));
  if (started) pump();
}

void ReplicationEngine::Impl::pump() {
  while (!stopped && running < opts.max_parallel) {
    const bool low = queue.empty();
    if (low && (backfill_queue.empty() || backfill_running >= backfill_slots())) break;
    auto& from = low ? backfill_queue : queue;
    auto [name, dest] = from.front();
    from.pop_front();
    ++running;
    if (low) ++backfill_running;
    asio::co_spawn(io, replicate(name, dest),
                   [self = shared_from_this(), name, dest, low](std::exception_ptr e) {
                     --self->running;
                     if (low) --self->backfill_running;
                     self->queued.erase(name + "|" + key_text(dest));
                     self->in_flight_gauge.Set(static_cast<double>(self->queued.size()));
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
  auto it = created_repositories.find(model::repository_record_name(dest, repo));
  return it == created_repositories.end() ? nullptr : &it->second;
}

void ReplicationEngine::Impl::save_record(const model::ImageReplication& rec) {
  if (auto w = state.save(rec); !w) {
    spdlog::error("msg=\"cannot persist record\" record={} error=\"{}\"", rec.metadata.name,
                  w.error());
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
  replications.Add({{"result", std::string(status)}, {"failure_code", st->failure_code}})
      .Increment();
  if (status == model::kComplete) {
    auto pushed = model::parse_rfc3339(rec.spec.source.pushed_at);
    if (pushed) {
      latency.Observe(
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

}  // namespace ferry::engine
