// Fuzzes what a registry answers: manifests and indexes, error bodies and Link headers.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "registry/wire.hpp"

using namespace ferry::registry;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (std::string_view ct : {media::oci_manifest, media::oci_index, media::docker_manifest, media::docker_list,
                              std::string_view("application/json; charset=utf-8"), std::string_view()}) {
    (void)inspect_manifest(text, ct);
  }
  for (int status : {400, 401, 403, 404, 500}) {
    Error err;
    apply_error_body(err, status, text);
    (void)err.to_string();
  }
  (void)parse_next_link(text);
  return 0;
}
