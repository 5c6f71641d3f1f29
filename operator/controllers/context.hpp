// What the reconcilers of cluster mode share: the API, the informers' caches, the Secrets they
// may read, the last probe of each registry, and a way to re-check every ReplicationConfig.
#pragma once

#include <boost/json/value.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kube/api.hpp"
#include "operator/controllers/manager.hpp"
#include "operator/runtime/informer.hpp"
#include "reconcilers/model/resources.hpp"
#include "reconcilers/model/validate.hpp"
#include "reconcilers/status.hpp"

namespace ferry::operator_ {

// An object from an informer's cache, parsed and validated (a ReplicationConfig against
// `catalog`): the resource when it is valid, else why it is not.
struct Checked {
  std::optional<model::Resource> resource;
  model::FieldErrors errors;
};
Checked check(const boost::json::value& obj, const model::RegistryCatalog& catalog = {});

struct Context {
  kube::Api& api;
  const ManagerOptions& opts;
  runtime::Informer& registries;
  runtime::Informer& policies;
  runtime::Informer& configs;
  runtime::Informer& templates;
  runtime::Informer& backfills;
  std::vector<std::unique_ptr<runtime::Informer>>& secrets;  // one cluster-wide, or per namespace
  std::function<void()> enqueue_all_configs;

  // The last probe of each registry, written by the Registry reconciler, read by the
  // ReplicationConfig one.
  std::mutex probes_mutex;
  std::map<model::RegistryKey, reconcilers::ProbeResult> probes;

  // The valid Registries (and RegistryPolicies) in the caches.
  std::vector<model::Resource> valid_catalog_resources(bool with_policies) const;
  std::optional<boost::json::value> secret_object(const std::string& ns,
                                                  const std::string& name) const;
  std::optional<model::Secret> secret(const model::SecretRef& ref) const;
  // " not found", or why Ferry cannot see it (outside --secret-namespaces).
  std::string secret_missing(const model::SecretRef& ref) const;
};

}  // namespace ferry::operator_
