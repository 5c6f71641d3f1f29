// Fuzzes image references (host/repo:tag@digest) and name validation; a parsed reference must
// print as text that parses back to the same reference.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "registry/reference.hpp"

using namespace ferry::registry;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)valid_repository_name(text);
  (void)valid_tag(text);
  (void)valid_digest(text);
  auto ref = parse_reference(text);
  if (!ref) return 0;
  auto again = parse_reference(ref->to_string());
  if (!again || again->registry != ref->registry || again->repository != ref->repository ||
      again->tag != ref->tag || again->digest != ref->digest) {
    std::abort();
  }
  (void)api_host(ref->registry);
  return 0;
}
