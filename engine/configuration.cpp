// Resources → endpoints (host, TLS, credentials) and the copier's table of registries.
#include <spdlog/spdlog.h>

#include <boost/url/parse.hpp>

#include "engine/engine_impl.hpp"
#include "reconcilers/model/secret_data.hpp"

namespace ferry::engine {

std::expected<registry::TlsOptions, std::string> ReplicationEngine::Impl::tls_for(
    const model::Registry& r) const {
  registry::TlsOptions tls;
  tls.verify = !r.spec.tls_insecure_skip_verify;
  if (r.spec.tls_ca_secret_ref) {
    const model::Secret* s = index.secret(*r.spec.tls_ca_secret_ref);
    auto ca = s ? model::ca_bundle_from_secret(*s) : std::nullopt;
    if (!ca) {
      return std::unexpected("TLS CA Secret " + r.spec.tls_ca_secret_ref->namespace_ + "/" +
                             r.spec.tls_ca_secret_ref->name +
                             " not found or has none of the keys ca.crt, ca.pem, tls.crt");
    }
    tls.ca_pems.push_back(std::move(*ca));
  }
  return tls;
}

std::string ReplicationEngine::Impl::tls_signature(const registry::TlsOptions& tls) {
  std::string sig = tls.verify ? "verify" : "no-verify";
  for (const auto& f : tls.ca_files) sig += "|file:" + f;
  for (const auto& pem : tls.ca_pems) sig += "|pem:" + model::sha256_hex(pem);
  return sig;
}

registry::HttpClient& ReplicationEngine::Impl::aws_http_for(const registry::TlsOptions& tls) {
  auto& client = aws_http[tls_signature(tls)];
  if (!client) client = std::make_unique<registry::HttpClient>(io.get_executor(), tls);
  return *client;
}

Endpoint ReplicationEngine::Impl::endpoint_for(const model::Registry& r) {
  Endpoint e;
  auto url = boost::urls::parse_absolute_uri(r.spec.endpoint);
  if (!url) {
    e.error = "endpoint " + r.spec.endpoint + " is not a URL";
    return e;
  }
  e.host = std::string(url->host());
  if (url->has_port()) e.host += ":" + std::string(url->port());
  e.config.host = e.host;
  e.config.plain_http = url->scheme() == "http";
  if (auto tls = tls_for(r)) {
    e.config.tls = std::move(*tls);
  } else {
    e.error = tls.error();
    return e;
  }
  e.config.user_agent = opts.user_agent;
  // ferry_registry_responses_total{registry, code}: one counter per status class, made here so
  // that a response costs one increment.
  {
    std::map<std::string, prometheus::Counter*> by_class;
    for (const char* c : {"1xx", "2xx", "3xx", "4xx", "5xx", "error"})
      by_class[c] = &m->responses.Add({{"registry", r.metadata.name}, {"code", c}});
    e.config.on_response = [metrics = m, by_class = std::move(by_class)](int status) {
      by_class.at(EngineMetrics::status_class(status))->Increment();
    };
  }
  if (const auto& l = r.spec.limits; l.requests_per_second > 0 || l.bytes_per_second > 0) {
    const registry::Limits want{l.requests_per_second, l.bytes_per_second};
    auto& limiter = limiters[key_text(r.key())];
    if (!limiter) {
      limiter = std::make_shared<registry::Limiter>(want);
    } else if (limiter->limits() != want) {
      limiter->set(want);
    }
    e.config.limiter = limiter;
  }
  e.max_copies = static_cast<std::size_t>(std::max<std::int64_t>(0, r.spec.limits.max_concurrent_copies));
  if (r.spec.credentials_secret_ref &&
      r.spec.type != model::RegistryType::Ecr) {  // ECR: a token (update_copier)
    const auto& ref = *r.spec.credentials_secret_ref;
    const model::Secret* s = index.secret(ref);
    if (!s) {
      e.error = "credentials Secret " + ref.namespace_ + "/" + ref.name + " not found";
      return e;
    }
    auto creds = model::credentials_from_secret(*s, e.host);
    if (!creds) {
      e.error = "credentials Secret " + ref.namespace_ + "/" + ref.name +
                " holds no credentials for " + e.host;
      return e;
    }
    e.config.credentials.username = creds->username;
    e.config.credentials.password = creds->password;
  }
  return e;
}

void ReplicationEngine::Impl::set_resources(std::vector<model::Resource> next) {
  resources = std::move(next);
  index = model::ResourceIndex(resources);
  update_ecr_registries();
  endpoints.clear();
  for (const auto& r : index.registries()) {
    auto e = endpoint_for(r);
    if (!e.error.empty()) {
      spdlog::error("msg=\"registry unusable\" registry={} error=\"{}\"", r.metadata.name, e.error);
    }
    endpoints[key_text(r.key())] = std::move(e);
    // Series that exist from the start count their first event: a rate() over a counter or a
    // histogram born with its first observation misses it.
    replications.Add({{"destination", r.metadata.name}, {"result", std::string(model::kComplete)},
                      {"failure_code", ""}});
    for (auto code : model::kFailureCodes) {
      replications.Add({{"destination", r.metadata.name}, {"result", std::string(model::kFailed)},
                        {"failure_code", std::string(code)}});
    }
    m->latency_for(r.metadata.name);
  }
  update_copier();
  update_effective_times();
  restart_polling();
  update_backfills();
  if (started) pump();
}

// The copier sees every registry's connection settings, ECR tokens included: made once, its table
// swapped when the resources or a token change. Clients whose settings did not change are kept
// with their connection pools and tokens; copies in flight keep the clients they started with.
void ReplicationEngine::Impl::update_copier() {
  std::map<std::string, registry::RegistryConfig> by_host;
  for (const auto& [k, e] : endpoints) {
    auto config = e.config;
    if (auto it = ecr.find(k); it != ecr.end() && it->second->token) {
      config.credentials.username = it->second->token->username;
      config.credentials.password = it->second->token->password;
    }
    by_host[e.host] = std::move(config);
  }
  registry::ConfigResolver table = [by_host](const std::string& host, registry::Side) {
    auto it = by_host.find(host);
    if (it != by_host.end()) return it->second;
    registry::RegistryConfig c;
    c.host = host;
    return c;
  };
  if (copier) {
    copier->set_resolver(std::move(table));
    return;
  }
  registry::CopyOptions options;
  // ferry_bytes_copied_total: each committed blob once (the counter lives as long as `metrics`).
  options.on_blob_committed = [metrics = m, counter = &bytes](std::uint64_t n) {
    counter->Increment(static_cast<double>(n));
  };
  copier = std::make_shared<registry::Copier>(io.get_executor(), std::move(table), std::move(options));
}

}  // namespace ferry::engine
