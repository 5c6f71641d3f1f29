// The image copier: one image or index (every child) from a source to a destination
// registry, blobs streamed socket-to-socket, many images at once with shared-blob dedupe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "registry/client.hpp"
#include "registry/reference.hpp"

namespace ferry::registry {

struct CopyOptions {
  std::size_t max_parallel_blobs = 8;    // blob transfers in flight, across all images
  std::size_t max_parallel_images = 16;  // images in flight in copy_all
  std::size_t chunk_bytes = 1 << 20;     // bounded buffer: two chunks per blob in flight
  // How blob bytes are uploaded: streamed in the PUT ?digest= that commits them (one request;
  // the registry verifies the digest before committing), or PATCHed (in patch_bytes pieces,
  // 0 = one PATCH) and then committed by an empty PUT.
  bool stream_in_put = true;
  std::uint64_t patch_bytes = 0;
  bool digest_only = false;              // push the top manifest by digest, without the tag (S13)
  // Blobs placed (per destination registry and per repository) that a busy copier keeps in mind
  // to skip their HEAD; beyond this many, what is placed is forgotten at the end of a copy, as it
  // is whenever the copier falls idle (a backfill of a large registry is never idle).
  std::size_t remember_placed = 20000;
  RetryPolicy retry;                     // whole-blob retries after a failed stream
  // Called with a blob's size each time one is committed at a destination (not for skipped or
  // mounted blobs, nor for streams that failed): bytes written, each once, whatever runs beside.
  std::function<void(std::uint64_t)> on_blob_committed;
};

struct CopyStats {
  std::uint64_t blobs_copied = 0;
  std::uint64_t blobs_skipped = 0;  // already at the destination (HEAD) or copied earlier in this run
  std::uint64_t blobs_mounted = 0;
  std::uint64_t manifests_pushed = 0;
  std::uint64_t bytes_copied = 0;   // blob bytes streamed, counted as they pass
};

struct CopyResult {
  std::string digest;  // digest of the top manifest, identical at source and destination
  bool tagged = false;
};

enum class Side { Source, Destination };
// Connection settings (scheme, TLS, credentials) of a registry host on one side of a copy.
using ConfigResolver = std::function<RegistryConfig(const std::string& host, Side side)>;

struct CopyJob {
  Reference source;
  Reference destination;
};

class Copier {
 public:
  Copier(boost::asio::any_io_executor ex, ConfigResolver resolver, CopyOptions options = {});
  ~Copier();
  Copier(const Copier&) = delete;
  Copier& operator=(const Copier&) = delete;

  // Blobs first, then child manifests, then the top manifest (tag last). Nothing of the image
  // becomes visible unless every blob and manifest matched its digest. `manifest_written`, when
  // set, is called once, right after the first manifest of this copy is written at the
  // destination: from then on the destination repository exists, even if the copy fails later.
  // `lane` says whose bytes these are where a registry has a byte limit (S21): a push's go first.
  Task<Result<CopyResult>> copy(Reference source, Reference destination,
                                std::function<void()> manifest_written = {}, Lane lane = Lane::Push);
  // Copies concurrently (bounded by max_parallel_images); a blob shared by several images is
  // uploaded once and mounted into the other repositories of the same registry.
  Task<std::vector<Result<CopyResult>>> copy_all(std::vector<CopyJob> jobs);

  const CopyStats& stats() const;
  // The client for (host, side), made from the resolver on first use and kept: its connections
  // and tokens serve every later copy. Callers hold the pointer for as long as they use it.
  std::shared_ptr<RegistryClient> client(const std::string& host, Side side);
  // A new table of registries (a reload): clients whose settings are unchanged are kept, with
  // their pools and tokens; the others are dropped and made again on next use. Copies in flight
  // finish on the clients they started with. Blobs placed by earlier copies are forgotten (the
  // next copy asks the destination again), as a new Copier would; so they are whenever the
  // last copy (or copy_all run) under way ends.
  void set_resolver(ConfigResolver resolver);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// For callers without an event loop (the CLI): runs copy_all on a private io_context and
// calls progress every progress_interval while it runs (and once at the end).
std::vector<Result<CopyResult>> run_copies(std::vector<CopyJob> jobs, ConfigResolver resolver, CopyOptions options,
                                           const std::function<void(const CopyStats&)>& progress = {},
                                           std::chrono::milliseconds progress_interval = std::chrono::milliseconds(250));

// Every tag of `repository` at the registry `config` names (paginated); blocking, for the CLI.
Result<std::vector<std::string>> list_tags(const RegistryConfig& config, const std::string& repository);

}  // namespace ferry::registry
