// Cluster mode's record store: ImageReplication and Repository records as ferry.dev objects,
// engine bookkeeping as ConfigMaps in the operator's namespace.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "kube/api.hpp"
#include "store/record_store.hpp"

namespace ferry::store {

struct KubeStoreOptions {
  std::string state_namespace = "ferry-system";  // where the bookkeeping ConfigMaps live
  // Bookkeeping larger than this is split over several ConfigMaps (a ConfigMap holds at most
  // 1 MiB); see docs/operations.md.
  std::size_t state_chunk_bytes = 512 * 1024;
  // Scale-out (one store per shard): labels every ImageReplication this store creates carries,
  // the selector that lists only those, and a prefix on every state key, so that each shard's
  // records and bookkeeping are its own.
  std::map<std::string, std::string> record_labels;
  std::string record_selector;
  std::string state_prefix;
};

// Every call blocks on the API server (loopback-fast in a cluster, a few milliseconds); calls may
// come from several threads at once (the engine's write pool), never two for one object. Records
// are written spec first (create), then status (the status subresource); the resourceVersion of
// each record's last write is kept so an update needs one request, and a conflict re-reads once.
class KubeStore final : public RecordStore {
 public:
  KubeStore(kube::Api& api, KubeStoreOptions options = {});

  std::expected<void, std::string> save(const model::ImageReplication& record) override;
  std::expected<void, std::string> save(const model::Repository& record) override;
  std::expected<void, std::string> remove_image_replication(const std::string& name) override;
  std::vector<model::ImageReplication> image_replications(
      std::vector<std::string>* problems = nullptr) const override;
  std::vector<model::Repository> repositories(std::vector<std::string>* problems = nullptr) const override;
  std::expected<void, std::string> save_state(const std::string& key, const boost::json::value& v) override;
  std::expected<std::optional<boost::json::value>, std::string> load_state(const std::string& key) const override;
  const KubeStoreOptions& options() const { return opts_; }

  // ConfigMap names of a state key: "ferry-state-<key>", then "-1", "-2"... for further chunks.
  static std::string state_object_name(const std::string& key, std::size_t chunk);

 private:
  std::expected<void, kube::ApiError> write_status(const kube::ResourceType& t, const std::string& name,
                                                   boost::json::value object);
  std::expected<void, std::string> status_of_repository(const kube::ResourceType& t, const std::string& name,
                                                        boost::json::object obj);

  kube::Api& api_;
  KubeStoreOptions opts_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, std::string> versions_;  // "plural/name" → last resourceVersion
  std::atomic<std::uint64_t> state_generation_{0};  // calls come from several threads
};

}  // namespace ferry::store
