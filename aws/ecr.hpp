// Amazon ECR API client (JSON 1.1 protocol, SigV4 service "ecr"): the calls Ferry needs as a
// source and destination. Deliberately no Delete* operation: Ferry never deletes in ECR (S10).
#pragma once

#include <boost/json/object.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "aws/credentials.hpp"
#include "aws/transport.hpp"

namespace ferry::aws {

struct EcrOptions {
  std::string region;
  std::string endpoint;     // empty: https://api.ecr.<region>.amazonaws.com(.cn)
  std::string registry_id;  // empty: the caller's account
};

struct AuthorizationToken {
  std::string username;  // "AWS"
  std::string password;
  std::string proxy_endpoint;
  std::optional<std::chrono::system_clock::time_point> expires_at;
};

struct TagMutabilityExclusion {
  std::string filter_type = "WILDCARD";
  std::string filter;  // "release-*"
};

using Tags = std::vector<std::pair<std::string, std::string>>;

struct Repository {
  std::string name;
  std::string arn;
  std::string registry_id;
  std::string uri;
  std::string image_tag_mutability;  // MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION
  std::vector<TagMutabilityExclusion> exclusion_filters;
  bool scan_on_push = false;
  std::string encryption_type;  // AES256, KMS, KMS_DSSE
  std::string kms_key;
  std::optional<std::chrono::system_clock::time_point> created_at;
};

struct CreateRepositoryInput {
  std::string name;
  std::string image_tag_mutability = "MUTABLE";
  std::vector<TagMutabilityExclusion> exclusion_filters;
  bool scan_on_push = false;
  std::string encryption_type = "AES256";
  std::string kms_key;  // with KMS / KMS_DSSE
  Tags tags;
};

struct Image {
  std::string digest;
  std::vector<std::string> tags;
  std::optional<std::chrono::system_clock::time_point> pushed_at;
  long long size_bytes = -1;
  std::string manifest_media_type;
};

// Pure pieces, tested without sockets.
Result<AuthorizationToken> parse_authorization_token(const boost::json::object& response);
Repository parse_repository(const boost::json::object& repository);
Image parse_image(const boost::json::object& detail);
boost::json::object create_repository_request(const CreateRepositoryInput& in, std::string_view registry_id);
// Seconds since the epoch (a JSON number, as ECR sends) or an ISO 8601 string.
std::optional<std::chrono::system_clock::time_point> parse_timestamp(const boost::json::value& v);

class EcrClient {
 public:
  EcrClient(registry::HttpClient& http, std::shared_ptr<CredentialsProvider> creds, EcrOptions opts, Clock clock = {});

  // Basic credentials for the registry's data plane (base64 "AWS:<password>" decoded).
  Task<Result<AuthorizationToken>> get_authorization_token();
  // Every repository (names empty) or the named ones, all pages.
  Task<Result<std::vector<Repository>>> describe_repositories(const std::vector<std::string>& names = {});
  // One repository; nullopt when ECR answers RepositoryNotFoundException (absent, not failed).
  Task<Result<std::optional<Repository>>> describe_repository(std::string name);
  Task<Result<Repository>> create_repository(CreateRepositoryInput in);
  // Every image of a repository, all pages.
  Task<Result<std::vector<Image>>> describe_images(std::string repository);
  Task<Result<void>> tag_resource(std::string arn, Tags tags);
  Task<Result<void>> set_repository_policy(std::string repository, std::string policy_json);
  Task<Result<void>> put_lifecycle_policy(std::string repository, std::string policy_json);

  const std::string& endpoint() const { return json_.endpoint(); }

 private:
  void add_registry_id(boost::json::object& o) const;
  Task<Result<void>> call_for_effect(std::string_view operation, boost::json::object in, bool with_registry_id);
  JsonClient json_;
  std::string registry_id_;
};

// The data plane's Basic credentials, fetched again `margin` before the token's expiresAt (ECR
// tokens last 12 h) and after invalidate() (call it on a 401 from the registry). A token without
// expiresAt, or one already expired when issued (moto's), is used for one get() only.
class AuthorizationTokenCache {
 public:
  using Fetch = std::function<Task<Result<AuthorizationToken>>()>;
  explicit AuthorizationTokenCache(Fetch fetch, Clock clock = {}, std::chrono::seconds margin = std::chrono::minutes(30));
  explicit AuthorizationTokenCache(EcrClient& ecr, Clock clock = {}, std::chrono::seconds margin = std::chrono::minutes(30));
  Task<Result<AuthorizationToken>> get();
  void invalidate() { cached_.reset(); }

 private:
  Fetch fetch_;
  Clock clock_;
  std::chrono::seconds margin_;
  std::optional<AuthorizationToken> cached_;
};

}  // namespace ferry::aws
