// ReplicationConfig: validated against the Registries it names; its status shows each
// destination's state from the last probes and the engine's effective times (S3).
#include <map>
#include <mutex>

#include "operator/controllers/reconcilers.hpp"
#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/replication.hpp"
#include "reconcilers/model/validate.hpp"

namespace ferry::operator_ {

namespace json = boost::json;

runtime::Outcome reconcile_config(Context& ctx, StatusWriter& status, const std::string& name) {
  auto obj = ctx.configs.get(name);
  if (!obj) return {};
  auto resources = ctx.valid_catalog_resources(true);
  auto valid = check(*obj, model::RegistryCatalog(resources));
  if (!valid.resource)
    return status.write_invalid(kube::replication_configs(), *obj, "ReplicationConfig", name, valid.errors);
  const auto& config = std::get<model::ReplicationConfig>(*valid.resource);
  resources.push_back(config);
  model::ResourceIndex index(resources);
  std::map<model::RegistryKey, reconcilers::ProbeResult> checked;
  {
    std::lock_guard lock(ctx.probes_mutex);
    std::vector<model::RegistryKey> keys{config.key()};
    for (const auto& rule : config.spec.rules)
      keys.insert(keys.end(), rule.destinations.begin(), rule.destinations.end());
    for (const auto& k : keys) {
      if (!model::region_enabled(index, k)) continue;
      if (auto it = ctx.probes.find(k); it != ctx.probes.end()) {
        checked[k] = it->second;
      }  // else not probed yet: its Registry's reconcile will enqueue this config again
    }
  }
  const auto now = now_string();
  const auto effective = ctx.opts.effective_since ? ctx.opts.effective_since(config.key())
                                              : std::map<model::RegistryKey, std::string>{};
  auto out =
      status.write(kube::replication_configs(), *obj, name, [&](const json::value& current) {
        return reconcilers::replication_config_status(current, config, index, checked, now,
                                                      effective);
      });
  if (!out.error) out.requeue_after = ctx.opts.resync;
  return out;
}

}  // namespace ferry::operator_
