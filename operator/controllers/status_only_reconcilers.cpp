// RegistryPolicy, RepositoryCreationTemplate and ReplicationBackfill: validated, and their
// status written from the object alone.
#include "operator/controllers/reconcilers.hpp"
#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/validate.hpp"

namespace ferry::operator_ {

namespace json = boost::json;

runtime::Outcome reconcile_policy(Context& ctx, StatusWriter& status, const std::string& name) {
  auto obj = ctx.policies.get(name);
  if (!obj) return {};
  auto checked = check(*obj);
  if (!checked.resource)
    return status.write_invalid(kube::registry_policies(), *obj, "RegistryPolicy", name, checked.errors);
  const auto& policy = std::get<model::RegistryPolicy>(*checked.resource);
  const auto now = now_string();
  auto out = status.write(kube::registry_policies(), *obj, name, [&](const json::value& current) {
    return reconcilers::policy_status(current, policy, now);
  });
  if (!out.error) out.requeue_after = ctx.opts.resync;
  return out;
}

runtime::Outcome reconcile_template(Context& ctx, StatusWriter& status, const std::string& name) {
  auto obj = ctx.templates.get(name);
  if (!obj) return {};
  auto checked = check(*obj);
  if (!checked.resource)
    return status.write_invalid(kube::repository_creation_templates(), *obj, "RepositoryCreationTemplate", name, checked.errors);
  const auto& shape = std::get<model::RepositoryCreationTemplate>(*checked.resource);
  const auto now = now_string();
  auto out = status.write(kube::repository_creation_templates(), *obj, name, [&](const json::value& current) {
    return reconcilers::template_status(current, shape, now);
  });
  if (!out.error) out.requeue_after = ctx.opts.resync;
  return out;
}

// A valid ReplicationBackfill's status is the engine's (it writes its progress); only an
// invalid one is answered here.
runtime::Outcome reconcile_backfill(Context& ctx, StatusWriter& status, const std::string& name) {
  auto obj = ctx.backfills.get(name);
  if (!obj) return {};
  auto checked = check(*obj);
  if (!checked.resource)
    return status.write_invalid(kube::replication_backfills(), *obj, "ReplicationBackfill", name, checked.errors);
  return {};
}

}  // namespace ferry::operator_
