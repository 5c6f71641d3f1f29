// Fuzzes registry permission policies (IAM policy documents): parsing, as an object and as a
// string of JSON, and evaluation of a replication request against what was read.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/policy.hpp"

using namespace ferry::model;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const PolicyRequest request{.partition = Partition::Aws,
                              .source_account = "111111111111",
                              .action = "ecr:ReplicateImage",
                              .resource = repository_arn(Partition::Aws, "eu-west-1", "222222222222", "prod/app")};
  if (auto doc = parse_json_text(text)) {
    if (auto policy = parse_policy(*doc)) (void)evaluate(*policy, request);
  }
  if (auto policy = parse_policy(boost::json::value(boost::json::string(text)))) (void)evaluate(*policy, request);
  // The glob matcher on its own: the first line is the pattern, the rest the text.
  const auto nl = text.find('\n');
  if (nl != std::string_view::npos) {
    (void)wildcard_match(text.substr(0, nl), text.substr(nl + 1), false);
    (void)wildcard_match(text.substr(0, nl), text.substr(nl + 1), true);
  }
  return 0;
}
