// A controller: a work queue of object keys, the reconciler that answers each, and its metrics
// (ferry_reconcile_*, ferry_workqueue_*). Workers take keys off the queue and act on the
// reconciler's Outcome: done, check again after a delay, or retry with the queue's backoff.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "operator/runtime/work_queue.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace ferry::runtime {

// What a reconcile asks for next.
struct Outcome {
  bool error = false;  // retry with the queue's per-key backoff
  std::chrono::seconds requeue_after{0};  // 0: nothing until the object changes
  // False when the check after requeue_after is because the object is not ready yet (counted as
  // result="requeue_after"); a healthy object's periodic resync is a "success".
  bool settled = true;

  static Outcome done() { return {}; }
  static Outcome retry() { return {.error = true}; }
  static Outcome after(std::chrono::seconds delay, bool settled = true) {
    return {.error = false, .requeue_after = delay, .settled = settled};
  }
};

struct Controller {
  explicit Controller(std::string controller_name) : name(std::move(controller_name)) {}

  std::string name;  // "registry", "registrypolicy", ...: the metrics' controller label
  std::unique_ptr<WorkQueue> queue = std::make_unique<WorkQueue>();
  std::function<Outcome(const std::string& key)> reconcile;

  // Takes keys until the queue shuts down; a reconcile that throws is an error (retried).
  void work();
  // Brings the queue's gauges and counters up to date, before the metrics are read.
  void report_queue();

  struct Metrics {
    prometheus::Counter* ok = nullptr;
    prometheus::Counter* errors = nullptr;
    prometheus::Counter* requeue_afters = nullptr;
    prometheus::Counter* error_total = nullptr;  // ferry_reconcile_errors_total
    prometheus::Histogram* work = nullptr;
    prometheus::Histogram* duration = nullptr;
    prometheus::Gauge* depth = nullptr;
    prometheus::Counter* adds = nullptr;
    prometheus::Counter* retries = nullptr;
  } metrics;
  QueueCounters reported;
};

// Registers the controllers' metric families in `registry` and each controller's series.
void register_controller_metrics(prometheus::Registry& registry,
                                 std::initializer_list<Controller*> controllers);

}  // namespace ferry::runtime
