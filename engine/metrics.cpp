#include "engine/metrics.hpp"

namespace ferry::engine {

namespace {
template <typename Builder>
auto& family(Builder b, const char* name, const char* help, prometheus::Registry& r) {
  return b.Name(name).Help(help).Register(r);
}
}  // namespace

EngineMetrics::EngineMetrics()
    : registry(std::make_shared<prometheus::Registry>()),
      replications(family(prometheus::BuildCounter(), "ferry_replications_total",
                          "Destination replications finished, by destination Registry, result and "
                          "failure code",
                          *registry)),
      pushes(family(prometheus::BuildCounter(), "ferry_pushes_total",
                    "Pushes seen (notifications, polls, SQS messages, referrers), by how they were "
                    "noticed and what became of them",
                    *registry)),
      bytes(family(prometheus::BuildCounter(), "ferry_bytes_copied_total",
                   "Blob bytes written to destinations, each committed blob once", *registry)
                .Add({})),
      in_flight(family(prometheus::BuildGauge(), "ferry_replications_in_flight",
                       "Destination copies running or queued", *registry)
                    .Add({})),
      copies(family(prometheus::BuildGauge(), "ferry_copies",
                    "Unfinished destination copies by state: running, queued (waiting for a slot) or "
                    "retry_wait (paused between failed attempts)",
                    *registry)),
      running(copies.Add({{"state", "running"}})),
      queued(copies.Add({{"state", "queued"}})),
      pausing(copies.Add({{"state", "retry_wait"}})),
      oldest(family(prometheus::BuildGauge(), "ferry_oldest_copy_seconds",
                    "Age of the oldest unfinished destination copy, since it was first queued (0 "
                    "when none)", *registry)
                 .Add({})),
      latency(family(prometheus::BuildHistogram(), "ferry_push_to_complete_seconds",
                     "Time from the push (registry timestamp) to COMPLETE, by destination Registry",
                     *registry)),
      poll_duration(family(prometheus::BuildHistogram(), "ferry_poll_duration_seconds",
                           "Time one poll of a source Registry took", *registry)),
      polls(family(prometheus::BuildCounter(), "ferry_polls_total",
                   "Polls of a source Registry, by result (success, error)", *registry)),
      poll_success(family(prometheus::BuildGauge(), "ferry_poll_last_success_timestamp_seconds",
                          "Unix time of the last poll of a Registry that succeeded", *registry)),
      notifications(family(prometheus::BuildCounter(), "ferry_notifications_total",
                           "Registry notification requests, by Registry and HTTP status answered",
                           *registry)),
      responses(family(prometheus::BuildCounter(), "ferry_registry_responses_total",
                       "HTTP responses from registries, by Registry and status class (error: no "
                       "response)",
                       *registry)) {}

prometheus::Histogram& EngineMetrics::latency_for(const std::string& destination) {
  return latency.Add({{"destination", destination}},
                     prometheus::Histogram::BucketBoundaries{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30,
                                                             60, 300, 1800});
}

prometheus::Histogram& EngineMetrics::poll_duration_for(const std::string& registry_name) {
  return poll_duration.Add({{"registry", registry_name}},
                           prometheus::Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.25, 0.5, 1,
                                                                   2.5, 5, 10, 30, 60, 300});
}

std::string EngineMetrics::status_class(int status) {
  if (status < 100 || status > 599) return "error";
  return std::to_string(status / 100) + "xx";
}

}  // namespace ferry::engine
