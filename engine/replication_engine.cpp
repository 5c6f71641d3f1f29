// The engine's interface (replication_engine.hpp) over its parts (engine_impl.hpp).
#include "engine/replication_engine.hpp"

#include <prometheus/text_serializer.h>

#include "engine/engine_impl.hpp"

namespace ferry::engine {

ReplicationEngine::ReplicationEngine(asio::io_context& io, store::RecordStore& state,
                                     EngineOptions options)
    : impl_(std::make_shared<Impl>(io, state, std::move(options))) {}

ReplicationEngine::~ReplicationEngine() { impl_->stopped = true; }

void ReplicationEngine::set_resources(std::vector<model::Resource> resources) {
  impl_->set_resources(std::move(resources));
}

void ReplicationEngine::start() { impl_->start(); }

void ReplicationEngine::stop() {
  impl_->stopped = true;
  ++impl_->poll_generation;
  impl_->save_all_known();
  impl_->flush_backfills();
}

std::size_t ReplicationEngine::running() const { return impl_->running; }

std::size_t ReplicationEngine::pending_writes() const { return impl_->writer.pending(); }

asio::awaitable<bool> ReplicationEngine::drained(std::chrono::steady_clock::time_point deadline) {
  auto im = impl_;
  im->writer.on_finished([weak = std::weak_ptr(im)] {
    if (auto self = weak.lock()) self->drain_signal.cancel();
  });
  while (im->running > 0 || im->writer.pending() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) co_return false;
    im->drain_signal.expires_at(deadline);
    co_await im->drain_signal.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return true;
}

std::size_t ReplicationEngine::retry(const std::string& record, const std::string& requested_at) {
  return impl_->retry_now(record, requested_at);
}

std::optional<NotificationOutcome> ReplicationEngine::authenticate_notification(
    const std::string& registry_name, const std::string& authorization) const {
  auto refused = impl_->authenticate_notification(registry_name, authorization);
  if (refused) impl_->count_notification(registry_name, refused->status);
  return refused;
}

asio::awaitable<NotificationOutcome> ReplicationEngine::on_notification(std::string registry_name,
                                                                        std::string content_type,
                                                                        std::string authorization,
                                                                        std::string body) {
  auto self = impl_;  // alive until the write is answered, even if the engine goes meanwhile
  co_return co_await self->on_notification(std::move(registry_name), std::move(content_type),
                                           std::move(authorization), std::move(body));
}

std::map<std::string, model::ReplicationBackfillStatus> ReplicationEngine::backfills() const {
  return impl_->backfill_statuses();
}

std::vector<model::ImageReplication> ReplicationEngine::records() const {
  std::vector<model::ImageReplication> out;
  for (const auto& [name, rec] : impl_->records) out.push_back(rec);
  return out;
}

std::map<model::RegistryKey, std::string> ReplicationEngine::effective_since(
    const model::RegistryKey& source) const {
  std::lock_guard lock(impl_->effective_mutex);
  auto it = impl_->effective_snapshot.find(source);
  return it == impl_->effective_snapshot.end() ? std::map<model::RegistryKey, std::string>{}
                                               : it->second;
}

std::string ReplicationEngine::metrics_text() const {
  prometheus::TextSerializer s;
  return s.Serialize(impl_->m->registry->Collect());
}

std::vector<prometheus::MetricFamily> ReplicationEngine::metric_families() const {
  return impl_->m->registry->Collect();
}

}  // namespace ferry::engine
