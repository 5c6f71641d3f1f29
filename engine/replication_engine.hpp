// The replication engine: turns pushes into durable ImageReplication records and executes
// them with the copier, under ECR's semantics (SPEC §3). Cluster and standalone modes share it.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <prometheus/metric_family.h>

#include "reconcilers/model/replication.hpp"
#include "reconcilers/model/resources.hpp"
#include "store/record_store.hpp"

namespace ferry::engine {

struct EngineOptions {
  std::size_t max_parallel = 16;  // destination copies in flight
  int max_attempts = 5;  // per destination before catching up (S20); the copier retries inside each
  std::chrono::milliseconds retry_base{2000};
  // S20: pauses between attempts grow from retry_base to this; a destination failing for a cause
  // that can pass keeps catching up past max_attempts until its record is failed_ttl old.
  std::chrono::milliseconds retry_pause_max{std::chrono::minutes(10)};
  std::chrono::seconds failed_ttl{
      std::chrono::hours(24)};  // also: records with a FAILED destination are removed after
  std::chrono::seconds completed_ttl{std::chrono::hours(24)};  // COMPLETE records are removed after
  std::string user_agent = "ferry-replicator/0.1";    // how Ferry's own writes are recognised
  std::size_t max_known_tags_per_registry = 200'000;  // polling baseline bound
  // Called on the engine's thread when a destination ends FAILED (cluster mode records a
  // Kubernetes Event); the record is already saved.
  std::function<void(const model::ImageReplication&, const model::ReplicationStatus&)> on_failed;
  // Called on the engine's thread when the time a (source, destination) pair started to apply
  // changed (cluster mode shows it in the ReplicationConfig's status).
  std::function<void()> on_effective_change;
  // Called on the engine's thread when a ReplicationBackfill's status changed (cluster mode
  // writes it to the object's status); the object carries the spec the engine works from.
  std::function<void(const model::ReplicationBackfill&)> on_backfill_status;
  // Where record-store writes run when the store blocks on the network (cluster mode: a thread
  // pool; the Kubernetes API is a round trip away). Empty: on the engine's thread (a local store).
  boost::asio::any_io_executor store_executor;
  // Scale-out (SPEC §8): set, the engine takes only pushes of the repositories it owns (its
  // shard's) from notifications, polls and queues; the others are another engine's.
  std::function<bool(const model::RegistryKey& source, const std::string& repository)> owns;
  // Whether this engine runs the ReplicationBackfills (with shards, one engine does).
  bool run_backfills = true;
};

struct NotificationOutcome {
  unsigned status = 200;  // HTTP status for the registry
  std::string message;
};

// The part of POST /registry-events/{registryName} decided from the headers alone (SPEC §6):
// unknown Registry (404), token Secret missing (503), bearer token missing or wrong (401) — the
// bearer compared in constant time. nullopt: go on and read the body.
std::optional<NotificationOutcome> authenticate_notification(const model::ResourceIndex& index,
                                                            const std::string& registry_name,
                                                            const std::string& authorization);

// Runs on one io_context thread; every public call must be made on that thread (the HTTP
// handlers and timers of `ferry run` are).
class ReplicationEngine {
 public:
  ReplicationEngine(boost::asio::io_context& io, store::RecordStore& store,
                    EngineOptions options = {});
  ~ReplicationEngine();
  ReplicationEngine(const ReplicationEngine&) = delete;
  ReplicationEngine& operator=(const ReplicationEngine&) = delete;

  // Replaces the set of valid resources (Registries, ReplicationConfigs, RegistryPolicies,
  // user Repositories, Secrets). Records when each destination starts to apply (S3) and
  // (re)starts polling.
  void set_resources(std::vector<model::Resource> resources);

  // Loads the records and resumes every unfinished one. Call once, after the first
  // set_resources.
  void start();
  // Stops polling and new work; copies in flight finish or are resumed at the next start.
  void stop();
  // Destination copies running now (queued ones not counted).
  std::size_t running() const;
  // Record-store writes queued or under way (a stop waits for them too).
  std::size_t pending_writes() const;
  // After stop(): returns true once no copy runs and no write is pending, false at `deadline`
  // with some left. Woken by each copy's and write's end, not by polling.
  boost::asio::awaitable<bool> drained(std::chrono::steady_clock::time_point deadline);
  // `ferry retry` / the ferry.dev/retry annotation (S20): the record's FAILED destinations, and
  // those waiting to catch up, are tried again now, authorization decided anew. `requested_at`
  // is kept as status.lastHandledRetryAt; a request already handled does nothing. Returns the
  // destinations queued again.
  std::size_t retry(const std::string& record, const std::string& requested_at);

  // The part of POST /registry-events/{registryName} decided from the headers alone, before the
  // body is read (SPEC §6): unknown Registry (404), token Secret missing (503), bearer token
  // missing or wrong (401). nullopt: go on and read the body.
  std::optional<NotificationOutcome> authenticate_notification(
      const std::string& registry_name, const std::string& authorization) const;
  // POST /registry-events/{registryName}: records every push before answering 200.
  // The engine's thread stays free while the record is written.
  boost::asio::awaitable<NotificationOutcome> on_notification(std::string registry_name,
                                                              std::string content_type,
                                                              std::string authorization,
                                                              std::string body);

  std::vector<model::ImageReplication> records() const;
  // The status of every ReplicationBackfill the engine knows (S17), by name.
  std::map<std::string, model::ReplicationBackfillStatus> backfills() const;
  // When replication from `source` to each destination started to apply (S3), as persisted.
  // Safe to call from any thread.
  std::map<model::RegistryKey, std::string> effective_since(const model::RegistryKey& source) const;
  // Prometheus text exposition of the engine's metrics.
  std::string metrics_text() const;
  // The same metrics, collected (to be merged with other engines', each with its own label).
  std::vector<prometheus::MetricFamily> metric_families() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace ferry::engine
