// One AWS request on the project's HttpClient: sign (when credentials are given), send, read the
// body; and the JSON protocols (awsJson1_0 / awsJson1_1) that ECR and SQS speak on top of it.
#pragma once

#include <boost/json/object.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "aws/credentials.hpp"
#include "aws/error.hpp"
#include "aws/sigv4.hpp"
#include "registry/http.hpp"

namespace ferry::aws {

struct Response {
  int status = 0;
  std::string body;
};

inline constexpr std::size_t kMaxResponseBytes = 16 * 1024 * 1024;

// Sends req as it is, or SigV4-signed for (region, service) with creds when creds is non-null.
// A transport failure is an Error; any HTTP status is a Response.
Task<Result<Response>> send(registry::HttpClient& http, registry::HttpRequest req, const Credentials* creds,
                            std::string_view region, std::string_view service, std::string_view operation,
                            const Clock& clock);

// The error of a JSON-protocol response: __type ("com.amazonaws.ecr#RepositoryNotFoundException"
// or "RepositoryNotFoundException:..." -> RepositoryNotFoundException), message or Message, the
// status, and retryable for throttling codes and 5xx. Pure.
Error parse_json_error(int status, std::string_view body, std::string_view service, std::string_view operation);

// Replaces every occurrence of each non-empty secret in e.message with "<redacted>": servers
// may echo what they were sent, and no key or token leaves through an error message.
void redact(Error& e, std::initializer_list<std::string_view> secrets);

struct JsonProtocol {
  std::string service;       // signing name: "ecr", "sqs"
  std::string target_prefix; // "AmazonEC2ContainerRegistry_V20150921", "AmazonSQS"
  std::string content_type;  // "application/x-amz-json-1.1", "application/x-amz-json-1.0"
};

// POST / with X-Amz-Target: <prefix>.<Operation> and a JSON body, signed.
class JsonClient {
 public:
  JsonClient(registry::HttpClient& http, std::shared_ptr<CredentialsProvider> creds, std::string region,
             std::string endpoint, JsonProtocol protocol, Clock clock = {});
  Task<Result<boost::json::object>> call(std::string_view operation, const boost::json::object& input);
  const std::string& endpoint() const { return endpoint_; }
  const std::string& region() const { return region_; }

 private:
  registry::HttpClient& http_;
  std::shared_ptr<CredentialsProvider> creds_;
  std::string region_, endpoint_;
  JsonProtocol protocol_;
  Clock clock_;
};

}  // namespace ferry::aws
