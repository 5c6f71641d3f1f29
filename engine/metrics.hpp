// The engine's Prometheus metrics (SPEC §9): what the replication engine counts, in one place.
// Labels are bounded: Registry resource names, results, failure codes and status classes, never
// repositories or digests.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

namespace ferry::engine {

struct EngineMetrics {
  EngineMetrics();

  std::shared_ptr<prometheus::Registry> registry;
  // ferry_replications_total{destination, result, failure_code}
  prometheus::Family<prometheus::Counter>& replications;
  // ferry_pushes_total{via, outcome}: notifications, polls, SQS messages and referrers
  prometheus::Family<prometheus::Counter>& pushes;
  prometheus::Counter& bytes;  // ferry_bytes_copied_total: each committed blob once
  prometheus::Gauge& in_flight;  // ferry_replications_in_flight: running + queued
  prometheus::Family<prometheus::Gauge>& copies;  // ferry_copies{state}
  prometheus::Gauge& running;    // ferry_copies{state="running"}
  prometheus::Gauge& queued;     // ferry_copies{state="queued"}: waiting for a copy slot
  prometheus::Gauge& pausing;    // ferry_copies{state="retry_wait"}: between failed attempts
  // ferry_oldest_copy_seconds: age of the oldest destination copy not finished (any state above)
  prometheus::Gauge& oldest;
  prometheus::Family<prometheus::Histogram>& latency;  // ferry_push_to_complete_seconds{destination}
  prometheus::Family<prometheus::Histogram>& poll_duration;  // ferry_poll_duration_seconds{registry}
  prometheus::Family<prometheus::Counter>& polls;  // ferry_polls_total{registry, result}
  prometheus::Family<prometheus::Gauge>& poll_success;  // ferry_poll_last_success_timestamp_seconds
  prometheus::Family<prometheus::Counter>& notifications;  // ferry_notifications_total{registry, code}
  prometheus::Family<prometheus::Counter>& responses;  // ferry_registry_responses_total{registry, code}

  prometheus::Histogram& latency_for(const std::string& destination);
  prometheus::Histogram& poll_duration_for(const std::string& registry);
  // "2xx" … "5xx" for an HTTP status, "error" for 0 (no response: refused, reset, timeout, TLS).
  static std::string status_class(int status);
};

}  // namespace ferry::engine
