// Fuzzes both Docker config readers (registry's for --authfile, the model's for
// kubernetes.io/dockerconfigjson Secrets) and the base64 decoders underneath them.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "reconcilers/model/secret_data.hpp"
#include "registry/auth.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  ferry::model::Secret secret;
  secret.type = "kubernetes.io/dockerconfigjson";
  secret.data[".dockerconfigjson"] = std::string(text);
  for (std::string_view host : {"registry.example.com", "docker.io", "127.0.0.1:5000", "https://ghcr.io"}) {
    (void)ferry::registry::credentials_from_docker_config(text, host);
    (void)ferry::model::credentials_from_secret(secret, host);
  }
  // Both decoders take any text; what they encode they decode back.
  (void)ferry::registry::base64_decode(text);
  (void)ferry::model::decode_base64(text);
  auto a = ferry::registry::base64_decode(ferry::registry::base64_encode(text));
  auto b = ferry::model::decode_base64(ferry::model::encode_base64(text));
  if (!a || *a != text || !b || *b != text) std::abort();
  return 0;
}
