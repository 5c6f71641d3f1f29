// Pure pieces of the distribution protocol: media types, Link pagination, error bodies, sha256.
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "registry/error.hpp"

namespace ferry::registry {

namespace media {
inline constexpr std::string_view docker_manifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view docker_list = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view oci_manifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view oci_index = "application/vnd.oci.image.index.v1+json";
// The Accept header sent for manifests: every kind Ferry copies.
inline constexpr std::string_view manifest_accept =
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.artifact.manifest.v1+json";
}  // namespace media

inline constexpr std::size_t kMaxManifestBytes = 4 * 1024 * 1024;

// The target of rel="next" in a Link header (`</v2/_catalog?last=b&n=2>; rel="next"`), if any.
std::optional<std::string> parse_next_link(std::string_view header);

// Maps a registry's JSON error body ({"errors":[{"code","message"}]}) and status into err.
void apply_error_body(Error& err, int status, std::string_view body);

// A manifest's children: for an index its manifests, for an image its config and layers.
struct Descriptor {
  std::string media_type;
  std::string digest;
  long long size = -1;
  bool foreign = false;  // nondistributable layer with urls: never copied
};
struct ManifestInfo {
  std::string media_type;   // from the body, falling back to Content-Type
  bool is_index = false;
  std::vector<Descriptor> children;  // index: manifests; image: config, layers (and subject not)
};
Result<ManifestInfo> inspect_manifest(std::string_view bytes, std::string_view content_type);

class Sha256 {
 public:
  Sha256();
  void update(std::span<const std::byte> data);
  void update(std::string_view data);
  std::string final_digest();  // "sha256:<hex>"
  static std::string of(std::string_view data);

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

}  // namespace ferry::registry
