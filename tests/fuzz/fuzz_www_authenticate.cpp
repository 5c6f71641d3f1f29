// Fuzzes WWW-Authenticate challenges (RFC 7235) and USER:PASSWORD credentials.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "registry/auth.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)ferry::registry::parse_www_authenticate(text);
  if (auto creds = ferry::registry::parse_user_password(text)) (void)ferry::registry::basic_authorization(*creds);
  return 0;
}
