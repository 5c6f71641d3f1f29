// Probing a registry's endpoint (GET /v2/) and Ferry's credentials for it, for the Registry and
// ReplicationConfig (CredentialsReady, S14) reconcilers. Never logs credentials.
#pragma once

#include <chrono>
#include <expected>
#include <optional>
#include <string>

#include "reconcilers/model/resources.hpp"
#include "reconcilers/model/secret_data.hpp"
#include "reconcilers/status.hpp"
#include "registry/http.hpp"

namespace ferry::operator_ {

struct ProbeInput {
  std::string endpoint;  // OCI distribution base URL
  bool insecure_skip_verify = false;
  std::string ca_pem;                                  // from tls.caSecretRef; empty: system roots
  std::optional<model::BasicCredentials> credentials;  // from credentialsSecretRef
  std::chrono::milliseconds timeout{std::chrono::seconds(5)};
};

// GET /v2/: 200 → reachable, credentials fine; 401 with a Basic challenge → retried with the
// credentials; with a Bearer challenge → a token is requested from the realm with them.
reconcilers::ProbeResult probe_registry(const ProbeInput& in);

// An ECR registry's data-plane credentials from GetAuthorizationToken, signed with the Secret's
// AWS keys (nullptr: the default chain): what the probe of a `type: ecr` Registry sends. An error
// says why (credentials, the API unreachable, access denied) without any secret in it. `tls`:
// the Registry's own TLS settings, which its ECR API and STS endpoints are called with too.
std::expected<model::BasicCredentials, std::string> ecr_credentials(const model::Registry& registry,
                                                                    const model::Secret* secret,
                                                                    std::chrono::milliseconds timeout,
                                                                    registry::TlsOptions tls);

}  // namespace ferry::operator_
