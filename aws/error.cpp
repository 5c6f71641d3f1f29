// AWS error text, throttling codes and default endpoints.
#include "aws/error.hpp"

#include <array>

namespace ferry::aws {

std::string Error::to_string() const {
  std::string out = service.empty() ? std::string("aws") : service;
  if (!operation.empty()) out += " " + operation;
  out += ": ";
  if (!code.empty()) out += code;
  if (http_status) out += (code.empty() ? "HTTP " : " (") + std::to_string(http_status) + (code.empty() ? "" : ")");
  if ((!code.empty() || http_status) && !message.empty()) out += ": ";
  out += message;
  // What to change, for the errors only the user can fix.
  const std::string action = (service == "ecr" ? "ecr:" : service == "sqs" ? "sqs:" : service + ":") + operation;
  if ((code == "AccessDeniedException" || code == "AccessDenied") && !operation.empty()) {
    out += " — the IAM identity Ferry uses needs " + action +
           " on this resource (docs/registries.md lists the policy for each side)";
  } else if (code.starts_with("Kms") || code.starts_with("KMS")) {
    out += " — check that the KMS key exists, is enabled and its key policy lets Ferry's identity use it"
           " (kms:DescribeKey, kms:CreateGrant, kms:GenerateDataKey, kms:Decrypt)";
  }
  return out;
}

Error from_transport(const registry::Error& e, std::string service, std::string operation) {
  return Error{.kind = ErrorKind::Transport,
               .service = std::move(service),
               .operation = std::move(operation),
               .message = e.to_string(),
               .http_status = e.http_status,
               .retryable = e.retryable()};
}

bool is_throttling(std::string_view code) {
  static constexpr std::array<std::string_view, 12> codes = {
      "Throttling",           "ThrottlingException",  "ThrottledException",
      "RequestThrottledException", "TooManyRequestsException", "ProvisionedThroughputExceededException",
      "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
      "LimitExceededException", "RequestThrottled",  "SlowDown"};
  for (auto c : codes)
    if (c == code) return true;
  return false;
}

std::string default_endpoint(std::string_view prefix, std::string_view region) {
  const bool china = region.starts_with("cn-");
  return "https://" + std::string(prefix) + "." + std::string(region) + (china ? ".amazonaws.com.cn" : ".amazonaws.com");
}

}  // namespace ferry::aws
