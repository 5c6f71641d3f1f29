// Start (records loaded, unfinished ones resumed) and the TTL sweep of COMPLETE records.
#include <spdlog/spdlog.h>

#include <boost/asio/detached.hpp>

#include "engine/engine_impl.hpp"

namespace ferry::engine {

void ReplicationEngine::Impl::start() {
  std::vector<std::string> problems;
  for (auto& r : state.repositories(&problems))
    created_repositories[r.metadata.name] = std::move(r);
  for (auto& r : state.image_replications(&problems)) records[r.metadata.name] = std::move(r);
  for (const auto& p : problems)
    spdlog::error("msg=\"unreadable record skipped\" problem=\"{}\"", p);
  for (const auto& [name, rec] : records) {
    note_recorded(rec);
    for (const auto& st : rec.status.replication_statuses) {
      if (!st.authorized_by.empty())
        self_writes.insert(self_write_key({st.registry_id, st.region}, rec.spec.source));
    }
  }
  started = true;
  for (auto& [name, run] : backfills)
    load_backfill(run);  // before resuming: their records queue low
  std::size_t resumed = 0;
  for (auto& [name, rec] : records) {
    // A record whose status was never written (a crash between creating the object and writing
    // its status): each destination it names is still to be copied.
    model::add_missing_statuses(rec);
    for (const auto& s : rec.status.replication_statuses) {
      if (s.status == model::kInProgress) {
        enqueue(name, {s.registry_id, s.region});
        ++resumed;
      }
    }
  }
  spdlog::info("msg=\"engine started\" records={} resumed_destinations={}", records.size(),
               resumed);
  // Retry requests made while no engine ran (cluster mode: the annotation; the informer tells
  // the engine about later ones).
  std::vector<std::pair<std::string, std::string>> asked;
  for (const auto& [name, rec] : records) {
    auto a = rec.metadata.annotations.find(std::string(model::kRetryAnnotation));
    if (a != rec.metadata.annotations.end() && a->second != rec.status.last_handled_retry_at)
      asked.emplace_back(name, a->second);
  }
  for (const auto& [name, at] : asked) retry_now(name, at);
  pump();
  schedule_backfills();
  asio::co_spawn(io, sweep_loop(), asio::detached);
  asio::co_spawn(io, gauge_loop(), asio::detached);
}

// ferry_oldest_copy_seconds grows while nothing happens: refreshed every second.
asio::awaitable<void> ReplicationEngine::Impl::gauge_loop() {
  auto self = shared_from_this();
  asio::steady_timer t(io);
  while (!stopped) {
    // A destination that stopped being IN_PROGRESS without finish() (its record removed, say)
    // is no longer unfinished: it must not age forever.
    std::erase_if(unfinished, [this](const auto& entry) {
      if (queued.contains(entry.first)) return false;
      const auto bar = entry.first.find('|');
      auto rec = records.find(entry.first.substr(0, bar));
      if (rec == records.end()) return true;
      return std::ranges::none_of(rec->second.status.replication_statuses, [&](const auto& s) {
        return s.status == model::kInProgress &&
               key_text({s.registry_id, s.region}) == entry.first.substr(bar + 1);
      });
    });
    update_copy_gauges();
    t.expires_after(std::chrono::seconds(1));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

asio::awaitable<void> ReplicationEngine::Impl::sweep_loop() {
  auto self = shared_from_this();
  while (!stopped) {
    asio::steady_timer t(io,
                         std::min({opts.completed_ttl, opts.failed_ttl, std::chrono::seconds(60)}));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (stopped) break;
    const auto now = std::chrono::system_clock::now();
    std::vector<std::string> expired;
    for (const auto& [name, rec] : records) {
      if (!model::finished(rec)) continue;
      bool all_complete = true;
      std::optional<model::Timestamp> last;
      for (const auto& s : rec.status.replication_statuses) {
        all_complete = all_complete && s.status == model::kComplete;
        auto t2 = model::parse_rfc3339(s.completed_at);
        if (t2 && (!last || *t2 > *last)) last = t2;
      }
      // All COMPLETE: after completed_ttl. A FAILED destination among them: after failed_ttl,
      // so failures stay visible for a while and records do not grow without bound (S20).
      const auto ttl = all_complete ? opts.completed_ttl : opts.failed_ttl;
      if (last && now - *last > ttl) expired.push_back(name);
    }
    for (const auto& name : expired) {
      // Only Ferry's record goes; nothing in any registry is deleted (S10).
      writer.submit("ir/" + name, [store = &state, name] { return store->remove_image_replication(name); },
                    [self = shared_from_this(), name](const StoreWriter::Result& w) {
                      auto it = self->records.find(name);
                      if (!w || it == self->records.end()) return;  // the next sweep tries again
                      for (const auto& st : it->second.status.replication_statuses) {
                        self->self_writes.erase(
                            self_write_key({st.registry_id, st.region}, it->second.spec.source));
                      }
                      self->forget_recorded(it->second);
                      self->records.erase(it);
                    });
    }
  }
}

}  // namespace ferry::engine
