// Registry: probes the endpoint (reachable, credentials accepted) with the Secrets it names and
// writes Ready; a change of probe result re-checks every ReplicationConfig.
#include <boost/url/parse.hpp>
#include <mutex>

#include "operator/controllers/reconcilers.hpp"
#include "operator/controllers/registry_probe.hpp"
#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/secret_data.hpp"
#include "reconcilers/model/validate.hpp"

namespace ferry::operator_ {

namespace json = boost::json;

namespace {

// Not reachable, not known to be accepted: the named Secret cannot be read.
reconcilers::ProbeResult secret_unreadable(const Context& ctx, std::string_view what,
                                           const model::SecretRef& ref) {
  return {false, std::nullopt,
          std::string(what) + " Secret " + ref.namespace_ + "/" + ref.name + ctx.secret_missing(ref)};
}

reconcilers::ProbeResult probe(const Context& ctx, const model::Registry& reg) {
  ProbeInput in;
  in.endpoint = reg.spec.endpoint;
  in.insecure_skip_verify = reg.spec.tls_insecure_skip_verify;
  if (reg.spec.tls_ca_secret_ref) {
    auto s = ctx.secret(*reg.spec.tls_ca_secret_ref);
    if (!s) return secret_unreadable(ctx, "CA", *reg.spec.tls_ca_secret_ref);
    if (auto ca = model::ca_bundle_from_secret(*s)) in.ca_pem = std::move(*ca);
  }
  if (reg.spec.type == model::RegistryType::Ecr) {
    // ECR: the data plane takes GetAuthorizationToken's credentials, which the Secret's AWS
    // keys (or the default chain) obtain; failing to obtain them is the credentials' failure.
    std::optional<model::Secret> s;
    if (reg.spec.credentials_secret_ref) {
      s = ctx.secret(*reg.spec.credentials_secret_ref);
      if (!s) return secret_unreadable(ctx, "credentials", *reg.spec.credentials_secret_ref);
    }
    registry::TlsOptions tls;
    tls.verify = !in.insecure_skip_verify;
    if (!in.ca_pem.empty()) tls.ca_pems.push_back(in.ca_pem);
    auto token = ecr_credentials(reg, s ? &*s : nullptr, in.timeout, std::move(tls));
    if (!token) return {true, false, "ECR GetAuthorizationToken for " + model::to_string(reg.key()) + ": " + token.error()};
    in.credentials = std::move(*token);
    return probe_registry(in);
  }
  if (reg.spec.credentials_secret_ref) {
    auto s = ctx.secret(*reg.spec.credentials_secret_ref);
    if (!s) return secret_unreadable(ctx, "credentials", *reg.spec.credentials_secret_ref);
    std::string host;
    if (auto u = boost::urls::parse_absolute_uri(reg.spec.endpoint))
      host = u->encoded_host_and_port();
    in.credentials = model::credentials_from_secret(*s, host);
    if (!in.credentials) {
      return {false, std::nullopt,
              "credentials Secret " + reg.spec.credentials_secret_ref->namespace_ + "/" +
                  reg.spec.credentials_secret_ref->name + " holds no credentials for " + host};
    }
  }
  return probe_registry(in);
}

}  // namespace

runtime::Outcome reconcile_registry(Context& ctx, StatusWriter& status, const std::string& name) {
  auto obj = ctx.registries.get(name);
  if (!obj) return runtime::Outcome::done();
  auto checked = check(*obj);
  if (!checked.resource)
    return status.write_invalid(kube::registries(), *obj, "Registry", name, checked.errors);
  const auto& reg = std::get<model::Registry>(*checked.resource);
  auto result = probe(ctx, reg);
  {
    std::lock_guard lock(ctx.probes_mutex);
    auto it = ctx.probes.find(reg.key());
    const bool changed = it == ctx.probes.end() || it->second.reachable != result.reachable ||
                         it->second.credentials_accepted != result.credentials_accepted;
    ctx.probes[reg.key()] = result;
    if (changed) ctx.enqueue_all_configs();
  }
  const auto now = now_string();
  auto out = status.write(kube::registries(), *obj, name, [&](const json::value& current) {
    return reconcilers::registry_status(current, reg, result, now);
  });
  if (out.error) return out;
  const bool ready = result.reachable && result.credentials_accepted.value_or(true);
  out.requeue_after = ready ? ctx.opts.resync : ctx.opts.retry_unready;
  out.settled = ready;
  return out;
}

}  // namespace ferry::operator_
