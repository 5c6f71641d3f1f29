// The cluster-mode controllers: informers for Ferry's kinds and Secrets, one work queue and
// reconciler per kind (Registry, RegistryPolicy, ReplicationConfig), status writes, events and
// metrics. Started once this replica leads (or at once without leader election).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kube/api.hpp"
#include "reconcilers/model/validate.hpp"

namespace ferry::operator_ {

struct ManagerOptions {
  int workers = 2;                         // per controller
  std::string instance;                    // reportingInstance of events
  std::chrono::seconds resync{300};        // level-triggered re-check of every object
  std::chrono::seconds retry_unready{30};  // re-probe of an unreachable registry
  // Namespaces whose Secrets are watched (the chart's rbac.secrets.namespaces); empty: all.
  std::vector<std::string> secret_namespaces;
  // Called on an informer thread after any change the replication engine must see.
  std::function<void()> on_change;
  // Called once, on an informer thread, when every informer has listed (synced() turns true).
  std::function<void()> on_synced;
  // The replication engine's time for each destination of a source (S3), shown in the
  // ReplicationConfig's status; unset: none.
  std::function<std::map<model::RegistryKey, std::string>(const model::RegistryKey& source)> effective_since;
  // Set: ImageReplications are watched (without a cache) and this is called on the watch's
  // thread for each whose ferry.dev/retry annotation differs from status.lastHandledRetryAt.
  std::function<void(const std::string& record, const std::string& requested_at)> on_retry_requested;
};

// What the replication engine works from: the valid Registries, RegistryPolicies and
// ReplicationConfigs, every Repository, and the Secrets the Registries reference. `signature`
// changes exactly when one of them changes (generations, Secret resourceVersions).
struct EngineInputs {
  std::vector<model::Resource> resources;
  std::string signature;
};

class Manager {
 public:
  Manager(kube::Api& api, ManagerOptions options);
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Informers and controllers together; or first the informers (every replica of a sharded
  // operator needs them for its engines) and the controllers once this replica leads.
  void start();
  void start_informers();
  void start_controllers();
  // Stops watches and queues; in-flight reconciles finish. Idempotent.
  void stop();
  bool started() const;
  bool synced() const;  // every informer has listed once
  // The valid Registries currently known, for the webhook's partition checks.
  model::RegistryCatalog catalog() const;
  EngineInputs engine_inputs() const;
  // Prometheus text: reconcile totals, errors and durations per controller, work-queue depth,
  // adds and retries, informer lists, leadership.
  std::string metrics_text() const;
  void set_leader(bool leader);
  // Reconciles every ReplicationConfig again (the engine's effective times changed).
  void requeue_replication_configs();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::operator_
