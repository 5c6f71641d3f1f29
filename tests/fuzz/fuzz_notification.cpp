// Fuzzes the ways a push is reported: registry notification envelopes ({"events":[...]},
// Distribution v1/v2+json) with their Content-Type check, and ECR's EventBridge "ECR Image Action"
// events as SQS message bodies.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "reconcilers/model/events.hpp"
#include "reconcilers/model/validate.hpp"

using namespace ferry::model;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)is_notification_content_type(text);
  auto events = parse_notification(text);
  if (!events) return 0;
  // What is kept must be safe to turn into records: names and digests were checked.
  for (const auto& e : *events) {
    if (!is_valid_repository_name(e.repository) || !is_valid_digest(e.digest)) std::abort();
    if (!e.tag.empty() && !is_valid_tag(e.tag)) std::abort();
  }
  if (auto ecr = parse_ecr_image_action(text); ecr && ecr->successful_push) {
    const auto& p = ecr->push;
    if (!is_valid_repository_name(p.repository) || !is_valid_digest(p.digest)) std::abort();
    if (!p.tag.empty() && !is_valid_tag(p.tag)) std::abort();
  }
  return 0;
}
