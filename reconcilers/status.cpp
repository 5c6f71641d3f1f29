// Pure status computation for the Registry, RegistryPolicy and ReplicationConfig reconcilers.
#include "reconcilers/status.hpp"

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

model::CommonStatus with(std::vector<Condition> conds, std::int64_t generation) {
  model::CommonStatus s;
  s.observed_generation = generation;
  s.conditions = std::move(conds);
  return s;
}

Condition cond(std::string_view type, std::string status, std::string reason, std::string message,
               std::int64_t generation) {
  return Condition{std::string(type), std::move(status), std::move(reason), std::move(message), "",
                   generation};
}

// Keeps the kind-specific fields of the stored status that the reconciler does not own.
json::object merged(json::object stored, const json::object& computed,
                    std::initializer_list<const char*> owned) {
  for (const char* k : owned) stored.erase(k);
  for (const auto& [k, v] : computed) stored[k] = v;
  return stored;
}

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

std::vector<model::DestinationState> destination_states(
    const model::ReplicationConfig& config, const model::ResourceIndex& index,
    const std::map<model::RegistryKey, ProbeResult>& probes) {
  std::vector<model::DestinationState> out;
  std::set<model::RegistryKey> seen;
  const auto source = config.key();
  const auto& catalog = index.catalog();
  for (const auto& rule : config.spec.rules) {
    // A repository name the rule applies to, to ask the policy about: its first filter, or any.
    const std::string sample =
        rule.repository_filters.empty() ? "*" : rule.repository_filters.front().filter + "*";
    for (const auto& dest : rule.destinations) {
      if (!seen.insert(dest).second) continue;
      model::DestinationState st{dest.region, dest.registry_id, "Ready", ""};
      const auto* reg = index.registry(dest);
      if (!model::region_enabled(index, dest)) {
        st.state = "RegionNotEnabled";
        st.message = reg ? "Registry " + reg->metadata.name + " has enabled: false"
                         : "no Registry object for " + model::to_string(dest);
      } else if (catalog.partition_of(source) != catalog.partition_of(dest)) {
        st.state = "CrossPartition";
        st.message = std::string("destination partition ") +
                     std::string(model::to_string(catalog.partition_of(dest))) +
                     " differs from the source's " +
                     std::string(model::to_string(catalog.partition_of(source)));
      } else if (dest.registry_id == source.registry_id) {
        st.message = "same account: no policy needed";
      } else if (!index.policy_for(dest)) {
        st.state = "NoPolicy";
        st.message = "no RegistryPolicy for " + model::to_string(dest) +
                     "; cross-account replication is denied";
      } else {
        auto auth = model::authorize(index, source, dest, sample, true);
        if (auth.allowed) {
          st.message = "allowed by " + auth.authorized_by;
        } else {
          st.state = "Denied";
          st.message = auth.message;
        }
      }
      if (st.state == "Ready") {
        if (auto it = probes.find(dest); it != probes.end() && !it->second.reachable) {
          st.state = "Unreachable";
          st.message = it->second.message;
        }
      }
      out.push_back(std::move(st));
    }
  }
  return out;
}

json::object replication_config_status(const json::value& object,
                                       const model::ReplicationConfig& config,
                                       const model::ResourceIndex& index,
                                       const std::map<model::RegistryKey, ProbeResult>& probes,
                                       const std::string& now,
                                       const std::map<model::RegistryKey, std::string>& effective) {
  const auto gen = config.metadata.generation;
  auto dests = destination_states(config, index, probes);
  // Each destination's time from the engine; while the engine has none yet (a new leader whose
  // engine is still starting), the one stored before.
  std::map<model::RegistryKey, std::string> known = effective;
  const json::object before = stored_status(object);
  if (const auto* stored = before.if_contains("destinations"); stored && stored->is_array()) {
    for (const auto& d : stored->as_array()) {
      const auto* o = d.if_object();
      const auto* id = o ? o->if_contains("registryId") : nullptr;
      const auto* region = o ? o->if_contains("region") : nullptr;
      const auto* since = o ? o->if_contains("effectiveSince") : nullptr;
      if (id && id->is_string() && region && region->is_string() && since && since->is_string()) {
        known.emplace(model::RegistryKey{std::string(id->as_string()), std::string(region->as_string())},
                      std::string(since->as_string()));
      }
    }
  }
  std::optional<model::Timestamp> latest;
  std::string latest_text;
  bool all_recorded = !dests.empty();
  for (auto& d : dests) {
    auto it = known.find({d.registry_id, d.region});
    auto t = it == known.end() ? std::nullopt : model::parse_rfc3339(it->second);
    if (!t) {
      all_recorded = false;
      continue;
    }
    d.effective_since = it->second;
    if (!latest || *t > *latest) {
      latest = t;
      latest_text = it->second;
    }
  }
  const auto ready =
      std::count_if(dests.begin(), dests.end(), [](const auto& d) { return d.state == "Ready"; });
  std::string message =
      std::to_string(ready) + " of " + std::to_string(dests.size()) + " destinations ready";
  if (!model::region_enabled(index, config.key())) {
    message += "; the source region is not enabled (no Registry for " +
               model::to_string(config.key()) + " or enabled: false), nothing replicates";
  }
  // Ready only when every destination is; the first bad one names the reason. Not Stalled: a
  // policy, a Registry or the network may heal, and the reconciler re-checks.
  std::string bad;
  std::string first_state;
  for (const auto& d : dests) {
    if (d.state == "Ready") continue;
    if (first_state.empty()) first_state = d.state;
    if (!bad.empty()) bad += "; ";
    bad += model::to_string(model::RegistryKey{d.registry_id, d.region}) + " " + d.state + ": " +
           d.message;
  }
  model::CommonStatus common;
  if (first_state.empty()) {
    common = ready_status(read_conditions(object), gen, "Valid", message, now);
  } else {
    auto conds = read_conditions(object);
    set_condition(conds,
                  cond(kReady, "False", "Destination" + first_state, message + "; " + bad, gen),
                  now);
    remove_condition(conds, kStalled);
    remove_condition(conds, kReconciling);
    common = with(std::move(conds), gen);
  }

  // CredentialsReady (S14): every probed registry reachable with its credentials accepted.
  std::string failed;
  bool unknown = false;
  for (const auto& [key, probe] : probes) {
    if (!probe.reachable ||
        (probe.credentials_accepted.has_value() && !*probe.credentials_accepted)) {
      if (!failed.empty()) failed += "; ";
      failed += model::to_string(key) + ": " + probe.message;
    } else if (!probe.credentials_accepted.has_value()) {
      unknown = true;
    }
  }
  if (probes.empty()) {
    set_condition(
        common.conditions,
        cond(kCredentialsReady, "Unknown", "NoRegistries",
             "no enabled Registry object for the source or any destination to check", gen),
        now);
  } else if (!failed.empty()) {
    set_condition(common.conditions,
                  cond(kCredentialsReady, "False", "CredentialsCheckFailed", failed, gen), now);
  } else if (unknown) {
    set_condition(
        common.conditions,
        cond(kCredentialsReady, "Unknown", "NotVerifiable",
             "every registry is reachable; token authentication is verified at the first copy",
             gen),
        now);
  } else {
    set_condition(common.conditions,
                  cond(kCredentialsReady, "True", "CredentialsAccepted",
                       "the source and " + std::to_string(probes.empty() ? 0 : probes.size() - 1) +
                           " destination registries accepted Ferry's credentials",
                       gen),
                  now);
  }

  model::ReplicationConfigStatus s;
  static_cast<model::CommonStatus&>(s) = std::move(common);
  s.destinations = std::move(dests);
  const auto stored = stored_status(object);
  const auto* since = stored.if_contains("effectiveSince");
  const auto* observed = stored.if_contains("observedGeneration");
  const bool same_generation = observed && observed->is_int64() && observed->as_int64() == gen;
  s.effective_since =
      (same_generation && since && since->is_string()) ? std::string(since->as_string()) : now;
  if (all_recorded) s.effective_since = latest_text;
  return merged(stored, model::status_to_json(s),
                {"observedGeneration", "conditions", "effectiveSince", "destinations"});
}

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
