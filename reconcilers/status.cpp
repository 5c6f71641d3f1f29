// Pure status computation: conditions, and the status of Registry, RegistryPolicy,
// RepositoryCreationTemplate, ReplicationBackfill and invalid objects (the ReplicationConfig's is
// in config_status.cpp, records' conditions in record_conditions.cpp).
#include "reconcilers/status.hpp"

#include "reconcilers/status_parts.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <set>

#include "reconcilers/model/clock.hpp"
#include "reconcilers/model/policy.hpp"
#include "reconcilers/model/serialize.hpp"
#include "reconcilers/model/validate.hpp"

namespace ferry::reconcilers {

namespace json = boost::json;
using model::Condition;

void set_condition(std::vector<Condition>& conditions, Condition c, const std::string& now) {
  auto it = std::find_if(conditions.begin(), conditions.end(),
                         [&](const Condition& x) { return x.type == c.type; });
  if (it != conditions.end()) {
    c.last_transition_time = (it->status == c.status && !it->last_transition_time.empty())
                                 ? it->last_transition_time
                                 : now;
    *it = std::move(c);
  } else {
    c.last_transition_time = now;
    conditions.push_back(std::move(c));
  }
}

void remove_condition(std::vector<Condition>& conditions, std::string_view type) {
  std::erase_if(conditions, [&](const Condition& c) { return c.type == type; });
}

const Condition* find_condition(const std::vector<Condition>& conditions, std::string_view type) {
  for (const auto& c : conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

json::object stored_status(const json::value& object) {
  if (const auto* o = object.if_object()) {
    if (const auto* s = o->if_contains("status"); s && s->is_object()) return s->as_object();
  }
  return {};
}

std::vector<Condition> read_conditions(const json::value& object) {
  std::vector<Condition> out;
  const auto status = stored_status(object);
  const auto* conds = status.if_contains("conditions");
  if (!conds || !conds->is_array()) return out;
  for (const auto& v : conds->as_array()) {
    const auto* o = v.if_object();
    if (!o) continue;
    auto str = [&](const char* k) {
      const auto* x = o->if_contains(k);
      return x && x->is_string() ? std::string(x->as_string()) : std::string();
    };
    Condition c{
        str("type"), str("status"), str("reason"), str("message"), str("lastTransitionTime"), 0};
    if (const auto* g = o->if_contains("observedGeneration"); g && g->is_int64())
      c.observed_generation = g->as_int64();
    if (!c.type.empty()) out.push_back(std::move(c));
  }
  return out;
}

std::string validation_message(std::string_view kind, std::string_view name,
                               const model::FieldErrors& errors) {
  std::string out;
  for (const auto& e : errors) {
    if (!out.empty()) out += "; ";
    out += std::string(kind) + "/" + std::string(name) + ": " + model::to_string(e);
  }
  return out;
}

namespace {

std::int64_t generation_of_object(const json::value& object) {
  if (const auto* o = object.if_object()) {
    if (const auto* md = o->if_contains("metadata"); md && md->is_object()) {
      if (const auto* g = md->as_object().if_contains("generation"); g && g->is_int64())
        return g->as_int64();
    }
  }
  return 0;
}

}  // namespace

using namespace detail;

model::CommonStatus invalid_status(std::vector<Condition> old, std::int64_t generation,
                                   const std::string& message, const std::string& now) {
  set_condition(old, cond(kStalled, "True", "InvalidSpec", message, generation), now);
  set_condition(old, cond(kReady, "False", "InvalidSpec", message, generation), now);
  remove_condition(old, kReconciling);
  return with(std::move(old), generation);
}

model::CommonStatus ready_status(std::vector<Condition> old, std::int64_t generation,
                                 const std::string& reason, const std::string& message,
                                 const std::string& now) {
  set_condition(old, cond(kReady, "True", reason, message, generation), now);
  remove_condition(old, kStalled);
  remove_condition(old, kReconciling);
  return with(std::move(old), generation);
}

model::CommonStatus progressing_status(std::vector<Condition> old, std::int64_t generation,
                                       const std::string& reason, const std::string& message,
                                       const std::string& now) {
  set_condition(old, cond(kReady, "False", reason, message, generation), now);
  set_condition(old, cond(kReconciling, "True", reason, message, generation), now);
  remove_condition(old, kStalled);
  return with(std::move(old), generation);
}

model::CommonStatus failing_status(std::vector<Condition> old, std::int64_t generation,
                                   const std::string& reason, const std::string& message,
                                   const std::string& now) {
  set_condition(old, cond(kReady, "False", reason, message, generation), now);
  set_condition(old, cond(kStalled, "True", reason, message, generation), now);
  remove_condition(old, kReconciling);
  return with(std::move(old), generation);
}

json::object registry_status(const json::value& object, const model::Registry& registry,
                             const ProbeResult& probe, const std::string& now) {
  const auto gen = registry.metadata.generation;
  auto conds = read_conditions(object);
  model::CommonStatus s;
  if (!probe.reachable) {
    s = failing_status(std::move(conds), gen, "Unreachable",
                       "endpoint " + registry.spec.endpoint + ": " + probe.message, now);
  } else if (probe.credentials_accepted.has_value() && !*probe.credentials_accepted) {
    s = failing_status(std::move(conds), gen, "CredentialsRejected",
                       "endpoint " + registry.spec.endpoint + ": " + probe.message, now);
  } else {
    s = ready_status(std::move(conds), gen, "EndpointReachable", probe.message, now);
  }
  return merged(stored_status(object), model::to_json(s), {"observedGeneration", "conditions"});
}

json::object policy_status(const json::value& object, const model::RegistryPolicy& policy,
                           const std::string& now) {
  auto s = ready_status(
      read_conditions(object), policy.metadata.generation, "Valid",
      "the policy is valid and is evaluated for replication into " + model::to_string(policy.key()),
      now);
  return merged(stored_status(object), model::to_json(s), {"observedGeneration", "conditions"});
}

json::object template_status(const json::value& object, const model::RepositoryCreationTemplate& shape,
                             const std::string& now) {
  const std::string where = shape.spec.prefix == model::kRootPrefix
                                ? "every repository without a longer-prefix template"
                                : "repositories under " + shape.spec.prefix + (shape.spec.prefix.ends_with('/') ? "" : "/");
  const std::string message =
      shape.applies_to_replication()
          ? "shapes " + where + " that replication creates in " + model::to_string(shape.key())
          : "not applied for REPLICATION, so replication ignores it (" + model::to_string(shape.key()) + ")";
  auto s = ready_status(read_conditions(object), shape.metadata.generation, "Valid", message, now);
  return merged(stored_status(object), model::to_json(s), {"observedGeneration", "conditions"});
}

json::object backfill_status(const json::value& object, const model::ReplicationBackfillStatus& progress,
                             const std::string& now) {
  const auto gen = generation_of_object(object);
  const auto& n = progress.images;
  const std::string counts = std::to_string(n.replicated) + " replicated, " + std::to_string(n.skipped) +
                             " skipped, " + std::to_string(n.failed) + " failed of " + std::to_string(n.total);
  const std::string message = progress.message.empty() ? counts : progress.message;
  model::CommonStatus s;
  const auto& phase = progress.phase;
  if (phase == model::kBackfillComplete) {
    s = ready_status(read_conditions(object), gen, "Complete", message, now);
  } else if (phase == model::kBackfillStopped) {
    s = ready_status(read_conditions(object), gen, "Stopped", message, now);
  } else if (phase == model::kBackfillFailed) {
    s = failing_status(read_conditions(object), gen, "BackfillFailed", message, now);
  } else {
    const std::string reason = phase == model::kBackfillInProgress ? "InProgress"
                               : phase == model::kBackfillStopping ? "Stopping"
                                                                   : "Preparing";
    s = progressing_status(read_conditions(object), gen, reason, phase == model::kBackfillInProgress ? counts : message,
                           now);
  }
  model::ReplicationBackfillStatus full = progress;
  static_cast<model::CommonStatus&>(full) = s;
  return merged(stored_status(object), model::status_to_json(full),
                {"observedGeneration", "conditions", "phase", "images", "startedAt", "completedAt", "message"});
}

json::object invalid_object_status(const json::value& object, std::string_view kind,
                                   std::string_view name, const model::FieldErrors& errors,
                                   const std::string& now) {
  auto s = invalid_status(read_conditions(object), generation_of_object(object),
                          validation_message(kind, name, errors), now);
  return merged(stored_status(object), model::to_json(s), {"observedGeneration", "conditions"});
}

}  // namespace ferry::reconcilers
