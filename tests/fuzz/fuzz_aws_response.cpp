// Fuzzes what Ferry reads from AWS JSON responses: SQS ReceiveMessage, ECR
// GetAuthorizationToken / DescribeRepositories / DescribeImages, JSON error bodies, timestamps.
#include <boost/json/parse.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "aws/credentials.hpp"
#include "aws/ecr.hpp"
#include "aws/sqs.hpp"
#include "aws/transport.hpp"

using namespace ferry::aws;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)parse_json_error(400, text, "ecr", "DescribeImages").to_string();
  (void)parse_iso8601(text);
  boost::system::error_code ec;
  auto doc = boost::json::parse(text, ec);
  if (ec || !doc.is_object()) return 0;
  const auto& o = doc.as_object();
  (void)parse_messages(o);
  (void)parse_authorization_token(o);
  (void)parse_repository(o);
  (void)parse_image(o);
  for (std::string_view key : {"repositories", "imageDetails"}) {
    if (const auto* list = o.if_contains(key); list && list->is_array()) {
      for (const auto& item : list->as_array()) {
        if (item.is_object()) (void)parse_repository(item.as_object()), (void)parse_image(item.as_object());
      }
    }
  }
  return 0;
}
