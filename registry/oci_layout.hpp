// An OCI image layout on disk (oci-layout, index.json, blobs/sha256/<hex>) as a copy source: what
// `ferry copy oci:DIR:TAG REF` pushes (skopeo's oci: transport; scripts/build-image.sh uses it).
// Blobs are streamed from their files, checked against their digests as they are read; manifests
// are verified, children before parents, the tag last: nothing half-written becomes visible.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "registry/copier.hpp"

namespace ferry::registry {

struct LayoutReference {
  std::string dir;
  std::string tag;  // org.opencontainers.image.ref.name in index.json; empty: its only manifest
};

// "oci:DIR[:TAG]" → the layout and tag; nullopt when `text` does not start with "oci:".
std::optional<LayoutReference> parse_layout_reference(std::string_view text);

// Pushes the image or index (every child) tagged `source.tag` in the layout to `destination`
// (by its tag, or by digest when it names one, which must be the layout's). Blocking, on a
// private io_context, for the CLI.
Result<CopyResult> push_layout(const LayoutReference& source, const Reference& destination,
                               const RegistryConfig& config, const CopyOptions& options, CopyStats& stats);

}  // namespace ferry::registry
