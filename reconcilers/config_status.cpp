// The ReplicationConfig's status: each destination's state (S3 effective time, probe results,
// policy verdict) and the conditions summing them up.
#include <algorithm>
#include <boost/json.hpp>
#include <set>

#include "reconcilers/model/clock.hpp"
#include "reconcilers/model/policy.hpp"
#include "reconcilers/model/serialize.hpp"
#include "reconcilers/model/validate.hpp"
#include "reconcilers/status.hpp"
#include "reconcilers/status_parts.hpp"

namespace ferry::reconcilers {

namespace json = boost::json;
using namespace detail;

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

}  // namespace ferry::reconcilers
