// ECR operations: request bodies, response parsing and pagination.
#include "aws/ecr.hpp"

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>
#include <cmath>

#include "registry/auth.hpp"

namespace ferry::aws {

namespace json = boost::json;

namespace {

JsonProtocol ecr_protocol() { return {"ecr", "AmazonEC2ContainerRegistry_V20150921", "application/x-amz-json-1.1"}; }

std::string str(const json::object& o, std::string_view key) {
  auto* p = o.if_contains(key);
  return p && p->is_string() ? std::string(p->as_string()) : std::string();
}

const json::object* obj(const json::object& o, std::string_view key) {
  auto* p = o.if_contains(key);
  return p && p->is_object() ? &p->as_object() : nullptr;
}

const json::array* arr(const json::object& o, std::string_view key) {
  auto* p = o.if_contains(key);
  return p && p->is_array() ? &p->as_array() : nullptr;
}

json::array tags_json(const Tags& tags) {
  json::array a;
  for (const auto& [k, v] : tags) a.push_back(json::object{{"Key", k}, {"Value", v}});
  return a;
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> parse_timestamp(const json::value& v) {
  if (v.is_number()) {
    const double s = v.to_number<double>();
    // Beyond the clock's range (or NaN) the conversion below is undefined: unreadable, not a time.
    if (!(std::fabs(s) < static_cast<double>(kMaxClockSeconds))) return std::nullopt;
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(s)));
  }
  if (v.is_string()) return parse_iso8601(v.as_string());
  return std::nullopt;
}

Result<AuthorizationToken> parse_authorization_token(const json::object& response) {
  const auto* data = arr(response, "authorizationData");
  if (!data || data->empty() || !data->front().is_object())
    return fail(ErrorKind::Protocol, "ecr", "GetAuthorizationToken", "response has no authorizationData");
  const auto& d = data->front().as_object();
  auto decoded = registry::base64_decode(str(d, "authorizationToken"));
  if (!decoded) return fail(ErrorKind::Protocol, "ecr", "GetAuthorizationToken", "authorizationToken is not base64");
  const auto colon = decoded->find(':');
  if (colon == std::string::npos)
    return fail(ErrorKind::Protocol, "ecr", "GetAuthorizationToken", "authorizationToken is not base64 of USER:PASSWORD");
  AuthorizationToken t{.username = decoded->substr(0, colon), .password = decoded->substr(colon + 1),
                       .proxy_endpoint = str(d, "proxyEndpoint")};
  if (auto* e = d.if_contains("expiresAt")) t.expires_at = parse_timestamp(*e);
  return t;
}

Repository parse_repository(const json::object& r) {
  Repository out{.name = str(r, "repositoryName"), .arn = str(r, "repositoryArn"), .registry_id = str(r, "registryId"),
                 .uri = str(r, "repositoryUri"), .image_tag_mutability = str(r, "imageTagMutability")};
  if (const auto* filters = arr(r, "imageTagMutabilityExclusionFilters"))
    for (const auto& f : *filters)
      if (f.is_object())
        out.exclusion_filters.push_back({str(f.as_object(), "filterType"), str(f.as_object(), "filter")});
  if (const auto* scan = obj(r, "imageScanningConfiguration"))
    if (auto* p = scan->if_contains("scanOnPush"); p && p->is_bool()) out.scan_on_push = p->as_bool();
  if (const auto* enc = obj(r, "encryptionConfiguration")) {
    out.encryption_type = str(*enc, "encryptionType");
    out.kms_key = str(*enc, "kmsKey");
  }
  if (auto* c = r.if_contains("createdAt")) out.created_at = parse_timestamp(*c);
  return out;
}

Image parse_image(const json::object& d) {
  Image out{.digest = str(d, "imageDigest"), .manifest_media_type = str(d, "imageManifestMediaType")};
  if (const auto* tags = arr(d, "imageTags"))
    for (const auto& t : *tags)
      if (t.is_string()) out.tags.emplace_back(t.as_string());
  if (auto* p = d.if_contains("imagePushedAt")) out.pushed_at = parse_timestamp(*p);
  if (auto* s = d.if_contains("imageSizeInBytes"); s && s->is_number()) {
    // Not a whole number in range (1.5, 1e300): unknown, rather than the exception to_number throws.
    boost::system::error_code ec;
    if (const auto n = s->to_number<long long>(ec); !ec) out.size_bytes = n;
  }
  return out;
}

json::object create_repository_request(const CreateRepositoryInput& in, std::string_view registry_id) {
  json::object o{{"repositoryName", in.name},
                 {"imageTagMutability", in.image_tag_mutability},
                 {"imageScanningConfiguration", json::object{{"scanOnPush", in.scan_on_push}}}};
  if (!registry_id.empty()) o["registryId"] = registry_id;
  if (!in.exclusion_filters.empty()) {
    json::array filters;
    for (const auto& f : in.exclusion_filters)
      filters.push_back(json::object{{"filterType", f.filter_type}, {"filter", f.filter}});
    o["imageTagMutabilityExclusionFilters"] = std::move(filters);
  }
  json::object enc{{"encryptionType", in.encryption_type}};
  if (!in.kms_key.empty()) enc["kmsKey"] = in.kms_key;
  o["encryptionConfiguration"] = std::move(enc);
  if (!in.tags.empty()) o["tags"] = tags_json(in.tags);
  return o;
}

EcrClient::EcrClient(registry::HttpClient& http, std::shared_ptr<CredentialsProvider> creds, EcrOptions opts,
                     Clock clock)
    : json_(http, std::move(creds), opts.region,
            opts.endpoint.empty() ? default_endpoint("api.ecr", opts.region) : opts.endpoint, ecr_protocol(), std::move(clock)),
      registry_id_(std::move(opts.registry_id)) {}

void EcrClient::add_registry_id(json::object& o) const {
  if (!registry_id_.empty()) o["registryId"] = registry_id_;
}

Task<Result<AuthorizationToken>> EcrClient::get_authorization_token() {
  json::object in;
  if (!registry_id_.empty()) in["registryIds"] = json::array{json::value(registry_id_)};
  auto out = co_await json_.call("GetAuthorizationToken", in);
  if (!out) co_return std::unexpected(out.error());
  co_return parse_authorization_token(*out);
}

Task<Result<std::vector<Repository>>> EcrClient::describe_repositories(const std::vector<std::string>& names) {
  std::vector<Repository> repos;
  std::string next;
  do {
    json::object in;
    add_registry_id(in);
    if (!names.empty()) {
      json::array a;
      for (const auto& n : names) a.push_back(json::value(n));
      in["repositoryNames"] = std::move(a);
    }
    if (!next.empty()) in["nextToken"] = next;
    auto out = co_await json_.call("DescribeRepositories", in);
    if (!out) co_return std::unexpected(out.error());
    if (const auto* list = arr(*out, "repositories"))
      for (const auto& r : *list)
        if (r.is_object()) repos.push_back(parse_repository(r.as_object()));
    next = str(*out, "nextToken");
  } while (!next.empty());
  co_return repos;
}

Task<Result<std::optional<Repository>>> EcrClient::describe_repository(std::string name) {
  const std::vector<std::string> names{name};
  auto repos = co_await describe_repositories(names);
  if (!repos) {
    if (repos.error().is("RepositoryNotFoundException")) co_return std::optional<Repository>{};
    co_return std::unexpected(repos.error());
  }
  for (auto& r : *repos)
    if (r.name == name) co_return std::optional<Repository>(std::move(r));
  co_return std::optional<Repository>{};
}

Task<Result<Repository>> EcrClient::create_repository(CreateRepositoryInput in) {
  auto out = co_await json_.call("CreateRepository", create_repository_request(in, registry_id_));
  if (!out) co_return std::unexpected(out.error());
  const auto* r = obj(*out, "repository");
  if (!r) co_return fail(ErrorKind::Protocol, "ecr", "CreateRepository", "response has no repository");
  co_return parse_repository(*r);
}

Task<Result<std::vector<Image>>> EcrClient::describe_images(std::string repository) {
  std::vector<Image> images;
  std::string next;
  do {
    json::object in{{"repositoryName", repository}};
    add_registry_id(in);
    if (!next.empty()) in["nextToken"] = next;
    auto out = co_await json_.call("DescribeImages", in);
    if (!out) co_return std::unexpected(out.error());
    if (const auto* list = arr(*out, "imageDetails"))
      for (const auto& d : *list)
        if (d.is_object()) images.push_back(parse_image(d.as_object()));
    next = str(*out, "nextToken");
  } while (!next.empty());
  co_return images;
}

// The operations whose answer Ferry does not need: only success or the error counts.
Task<Result<void>> EcrClient::call_for_effect(std::string_view operation, json::object in, bool with_registry_id) {
  if (with_registry_id) add_registry_id(in);
  auto out = co_await json_.call(operation, in);
  if (!out) co_return std::unexpected(out.error());
  co_return Result<void>{};
}

Task<Result<void>> EcrClient::tag_resource(std::string arn, Tags tags) {
  return call_for_effect("TagResource", json::object{{"resourceArn", arn}, {"tags", tags_json(tags)}}, false);
}

Task<Result<void>> EcrClient::set_repository_policy(std::string repository, std::string policy_json) {
  return call_for_effect("SetRepositoryPolicy", json::object{{"repositoryName", repository}, {"policyText", policy_json}},
                         true);
}

Task<Result<void>> EcrClient::put_lifecycle_policy(std::string repository, std::string policy_json) {
  return call_for_effect("PutLifecyclePolicy",
                         json::object{{"repositoryName", repository}, {"lifecyclePolicyText", policy_json}}, true);
}

AuthorizationTokenCache::AuthorizationTokenCache(Fetch fetch, Clock clock, std::chrono::seconds margin)
    : fetch_(std::move(fetch)),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::system_clock::now(); })),
      margin_(margin) {}

AuthorizationTokenCache::AuthorizationTokenCache(EcrClient& ecr, Clock clock, std::chrono::seconds margin)
    : AuthorizationTokenCache([&ecr] { return ecr.get_authorization_token(); }, std::move(clock), margin) {}

Task<Result<AuthorizationToken>> AuthorizationTokenCache::get() {
  if (cached_ && cached_->expires_at && clock_() + margin_ < *cached_->expires_at) co_return *cached_;
  auto fresh = co_await fetch_();
  if (!fresh) co_return std::unexpected(fresh.error());
  cached_ = *fresh;
  co_return *fresh;
}

}  // namespace ferry::aws
