// Registry endpoint and credential probe on top of the Kubernetes HTTP client's transport.
#include "operator/controllers/registry_probe.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "aws/credentials.hpp"
#include "aws/ecr.hpp"
#include "kube/client.hpp"

namespace ferry::operator_ {

namespace {

// `Bearer realm="https://auth/token",service="registry",scope="..."` → lower-cased keys.
std::map<std::string, std::string> challenge_params(const std::string& header,
                                                    std::string& scheme) {
  std::map<std::string, std::string> out;
  auto sp = header.find(' ');
  scheme = header.substr(0, sp);
  for (auto& ch : scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (sp == std::string::npos) return out;
  std::size_t i = sp + 1;
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',')) ++i;
    auto eq = header.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = header.substr(i, eq - i);
    for (auto& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    i = eq + 1;
    std::string value;
    if (i < header.size() && header[i] == '"') {
      auto end = header.find('"', i + 1);
      if (end == std::string::npos) end = header.size();
      value = header.substr(i + 1, end - i - 1);
      i = end + 1;
    } else {
      auto end = header.find(',', i);
      if (end == std::string::npos) end = header.size();
      value = header.substr(i, end - i);
      i = end;
    }
    out[key] = value;
  }
  return out;
}

std::string basic(const model::BasicCredentials& c) {
  return "Basic " + model::encode_base64(c.username + ":" + c.password);
}

}  // namespace

reconcilers::ProbeResult probe_registry(const ProbeInput& in) {
  kube::ClusterConfig cfg;
  std::string base = in.endpoint;
  while (!base.empty() && base.back() == '/') base.pop_back();
  cfg.server = base;
  cfg.ca_pem = in.ca_pem;
  cfg.insecure_skip_tls_verify = in.insecure_skip_verify;
  kube::ClientOptions opts;
  opts.connect_timeout = in.timeout;
  opts.request_timeout = in.timeout;
  opts.user_agent = "ferry-replicator/0.1.0";
  try {
    kube::Client client(cfg, opts);
    kube::Request req{"GET", "/v2/"};
    auto res = client.send(req);
    if (!res) return {false, std::nullopt, "GET " + base + "/v2/: " + res.error().message};
    if (res->status == 200) return {true, true, "GET " + base + "/v2/ answered 200"};
    if (res->status != 401) {
      return {false, std::nullopt,
              "GET " + base + "/v2/ answered " + std::to_string(res->status) +
                  ": not an OCI distribution registry?"};
    }
    if (!in.credentials) {
      return {true, false,
              "GET " + base + "/v2/ requires authentication and no credentialsSecretRef is set"};
    }
    std::string scheme;
    auto params = challenge_params(res->www_authenticate, scheme);
    if (scheme == "basic") {
      req.authorization = basic(*in.credentials);
      auto again = client.send(req);
      if (!again) return {false, std::nullopt, "GET " + base + "/v2/: " + again.error().message};
      if (again->status == 200)
        return {true, true, "GET " + base + "/v2/ accepted the credentials (Basic)"};
      return {true, false,
              "GET " + base + "/v2/ rejected the credentials (answered " +
                  std::to_string(again->status) + ")"};
    }
    if (scheme == "bearer" && params.contains("realm")) {
      auto realm = boost::urls::parse_absolute_uri(params["realm"]);
      if (!realm)
        return {true, std::nullopt, "the token realm " + params["realm"] + " is not a URL"};
      boost::urls::url token_url(*realm);
      if (params.contains("service")) token_url.params().append({"service", params["service"]});
      kube::ClusterConfig tcfg = cfg;
      tcfg.server =
          std::string(token_url.scheme()) + "://" + std::string(token_url.encoded_host_and_port());
      kube::Client token_client(tcfg, opts);
      kube::Request treq{"GET", std::string(token_url.encoded_resource())};
      treq.authorization = basic(*in.credentials);
      auto tok = token_client.send(treq);
      if (!tok)
        return {true, std::nullopt, "token request to " + tcfg.server + ": " + tok.error().message};
      if (tok->status == 200) return {true, true, "the token service accepted the credentials"};
      return {true, false,
              "the token service rejected the credentials (answered " +
                  std::to_string(tok->status) + ")"};
    }
    return {true, std::nullopt,
            "GET " + base + "/v2/ asks for an authentication scheme Ferry cannot check"};
  } catch (const std::exception& e) {
    return {false, std::nullopt, std::string("cannot probe ") + base + ": " + e.what()};
  }
}

namespace {

using EcrToken = std::expected<model::BasicCredentials, std::string>;

// Parameters by value: the coroutine frame owns them, whatever happens to the caller.
boost::asio::awaitable<void> fetch_ecr_token(std::shared_ptr<registry::HttpClient> http, model::Registry registry,
                                             std::optional<model::Secret> secret, std::shared_ptr<EcrToken> out) {
  const aws::StsOptions sts{registry.spec.region, registry.spec.sts_endpoint};
  auto creds = secret ? aws::from_secret(secret->data, *http, sts)
                      : aws::default_chain(*http, aws::process_environment(), sts);
  if (!creds) {
    *out = std::unexpected("AWS credentials: " + creds.error().to_string());
    co_return;
  }
  aws::EcrClient ecr(*http, *creds,
                     aws::EcrOptions{registry.spec.region, registry.spec.ecr_api_endpoint, registry.spec.registry_id});
  auto token = co_await ecr.get_authorization_token();
  if (!token) {
    *out = std::unexpected(token.error().to_string());
    co_return;
  }
  *out = model::BasicCredentials{token->username, token->password};
}

}  // namespace

std::expected<model::BasicCredentials, std::string> ecr_credentials(const model::Registry& registry,
                                                                    const model::Secret* secret,
                                                                    std::chrono::milliseconds timeout,
                                                                    registry::TlsOptions tls) {
  auto io = std::make_shared<boost::asio::io_context>();
  registry::HttpOptions http_options;
  http_options.connect_timeout = timeout;
  http_options.io_timeout = timeout;
  auto http = std::make_shared<registry::HttpClient>(io->get_executor(), std::move(tls), http_options);
  auto out = std::make_shared<EcrToken>(std::unexpected("GetAuthorizationToken did not finish"));
  boost::asio::co_spawn(*io, fetch_ecr_token(http, registry, secret ? std::optional(*secret) : std::nullopt, out),
                        boost::asio::detached);
  http.reset();  // the coroutine keeps it
  io->run_for(timeout * 4);
  if (!io->stopped()) {
    // Still waiting (each request is bounded by the timeouts above): let it finish on its own
    // thread, which owns everything it touches, and answer now.
    std::thread([io] { io->run(); }).detach();
    return std::unexpected("GetAuthorizationToken did not answer within " + std::to_string((timeout * 4).count()) +
                           " ms");
  }
  return *out;
}

}  // namespace ferry::operator_
