// What each reconciler writes into status, as pure functions of the object, the other objects it
// depends on and probe results: conditions per the Kubernetes API conventions (Ready,
// Reconciling, Stalled; kstatus-compatible), observedGeneration, per-destination states.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reconcilers/model/errors.hpp"
#include "reconcilers/model/replication.hpp"
#include "reconcilers/model/resources.hpp"

namespace ferry::reconcilers {

// Condition types and reasons Ferry writes.
inline constexpr std::string_view kReady = "Ready";
inline constexpr std::string_view kReconciling = "Reconciling";
inline constexpr std::string_view kStalled = "Stalled";
inline constexpr std::string_view kCredentialsReady = "CredentialsReady";

// Sets `c` in `conditions` (replacing the one of its type). lastTransitionTime stays as it was
// when the status (True/False/Unknown) does not change, else becomes `now`.
void set_condition(std::vector<model::Condition>& conditions, model::Condition c,
                   const std::string& now);
void remove_condition(std::vector<model::Condition>& conditions, std::string_view type);
const model::Condition* find_condition(const std::vector<model::Condition>& conditions,
                                       std::string_view type);

// Conditions as stored in an object's `.status.conditions` (unreadable entries skipped).
std::vector<model::Condition> read_conditions(const boost::json::value& object);
// `.status` of an object as stored ({} when absent).
boost::json::object stored_status(const boost::json::value& object);

// "Kind/name: path: message; Kind/name: path: message" — `ferry validate`'s lines without the
// file name.
std::string validation_message(std::string_view kind, std::string_view name,
                               const model::FieldErrors& errors);

// Invalid spec: Stalled True, Ready False (reason InvalidSpec), no Reconciling.
model::CommonStatus invalid_status(std::vector<model::Condition> old, std::int64_t generation,
                                   const std::string& message, const std::string& now);
// Converged: Ready True, no Stalled, no Reconciling.
model::CommonStatus ready_status(std::vector<model::Condition> old, std::int64_t generation,
                                 const std::string& reason, const std::string& message,
                                 const std::string& now);
// Not there yet but retrying: Ready False and Reconciling True with the same reason.
model::CommonStatus progressing_status(std::vector<model::Condition> old, std::int64_t generation,
                                       const std::string& reason, const std::string& message,
                                       const std::string& now);

// Failing but retried in the background: Ready False and Stalled True with the same reason, no
// Reconciling (kstatus: Failed, so GitOps tools report it unhealthy instead of waiting forever).
model::CommonStatus failing_status(std::vector<model::Condition> old, std::int64_t generation,
                                   const std::string& reason, const std::string& message,
                                   const std::string& now);

// What a GET /v2/ probe of a registry found.
struct ProbeResult {
  bool reachable = false;
  std::optional<bool> credentials_accepted;  // nullopt: not verifiable (e.g. token auth)
  std::string message;
};

// Registry: reachable and credentials accepted → Ready; unreachable or rejected → Ready False and
// Stalled True (reason Unreachable or CredentialsRejected, message naming the endpoint and the
// error) after the first failed probe; the reconciler keeps re-probing.
boost::json::object registry_status(const boost::json::value& object,
                                    const model::Registry& registry, const ProbeResult& probe,
                                    const std::string& now);

// RegistryPolicy: `errors` from parsing and validation; empty → Ready.
boost::json::object policy_status(const boost::json::value& object,
                                  const model::RegistryPolicy& policy, const std::string& now);

// RepositoryCreationTemplate (S16): valid → Ready, the message saying what it shapes.
boost::json::object template_status(const boost::json::value& object,
                                    const model::RepositoryCreationTemplate& shape, const std::string& now);

// ReplicationBackfill (S17): the engine's progress, with conditions for kstatus: COMPLETE and
// STOPPED → Ready; FAILED → Stalled; PREPARING, IN_PROGRESS, STOPPING → Reconciling.
boost::json::object backfill_status(const boost::json::value& object, const model::ReplicationBackfillStatus& progress,
                                    const std::string& now);

// An invalid object of any kind: Stalled with the validation message.
boost::json::object invalid_object_status(const boost::json::value& object, std::string_view kind,
                                          std::string_view name, const model::FieldErrors& errors,
                                          const std::string& now);

// The state of every unique destination of a valid ReplicationConfig, in rule order:
// Ready | RegionNotEnabled | CrossPartition | NoPolicy | Denied | Unreachable (an otherwise
// ready destination whose last probe in `probes` failed to reach it).
std::vector<model::DestinationState> destination_states(
    const model::ReplicationConfig& config, const model::ResourceIndex& index,
    const std::map<model::RegistryKey, ProbeResult>& probes = {});

// ReplicationConfig: valid → Ready with destination states; CredentialsReady from the probes of
// the source and every destination registry (S14), keyed by registry. `effective` holds the
// replication engine's time for each destination (S3): each destination shows its own, and
// effectiveSince is the latest of them once every destination has one; before that it is kept
// while the generation is unchanged, else `now`.
boost::json::object replication_config_status(
    const boost::json::value& object, const model::ReplicationConfig& config,
    const model::ResourceIndex& index, const std::map<model::RegistryKey, ProbeResult>& probes,
    const std::string& now, const std::map<model::RegistryKey, std::string>& effective = {});

// ImageReplication: Complete True when every destination is COMPLETE, Failed True when any is
// FAILED (False otherwise, with "n of m" messages), set in record.status.conditions; for kstatus
// (Flux, Argo CD) also Reconciling True while a destination is IN_PROGRESS (InProgress), Stalled
// True once none is and one FAILED (Failed), and Ready. Meant to be called wherever the engine
// creates or summarizes a record before writing it (after model::summarize).
void image_replication_conditions(model::ImageReplication& record, const std::string& now);

// A Repository record Ferry wrote (it created the repository, S12): Ready True, "Created".
void replicated_repository_conditions(model::Repository& record, const std::string& now);

}  // namespace ferry::reconcilers
