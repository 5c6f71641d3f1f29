// Amazon SQS client (JSON 1.0 protocol, SigV4 service "sqs"): long-polling receive and delete, for
// ECR push events delivered by EventBridge.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "aws/credentials.hpp"
#include "aws/transport.hpp"

namespace ferry::aws {

struct SqsOptions {
  std::string region;
  std::string endpoint;  // empty: https://sqs.<region>.amazonaws.com(.cn)
};

struct SqsMessage {
  std::string message_id;
  std::string receipt_handle;
  std::string body;
  std::map<std::string, std::string> attributes;  // ApproximateReceiveCount, SentTimestamp, ...
};

std::vector<SqsMessage> parse_messages(const boost::json::object& response);

class SqsClient {
 public:
  SqsClient(registry::HttpClient& http, std::shared_ptr<CredentialsProvider> creds, SqsOptions opts, Clock clock = {});
  // Long polling: waits up to wait_seconds (0-20) for up to max_messages (1-10).
  Task<Result<std::vector<SqsMessage>>> receive_message(std::string queue_url, int max_messages = 10,
                                                        int wait_seconds = 20,
                                                        std::optional<int> visibility_timeout = std::nullopt);
  Task<Result<void>> delete_message(std::string queue_url, std::string receipt_handle);

 private:
  JsonClient json_;
};

}  // namespace ferry::aws
