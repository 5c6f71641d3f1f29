// SQS ReceiveMessage (long polling) and DeleteMessage on the JSON 1.0 protocol.
#include "aws/sqs.hpp"

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

namespace ferry::aws {

namespace json = boost::json;

namespace {
JsonProtocol sqs_protocol() { return {"sqs", "AmazonSQS", "application/x-amz-json-1.0"}; }
json::array all_attributes() {
  json::array a;
  a.emplace_back("All");
  return a;
}
}  // namespace

std::vector<SqsMessage> parse_messages(const json::object& response) {
  std::vector<SqsMessage> out;
  auto* list = response.if_contains("Messages");
  if (!list || !list->is_array()) return out;
  for (const auto& m : list->as_array()) {
    if (!m.is_object()) continue;
    const auto& o = m.as_object();
    auto s = [&](const char* k) {
      auto* p = o.if_contains(k);
      return p && p->is_string() ? std::string(p->as_string()) : std::string();
    };
    SqsMessage msg{.message_id = s("MessageId"), .receipt_handle = s("ReceiptHandle"), .body = s("Body")};
    if (auto* a = o.if_contains("Attributes"); a && a->is_object())
      for (const auto& [k, v] : a->as_object())
        if (v.is_string()) msg.attributes[std::string(k)] = std::string(v.as_string());
    out.push_back(std::move(msg));
  }
  return out;
}

SqsClient::SqsClient(registry::HttpClient& http, std::shared_ptr<CredentialsProvider> creds, SqsOptions opts,
                     Clock clock)
    : json_(http, std::move(creds), opts.region,
            opts.endpoint.empty() ? default_endpoint("sqs", opts.region) : opts.endpoint, sqs_protocol(), std::move(clock)) {}

Task<Result<std::vector<SqsMessage>>> SqsClient::receive_message(std::string queue_url, int max_messages,
                                                                 int wait_seconds, std::optional<int> visibility_timeout) {
  json::object in{{"QueueUrl", queue_url},
                  {"MaxNumberOfMessages", std::clamp(max_messages, 1, 10)},
                  {"WaitTimeSeconds", std::clamp(wait_seconds, 0, 20)},
                  {"MessageSystemAttributeNames", all_attributes()}};
  if (visibility_timeout) in["VisibilityTimeout"] = *visibility_timeout;
  auto out = co_await json_.call("ReceiveMessage", in);
  if (!out) co_return std::unexpected(out.error());
  co_return parse_messages(*out);
}

Task<Result<void>> SqsClient::delete_message(std::string queue_url, std::string receipt_handle) {
  // Named, not a temporary in the co_await: GCC 12 rejects initializer lists there.
  const json::object in{{"QueueUrl", queue_url}, {"ReceiptHandle", receipt_handle}};
  auto out = co_await json_.call("DeleteMessage", in);
  if (!out) co_return std::unexpected(out.error());
  co_return Result<void>{};
}

}  // namespace ferry::aws
