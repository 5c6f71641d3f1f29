// The AWS layer's pure parts: STS XML, container credentials JSON, ECR/SQS parsing and request
// bodies, JSON error mapping, endpoints, and the credential cache with a fake clock.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <limits>

#include "aws/credentials.hpp"
#include "aws/ecr.hpp"
#include "aws/sqs.hpp"
#include "aws/transport.hpp"

namespace ferry::aws {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

template <class T>
T run(registry::Task<T> task) {
  boost::asio::io_context ioc;
  std::optional<T> out;
  boost::asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e, T r) {
    if (e) std::rethrow_exception(e);
    out = std::move(r);
  });
  ioc.run();
  return std::move(*out);
}

TEST(Sts, ParsesAssumeRoleWithWebIdentityResponse) {
  const std::string xml = R"(<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <SessionToken>FQoGZXIvYXdzE&amp;token</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2026-12-02T00:30:00Z</Expiration>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <AssumedRoleUser><AccessKeyId>not-this</AccessKeyId></AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>)";
  auto c = parse_sts_credentials(xml, "AssumeRoleWithWebIdentity");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->access_key_id, "ASIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(c->secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
  EXPECT_EQ(c->session_token, "FQoGZXIvYXdzE&token");
  ASSERT_TRUE(c->expiration);
  EXPECT_EQ(*c->expiration, std::chrono::sys_days{std::chrono::year{2026} / 12 / 2} + 30min);
  EXPECT_FALSE(parse_sts_credentials("<x/>", "AssumeRole"));
}

TEST(Sts, ErrorsNameCodeAndMessage) {
  const auto e = parse_sts_error(
      "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: x is not authorized &lt;here&gt;"
      "</Message></Error></ErrorResponse>",
      403, "AssumeRole");
  EXPECT_EQ(e.code, "AccessDenied");
  EXPECT_EQ(e.message, "User: x is not authorized <here>");
  EXPECT_FALSE(e.retryable);
  EXPECT_EQ(e.to_string(),
            "sts AssumeRole: AccessDenied (403): User: x is not authorized <here> — the IAM identity Ferry uses "
            "needs sts:AssumeRole on this resource (docs/registries.md lists the policy for each side)");
  EXPECT_TRUE(parse_sts_error("<Error><Code>Throttling</Code></Error>", 400, "AssumeRole").retryable);
  EXPECT_TRUE(parse_sts_error("", 503, "AssumeRole").retryable);
}

TEST(Errors, AccessDeniedAndKmsSayWhatToChange) {
  Error denied{.kind = ErrorKind::Service, .service = "ecr", .operation = "CreateRepository",
               .code = "AccessDeniedException", .message = "User: arn:aws:iam::1:role/ferry is not authorized",
               .http_status = 400};
  EXPECT_EQ(denied.to_string(),
            "ecr CreateRepository: AccessDeniedException (400): User: arn:aws:iam::1:role/ferry is not authorized — "
            "the IAM identity Ferry uses needs ecr:CreateRepository on this resource (docs/registries.md lists the "
            "policy for each side)");
  Error kms{.kind = ErrorKind::Service, .service = "ecr", .operation = "CreateRepository",
            .code = "KmsException", .message = "key disabled", .http_status = 400};
  EXPECT_NE(kms.to_string().find("check that the KMS key exists, is enabled and its key policy"), std::string::npos);
  Error other{.kind = ErrorKind::Service, .service = "ecr", .operation = "DescribeImages",
              .code = "RepositoryNotFoundException", .message = "no such repository", .http_status = 400};
  EXPECT_EQ(other.to_string(), "ecr DescribeImages: RepositoryNotFoundException (400): no such repository");
}

TEST(Errors, AnXmlErrorBodyOnAJsonApiStillNamesTheCodeAndTheActionToGrant) {
  // What an AWS front end (and moto with IAM enforced) answers a JSON API call it denies.
  const auto e = parse_json_error(
      403,
      "<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: arn:aws:iam::2:user/ferry is not "
      "authorized to perform: ecr:CreateRepository</Message></Error></Errors></ErrorResponse>",
      "ecr", "CreateRepository");
  EXPECT_EQ(e.code, "AccessDenied");
  EXPECT_FALSE(e.retryable);
  EXPECT_NE(e.to_string().find("is not authorized to perform: ecr:CreateRepository — the IAM identity Ferry uses "
                               "needs ecr:CreateRepository"),
            std::string::npos)
      << e.to_string();
  EXPECT_EQ(parse_json_error(502, "<html>bad gateway</html>", "ecr", "PutImage").message,
            "HTTP 502 with a body that is not JSON");
}

TEST(Iso8601, Forms) {
  const auto base = std::chrono::sys_days{std::chrono::year{2026} / 1 / 2} + 3h + 4min + 5s;
  EXPECT_EQ(parse_iso8601("2026-01-02T03:04:05Z"), base);
  EXPECT_EQ(parse_iso8601("2026-01-02T03:04:05.123Z"), base);
  EXPECT_EQ(parse_iso8601("2026-01-02T04:04:05+01:00"), base);
  EXPECT_EQ(parse_iso8601("2026-01-02T03:04:05"), base);
  EXPECT_FALSE(parse_iso8601("yesterday"));
  EXPECT_FALSE(parse_iso8601("2026-01-02T03:04:05Zjunk"));
}

// Found by tests/fuzz (fuzz_aws_response): createdAt "4052-11-28T14:00:00Z" overflowed the
// nanosecond clock in from_time_t (UBSan); years past 2261 are unreadable.
TEST(Iso8601, YearsBeyondTheClockAreUnreadable) {
  EXPECT_FALSE(parse_iso8601("4052-11-28T14:00:00Z"));
  EXPECT_FALSE(parse_iso8601("9999-12-31T23:59:59-23:59"));
  EXPECT_TRUE(parse_iso8601("2261-01-01T00:00:00Z"));
  auto r = parse_repository(json::parse(R"({"repositoryName":"a","createdAt":"4052-11-28T14:00:00Z"})").as_object());
  EXPECT_EQ(r.name, "a");
  EXPECT_FALSE(r.created_at);
}

TEST(ContainerCredentials, ParsesTheEndpointsJson) {
  auto c = parse_container_credentials(
      R"({"AccessKeyId":"ASIA1","SecretAccessKey":"s3cr3t","Token":"tok","Expiration":"2026-12-02T00:00:00Z"})");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->access_key_id, "ASIA1");
  EXPECT_EQ(c->session_token, "tok");
  EXPECT_TRUE(c->expiration);
  auto bad = parse_container_credentials(R"({"SecretAccessKey":"s3cr3t"})");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().to_string().find("s3cr3t"), std::string::npos);
}

TEST(Endpoints, DefaultsPerPartition) {
  EXPECT_EQ(default_endpoint("api.ecr", "us-east-1"), "https://api.ecr.us-east-1.amazonaws.com");
  EXPECT_EQ(default_endpoint("sqs", "cn-north-1"), "https://sqs.cn-north-1.amazonaws.com.cn");
  EXPECT_EQ(StsOptions{.region = "cn-northwest-1"}.sts_endpoint(), "https://sts.cn-northwest-1.amazonaws.com.cn");
  const StsOptions local{.region = "eu-west-1", .endpoint = "http://127.0.0.1:5000"};
  EXPECT_EQ(local.sts_endpoint(), "http://127.0.0.1:5000");
}

TEST(JsonErrors, TypeMessageStatusRetryable) {
  auto e = parse_json_error(400, R"({"__type":"com.amazonaws.ecr#RepositoryNotFoundException","message":"gone"})", "ecr",
                            "DescribeRepositories");
  EXPECT_EQ(e.code, "RepositoryNotFoundException");
  EXPECT_EQ(e.message, "gone");
  EXPECT_FALSE(e.retryable);
  EXPECT_EQ(e.to_string(), "ecr DescribeRepositories: RepositoryNotFoundException (400): gone");
  EXPECT_TRUE(parse_json_error(400, R"({"__type":"ThrottlingException","Message":"slow"})", "ecr", "X").retryable);
  EXPECT_EQ(parse_json_error(400, R"({"__type":"KmsException:http://internal"})", "ecr", "X").code, "KmsException");
  EXPECT_TRUE(parse_json_error(500, "<html>", "ecr", "X").retryable);
  EXPECT_FALSE(parse_json_error(403, R"({"__type":"AccessDeniedException"})", "ecr", "X").retryable);
}

TEST(JsonErrors, RedactionRemovesEverySecret) {
  Error e{.message = "you sent tok and tok and key"};
  redact(e, {"tok", "", "key"});
  EXPECT_EQ(e.message, "you sent <redacted> and <redacted> and <redacted>");
}

TEST(Ecr, AuthorizationTokenIsDecoded) {
  auto o = json::parse(R"({"authorizationData":[{"authorizationToken":"QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu",
      "expiresAt":1420070400.0,"proxyEndpoint":"https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}]})").as_object();
  auto t = parse_authorization_token(o);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->username, "AWS");
  EXPECT_EQ(t->password, "123456789012-auth-token");
  EXPECT_EQ(*t->expires_at, std::chrono::sys_days{std::chrono::year{2015} / 1 / 1});
  EXPECT_FALSE(parse_authorization_token(json::object{}));
}

TEST(Ecr, CreateRepositoryBody) {
  CreateRepositoryInput in{.name = "team/app", .image_tag_mutability = "IMMUTABLE_WITH_EXCLUSION",
                           .exclusion_filters = {{"WILDCARD", "latest"}}, .scan_on_push = true,
                           .encryption_type = "KMS", .kms_key = "arn:aws:kms:us-east-1:1:key/k", .tags = {{"team", "a"}}};
  EXPECT_EQ(json::serialize(create_repository_request(in, "111111111111")),
            R"({"repositoryName":"team/app","imageTagMutability":"IMMUTABLE_WITH_EXCLUSION",)"
            R"("imageScanningConfiguration":{"scanOnPush":true},"registryId":"111111111111",)"
            R"("imageTagMutabilityExclusionFilters":[{"filterType":"WILDCARD","filter":"latest"}],)"
            R"("encryptionConfiguration":{"encryptionType":"KMS","kmsKey":"arn:aws:kms:us-east-1:1:key/k"},)"
            R"("tags":[{"Key":"team","Value":"a"}]})");
  EXPECT_EQ(json::serialize(create_repository_request(CreateRepositoryInput{.name = "x"}, "")),
            R"({"repositoryName":"x","imageTagMutability":"MUTABLE","imageScanningConfiguration":{"scanOnPush":false},)"
            R"("encryptionConfiguration":{"encryptionType":"AES256"}})");
}

TEST(Ecr, RepositoryAndImageParsing) {
  auto r = parse_repository(json::parse(R"({"repositoryName":"a","repositoryArn":"arn:aws:ecr:us-east-1:1:repository/a",
    "registryId":"1","repositoryUri":"1.dkr.ecr.us-east-1.amazonaws.com/a","createdAt":"2026-01-02T03:04:05Z",
    "imageTagMutability":"MUTABLE_WITH_EXCLUSION","imageTagMutabilityExclusionFilters":[{"filterType":"WILDCARD","filter":"dev-*"}],
    "imageScanningConfiguration":{"scanOnPush":true},"encryptionConfiguration":{"encryptionType":"AES256"}})").as_object());
  EXPECT_EQ(r.name, "a");
  EXPECT_EQ(r.image_tag_mutability, "MUTABLE_WITH_EXCLUSION");
  ASSERT_EQ(r.exclusion_filters.size(), 1u);
  EXPECT_EQ(r.exclusion_filters[0].filter, "dev-*");
  EXPECT_TRUE(r.scan_on_push);
  EXPECT_EQ(r.encryption_type, "AES256");
  EXPECT_TRUE(r.created_at);
  auto i = parse_image(json::parse(R"({"imageDigest":"sha256:ab","imageTags":["v1","latest"],"imagePushedAt":1767323045.5,
    "imageSizeInBytes":1234,"imageManifestMediaType":"application/vnd.oci.image.manifest.v1+json"})").as_object());
  EXPECT_EQ(i.digest, "sha256:ab");
  EXPECT_EQ(i.tags, (std::vector<std::string>{"v1", "latest"}));
  EXPECT_EQ(i.size_bytes, 1234);
  ASSERT_TRUE(i.pushed_at);
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(i.pushed_at->time_since_epoch()).count(), 1767323045500);
}

// Found by tests/fuzz (fuzz_aws_response): expiresAt 17646800000.123 (year 2529) overflowed the
// nanosecond clock (UB in the conversion); such times are unreadable. Sizes that are not whole
// numbers made to_number throw.
TEST(Ecr, TimesAndSizesOutOfRangeAreUnreadableNotFatal) {
  auto t = parse_authorization_token(json::parse(R"({"authorizationData":[{"authorizationToken":
      "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu","expiresAt":17646800000.123,"proxyEndpoint":"https://e"}]})").as_object());
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->expires_at);
  EXPECT_FALSE(parse_timestamp(json::value(-1e300)));
  EXPECT_FALSE(parse_timestamp(json::value(std::numeric_limits<double>::quiet_NaN())));
  EXPECT_TRUE(parse_timestamp(json::value(-1e9)));
  auto i = parse_image(json::parse(R"({"imageDigest":"sha256:ab","imagePushedAt":1e19,"imageSizeInBytes":1.5})").as_object());
  EXPECT_FALSE(i.pushed_at);
  EXPECT_EQ(i.size_bytes, -1);
  EXPECT_EQ(parse_image(json::parse(R"({"imageSizeInBytes":1e300})").as_object()).size_bytes, -1);
}

TEST(Sqs, MessagesParsed) {
  auto m = parse_messages(json::parse(R"({"Messages":[{"MessageId":"m1","ReceiptHandle":"rh","Body":"{}",
    "Attributes":{"ApproximateReceiveCount":"2"}}]})").as_object());
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].receipt_handle, "rh");
  EXPECT_EQ(m[0].attributes["ApproximateReceiveCount"], "2");
  EXPECT_TRUE(parse_messages(json::object{}).empty());
}

// Counts calls; hands out credentials expiring at `expiry`.
class CountingProvider : public CredentialsProvider {
 public:
  std::optional<std::chrono::system_clock::time_point> expiry;
  int calls = 0;
  registry::Task<Result<Credentials>> credentials() override {
    ++calls;
    co_return Credentials{.access_key_id = "id" + std::to_string(calls), .secret_access_key = "s", .expiration = expiry};
  }
  std::string name() const override { return "counting"; }
};

TEST(CachingProvider, RefreshesFiveMinutesBeforeExpiry) {
  auto now = std::chrono::sys_days{std::chrono::year{2026} / 12 / 1} + 0s;
  auto inner = std::make_shared<CountingProvider>();
  inner->expiry = now + 1h;
  CachingProvider cache(inner, [&] { return std::chrono::system_clock::time_point(now); });
  EXPECT_EQ(run(cache.credentials())->access_key_id, "id1");
  now += 54min;
  EXPECT_EQ(run(cache.credentials())->access_key_id, "id1");
  now += 1min + 1s;  // inside the 5-minute margin
  EXPECT_EQ(run(cache.credentials())->access_key_id, "id2");
  EXPECT_EQ(inner->calls, 2);
}

TEST(CachingProvider, LongTermCredentialsAreFetchedOnce) {
  auto inner = std::make_shared<CountingProvider>();
  CachingProvider cache(inner);
  run(cache.credentials());
  run(cache.credentials());
  EXPECT_EQ(inner->calls, 1);
}

TEST(AuthorizationTokenCache, RefetchesBeforeExpiryAndAfterInvalidate) {
  auto now = std::chrono::sys_days{std::chrono::year{2026} / 12 / 1} + 0s;
  int calls = 0;
  std::optional<std::chrono::system_clock::time_point> expires = now + 12h;
  AuthorizationTokenCache cache(
      [&]() -> registry::Task<Result<AuthorizationToken>> {
        ++calls;
        co_return AuthorizationToken{.username = "AWS", .password = "p" + std::to_string(calls), .expires_at = expires};
      },
      [&] { return std::chrono::system_clock::time_point(now); });
  EXPECT_EQ(run(cache.get())->password, "p1");
  now += 11h;
  EXPECT_EQ(run(cache.get())->password, "p1");
  now += 31min;  // within 30 minutes of expiry
  EXPECT_EQ(run(cache.get())->password, "p2");
  cache.invalidate();  // a 401 from the registry
  EXPECT_EQ(run(cache.get())->password, "p3");
  expires = now - 1h;  // already expired when issued (as moto's): fetched on every get
  cache.invalidate();
  run(cache.get());
  EXPECT_EQ(run(cache.get())->password, "p5");
}

TEST(Providers, EnvironmentAndChainSelection) {
  std::map<std::string, std::string> vars{{"AWS_ACCESS_KEY_ID", "AKID"}, {"AWS_SECRET_ACCESS_KEY", "SECRET"},
                                          {"AWS_SESSION_TOKEN", "TOKEN"}};
  Environment env = [&](std::string_view n) -> std::optional<std::string> {
    auto it = vars.find(std::string(n));
    return it == vars.end() ? std::nullopt : std::optional(it->second);
  };
  boost::asio::io_context ioc;
  registry::HttpClient http(ioc.get_executor(), {});
  auto p = default_chain(http, env, {});
  ASSERT_TRUE(p);
  EXPECT_EQ((*p)->name(), "environment");
  auto c = run((*p)->credentials());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->session_token, "TOKEN");

  vars = {{"AWS_ROLE_ARN", "arn:aws:iam::1:role/r"}, {"AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent"},
          {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds"}};
  EXPECT_EQ((*default_chain(http, env, {}))->name(), "web identity");
  vars.erase("AWS_ROLE_ARN");
  EXPECT_EQ((*default_chain(http, env, {}))->name(), "container");
  vars.clear();
  auto none = default_chain(http, env, {});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().kind, ErrorKind::Credentials);
  EXPECT_NE(none.error().message.find("AWS_WEB_IDENTITY_TOKEN_FILE"), std::string::npos);
}

TEST(Providers, SecretKeysAndMissingOnes) {
  boost::asio::io_context ioc;
  registry::HttpClient http(ioc.get_executor(), {});
  auto p = from_secret({{"aws_access_key_id", "AKID"}, {"aws_secret_access_key", "TOPSECRET"}}, http, {});
  ASSERT_TRUE(p);
  EXPECT_EQ(run((*p)->credentials())->secret_access_key, "TOPSECRET");
  auto bad = from_secret({{"aws_secret_access_key", "TOPSECRET"}}, http, {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().to_string().find("TOPSECRET"), std::string::npos);
  auto role = from_secret({{"aws_access_key_id", "AKID"}, {"aws_secret_access_key", "S"}, {"role_arn", "arn:r"}}, http, {});
  ASSERT_TRUE(role);
  EXPECT_EQ((*role)->name(), "assume role");
}

TEST(Providers, WebIdentityWithoutTokenFileFailsWithoutSecrets) {
  boost::asio::io_context ioc;
  registry::HttpClient http(ioc.get_executor(), {});
  WebIdentityProvider p(http, "arn:aws:iam::1:role/r", "/nonexistent/token", "", {});
  auto c = run(p.credentials());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().kind, ErrorKind::Credentials);
  EXPECT_NE(c.error().message.find("/nonexistent/token"), std::string::npos);
}

}  // namespace
}  // namespace ferry::aws
