// Controller workers and their metrics.
#include "operator/runtime/controller.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <exception>

namespace ferry::runtime {

void Controller::work() {
  while (auto key = queue->get()) {
    const auto start = std::chrono::steady_clock::now();
    Outcome out;
    try {
      out = reconcile(*key);
    } catch (const std::exception& e) {
      spdlog::error("msg=\"reconcile threw\" controller={} name={} error=\"{}\"", name, *key,
                    e.what());
      out = Outcome::retry();
    }
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    metrics.duration->Observe(took);
    metrics.work->Observe(took);
    if (out.error) {
      metrics.errors->Increment();
      metrics.error_total->Increment();
      queue->add_rate_limited(*key);
    } else {
      queue->forget(*key);
      (out.settled || out.requeue_after.count() == 0 ? metrics.ok : metrics.requeue_afters)
          ->Increment();
      if (out.requeue_after.count() > 0) queue->add_after(*key, out.requeue_after);
    }
    queue->done(*key);
  }
}

void Controller::report_queue() {
  metrics.depth->Set(static_cast<double>(queue->len()));
  auto now = queue->counters();
  metrics.adds->Increment(static_cast<double>(now.adds - reported.adds));
  metrics.retries->Increment(static_cast<double>(now.retries - reported.retries));
  reported = now;
}

void register_controller_metrics(prometheus::Registry& registry,
                                 std::initializer_list<Controller*> controllers) {
  auto& total = prometheus::BuildCounter()
                    .Name("ferry_reconcile_total")
                    .Help("Reconciles per controller and result: success (a periodic resync "
                          "may follow), error (retried with backoff), requeue, requeue_after "
                          "(not ready yet: checked again sooner)")
                    .Register(registry);
  auto& errs = prometheus::BuildCounter()
                   .Name("ferry_reconcile_errors_total")
                   .Help("Reconciles that failed and were retried with backoff")
                   .Register(registry);
  auto& dur = prometheus::BuildHistogram()
                  .Name("ferry_reconcile_duration_seconds")
                  .Help("Time spent in one reconcile")
                  .Register(registry);
  auto& depth = prometheus::BuildGauge()
                    .Name("ferry_workqueue_depth")
                    .Help("Keys ready in the work queue")
                    .Register(registry);
  auto& adds = prometheus::BuildCounter()
                   .Name("ferry_workqueue_adds_total")
                   .Help("Keys added to the work queue")
                   .Register(registry);
  auto& waits = prometheus::BuildHistogram()
                    .Name("ferry_workqueue_queue_duration_seconds")
                    .Help("Time a key waited in the work queue before a worker took it")
                    .Register(registry);
  auto& work = prometheus::BuildHistogram()
                   .Name("ferry_workqueue_work_duration_seconds")
                   .Help("Time a worker spent on one key")
                   .Register(registry);
  auto& retries = prometheus::BuildCounter()
                      .Name("ferry_workqueue_retries_total")
                      .Help("Keys re-added after a failure (rate limited)")
                      .Register(registry);
  for (Controller* c : controllers) {
    auto& m = c->metrics;
    m.ok = &total.Add({{"controller", c->name}, {"result", "success"}});
    // Kept for the series users graph; no reconciler asks for a plain requeue.
    total.Add({{"controller", c->name}, {"result", "requeue"}});
    m.requeue_afters = &total.Add({{"controller", c->name}, {"result", "requeue_after"}});
    m.errors = &total.Add({{"controller", c->name}, {"result", "error"}});
    m.error_total = &errs.Add({{"controller", c->name}});
    m.duration = &dur.Add({{"controller", c->name}},
                          prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1,
                                                                  0.25, 0.5, 1, 2.5, 5, 10});
    const prometheus::Histogram::BucketBoundaries queue_buckets{0.001, 0.005, 0.01, 0.05, 0.1,
                                                                0.5,   1,     5,    10,   60};
    auto* wait = &waits.Add({{"name", c->name}}, queue_buckets);
    c->queue->on_dequeue(
        [wait](Duration d) { wait->Observe(std::chrono::duration<double>(d).count()); });
    m.work = &work.Add({{"name", c->name}}, queue_buckets);
    m.depth = &depth.Add({{"name", c->name}});
    m.adds = &adds.Add({{"name", c->name}});
    m.retries = &retries.Add({{"name", c->name}});
  }
}

}  // namespace ferry::runtime
