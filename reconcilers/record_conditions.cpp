// The conditions of Ferry's own records: an ImageReplication's from its destinations' statuses,
// a Repository replication created.
#include <algorithm>

#include "reconcilers/status.hpp"
#include "reconcilers/status_parts.hpp"

namespace ferry::reconcilers {

using namespace detail;

void image_replication_conditions(model::ImageReplication& record, const std::string& now) {
  const auto& st = record.status.replication_statuses;
  const auto gen = record.metadata.generation;
  const auto complete = std::count_if(st.begin(), st.end(),
                                      [](const auto& s) { return s.status == model::kComplete; });
  std::string failed;
  std::size_t n_failed = 0;
  for (const auto& s : st) {
    if (s.status != model::kFailed) continue;
    ++n_failed;
    if (!failed.empty()) failed += "; ";
    failed += s.registry_id + "/" + s.region + (s.message.empty() ? "" : ": " + s.message);
  }
  const std::string of = " of " + std::to_string(st.size()) + " destinations";
  auto& conds = record.status.conditions;
  const bool all = !st.empty() && static_cast<std::size_t>(complete) == st.size();
  set_condition(conds,
                cond("Complete", all ? "True" : "False", all ? "AllComplete" : "NotAllComplete",
                     std::to_string(complete) + of + " COMPLETE", gen),
                now);
  set_condition(conds,
                cond("Failed", n_failed ? "True" : "False", n_failed ? "DestinationFailed" : "NoneFailed",
                     n_failed ? std::to_string(n_failed) + of + " FAILED: " + failed
                              : "no destination FAILED",
                     gen),
                now);
  const auto in_progress = std::count_if(
      st.begin(), st.end(), [](const auto& s) { return s.status == model::kInProgress; });
  if (in_progress > 0) {
    set_condition(conds,
                  cond(kReconciling, "True", "Replicating",
                       std::to_string(in_progress) + of + " IN_PROGRESS", gen),
                  now);
    set_condition(conds,
                  cond(kReady, "False", "Replicating",
                       std::to_string(complete) + of + " COMPLETE so far", gen),
                  now);
  } else {
    remove_condition(conds, kReconciling);
  }
  if (in_progress == 0 && n_failed > 0) {
    set_condition(conds, cond(kStalled, "True", "DestinationFailed",
                              std::to_string(n_failed) + of + " FAILED: " + failed, gen),
                  now);
    set_condition(conds, cond(kReady, "False", "DestinationFailed",
                              std::to_string(n_failed) + of + " FAILED: " + failed, gen),
                  now);
  } else {
    remove_condition(conds, kStalled);
  }
  if (all) {
    set_condition(conds, cond(kReady, "True", "AllComplete", std::to_string(complete) + of + " COMPLETE", gen),
                  now);
  }
  record.status.observed_generation = gen;
}

void replicated_repository_conditions(model::Repository& record, const std::string& now) {
  const auto gen = record.metadata.generation;
  set_condition(record.status.conditions,
                cond(kReady, "True", "Created",
                     "created by replication" +
                         (record.status.source_registry
                              ? " from " + model::to_string(*record.status.source_registry) + "/" +
                                    record.status.source_repository_name
                              : std::string()),
                     gen),
                now);
  record.status.observed_generation = gen;
}

}  // namespace ferry::reconcilers
