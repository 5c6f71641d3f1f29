// Push events of an ECR source (SPEC §7): ECR reports every push to EventBridge as an "ECR Image
// Action" event; a rule sends them to the SQS queue in spec.ecr.eventsQueueUrl. One long poll at a
// time per registry; a message is deleted once its push is recorded (or found not to be one), so a
// store that cannot be written leaves it in the queue, which hands it out again.
#include <spdlog/spdlog.h>

#include "engine/engine_impl.hpp"
#include "reconcilers/model/failpoint.hpp"

namespace ferry::engine {

asio::awaitable<void> ReplicationEngine::Impl::sqs_loop(std::uint64_t gen, RegistryKey reg) {
  auto self = shared_from_this();
  // Before the first receive, let start() load the records so duplicates are recognised.
  while (!started && !stopped && gen == poll_generation)
    co_await pause(std::chrono::milliseconds(50));
  std::chrono::milliseconds backoff{1000};
  while (!stopped && gen == poll_generation) {
    const auto e = ecr_of(reg);
    const model::Registry* r = index.registry(reg);
    if (!e || !e->sqs || !r)
      co_return;  // unusable (logged at reload) or gone; a reload starts anew
    const std::string url = r->spec.ecr_events_queue_url;
    auto got = co_await e->sqs->receive_message(url, 10, 20);
    if (!got) {
      spdlog::warn(
          "msg=\"cannot read ECR events\" registry={} queue={} retry_in_ms={} error=\"{}\"",
          key_text(reg), url, backoff.count(), got.error().to_string());
      co_await pause(backoff);
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(60));
      continue;
    }
    backoff = std::chrono::milliseconds(1000);
    // Taken even when a reload came meanwhile: received messages stay invisible until their
    // visibility timeout, so leaving them would only delay those pushes.
    for (auto& m : *got) co_await take_ecr_event(reg, std::move(m));
    if (!got->empty()) save_known_soon();
  }
}

asio::awaitable<void> ReplicationEngine::Impl::take_ecr_event(RegistryKey reg, aws::SqsMessage m) {
  auto self = shared_from_this();
  const auto e = ecr_of(reg);
  const model::Registry* r = index.registry(reg);
  if (!e || !e->sqs || !r) co_return;
  const std::string url = r->spec.ecr_events_queue_url;
  bool remove = true;
  auto event = model::parse_ecr_image_action(m.body);
  if (!event) {
    pushes.Add({{"via", "sqs"}, {"outcome", "malformed"}}).Increment();
    spdlog::warn("msg=\"malformed ECR event dropped\" registry={} message_id={} error=\"{}\"",
                 key_text(reg), m.message_id, event.error());
  } else if (!event->successful_push) {
    spdlog::debug("msg=\"ECR event is not a successful push\" registry={} message_id={}",
                  key_text(reg), m.message_id);
  } else if (event->account != reg.registry_id || event->region != reg.region) {
    pushes.Add({{"via", "sqs"}, {"outcome", "other_registry"}}).Increment();
    spdlog::warn(
        "msg=\"ECR event of another registry dropped\" registry={} event_registry={}/{} "
        "message_id={}",
        key_text(reg), event->account, event->region, m.message_id);
  } else if (opts.owns && !opts.owns(reg, event->push.repository)) {
    // Another shard's: left in the queue, which hands it to another consumer after its
    // visibility timeout.
    remove = false;
  } else {
    auto recorded = co_await handle_push(reg, event->push, "sqs");
    if (!recorded) {
      remove = false;
      spdlog::error(
          "msg=\"cannot record ECR push; the queue hands it out again\" registry={} repository={} "
          "digest={} error=\"{}\"",
          key_text(reg), event->push.repository, event->push.digest, recorded.error());
    }
  }
  if (!remove) co_return;
  FERRY_FAILPOINT("sqs.delete.before");  // recorded, still in the queue: handed out again later
  auto deleted = co_await e->sqs->delete_message(url, m.receipt_handle);
  if (deleted) FERRY_FAILPOINT("sqs.delete.after");
  if (!deleted) {
    // It comes back after the visibility timeout and is then a duplicate of its record.
    spdlog::warn("msg=\"cannot delete ECR event\" registry={} message_id={} error=\"{}\"",
                 key_text(reg), m.message_id, deleted.error().to_string());
  }
}

}  // namespace ferry::engine
