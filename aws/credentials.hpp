// AWS credentials and where they come from: a Secret's keys (optionally through STS AssumeRole),
// the environment, web identity (EKS IRSA), container credentials (EKS Pod Identity), the
// default chain of those, and a cache that refreshes temporary credentials before they expire.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aws/error.hpp"
#include "registry/http.hpp"

namespace ferry::aws {

using registry::Task;

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty for long-term keys
  std::optional<std::chrono::system_clock::time_point> expiration;
};

class CredentialsProvider {
 public:
  virtual ~CredentialsProvider() = default;
  virtual Task<Result<Credentials>> credentials() = 0;
  virtual std::string name() const = 0;  // "static", "environment", "web identity", ...
};

// Reads an environment variable; injectable so tests need not touch the process environment.
using Environment = std::function<std::optional<std::string>(std::string_view)>;
Environment process_environment();

// Where STS lives: https://sts.<region>.amazonaws.com unless endpoint is set.
struct StsOptions {
  std::string region = "us-east-1";
  std::string endpoint;  // overrides the default, e.g. a local moto_server
  std::string sts_endpoint() const;
};

using Clock = std::function<std::chrono::system_clock::time_point()>;

// ---------------------------------------------------------------- pure parts (tested without sockets)

// The first <name>...</name> element's text, with the five XML entities decoded. STS answers XML
// and no XML library is among Ferry's dependencies; its responses are flat and machine-written,
// so a careful extractor of the few elements needed (no attributes, no CDATA in these fields)
// is enough. It is not a general XML parser and reads nothing else (STS answers and the
// query protocol's error bodies, see parse_json_error).
std::optional<std::string> xml_element(std::string_view xml, std::string_view name);
// <Credentials> of an AssumeRole / AssumeRoleWithWebIdentity response.
Result<Credentials> parse_sts_credentials(std::string_view xml, std::string_view operation);
// <ErrorResponse><Error><Code>..</Code><Message>..</Message></Error></ErrorResponse>.
Error parse_sts_error(std::string_view xml, int status, std::string_view operation);
// {"AccessKeyId","SecretAccessKey","Token","Expiration"} from a container credentials endpoint.
Result<Credentials> parse_container_credentials(std::string_view json);
// "2026-12-01T23:00:00Z" (fractional seconds and offsets accepted); nullopt beyond kMaxClockSeconds.
std::optional<std::chrono::system_clock::time_point> parse_iso8601(std::string_view text);
// system_clock counts nanoseconds in 64 bits: about ±292 years around 1970. A time further from
// 1970 than this many seconds (about year 2261) is unreadable, since converting it overflows.
inline constexpr long long kMaxClockSeconds = 9'200'000'000;

// ---------------------------------------------------------------- providers

class StaticProvider : public CredentialsProvider {
 public:
  explicit StaticProvider(Credentials c) : creds_(std::move(c)) {}
  Task<Result<Credentials>> credentials() override;
  std::string name() const override { return "static"; }

 private:
  Credentials creds_;
};

// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN.
class EnvironmentProvider : public CredentialsProvider {
 public:
  explicit EnvironmentProvider(Environment env) : env_(std::move(env)) {}
  Task<Result<Credentials>> credentials() override;
  std::string name() const override { return "environment"; }

 private:
  Environment env_;
};

// STS AssumeRole, signed with the base provider's credentials.
class AssumeRoleProvider : public CredentialsProvider {
 public:
  AssumeRoleProvider(registry::HttpClient& http, std::shared_ptr<CredentialsProvider> base, std::string role_arn,
                     std::string session_name, StsOptions sts, Clock clock = {});
  Task<Result<Credentials>> credentials() override;
  std::string name() const override { return "assume role"; }

 private:
  registry::HttpClient& http_;
  std::shared_ptr<CredentialsProvider> base_;
  std::string role_arn_, session_name_;
  StsOptions sts_;
  Clock clock_;
};

// STS AssumeRoleWithWebIdentity (unsigned) with the token read from token_file on every call
// (the kubelet rotates it).
class WebIdentityProvider : public CredentialsProvider {
 public:
  WebIdentityProvider(registry::HttpClient& http, std::string role_arn, std::string token_file,
                      std::string session_name, StsOptions sts);
  Task<Result<Credentials>> credentials() override;
  std::string name() const override { return "web identity"; }

 private:
  registry::HttpClient& http_;
  std::string role_arn_, token_file_, session_name_;
  StsOptions sts_;
};

// GET full_uri with Authorization: the token (read from token_file on every call, or given).
class ContainerProvider : public CredentialsProvider {
 public:
  ContainerProvider(registry::HttpClient& http, std::string full_uri, std::string token, std::string token_file);
  Task<Result<Credentials>> credentials() override;
  std::string name() const override { return "container"; }

 private:
  registry::HttpClient& http_;
  std::string uri_, token_, token_file_;
};

// Returns the inner provider's credentials until `margin` before they expire, then asks again.
// Long-term credentials (no expiration) are fetched once.
class CachingProvider : public CredentialsProvider {
 public:
  explicit CachingProvider(std::shared_ptr<CredentialsProvider> inner, Clock clock = {},
                           std::chrono::seconds margin = std::chrono::minutes(5));
  Task<Result<Credentials>> credentials() override;
  std::string name() const override { return inner_->name(); }

 private:
  std::shared_ptr<CredentialsProvider> inner_;
  Clock clock_;
  std::chrono::seconds margin_;
  std::optional<Credentials> cached_;
};

// From a Secret's data: aws_access_key_id and aws_secret_access_key (required), optional
// aws_session_token, optional role_arn (then STS AssumeRole with those keys). Cached.
Result<std::shared_ptr<CredentialsProvider>> from_secret(const std::map<std::string, std::string>& data,
                                                         registry::HttpClient& http, StsOptions sts,
                                                         Clock clock = {});

// The default chain without a Secret, first configured wins: environment keys; web identity
// (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE [+ AWS_ROLE_SESSION_NAME]); container credentials
// (AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or _TOKEN).
// A Credentials error naming every variable looked at when none is set. Cached.
Result<std::shared_ptr<CredentialsProvider>> default_chain(registry::HttpClient& http, Environment env,
                                                           StsOptions sts, Clock clock = {});

}  // namespace ferry::aws
