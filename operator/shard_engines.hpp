// Scale-out (SPEC §8) in `ferry operator --shards N`: one replication engine per shard this
// replica holds, each with its own records (labelled with the shard), its own bookkeeping (state
// keys prefixed with the shard) and only its shard's repositories; and the notification route of
// a sharded replica, which hands each push to the engine of its shard here or forwards it to the
// replica that holds the shard.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/replication_engine.hpp"
#include "kube/api.hpp"
#include "operator/http_server.hpp"
#include "operator/runtime/shard_leases.hpp"
#include "store/kube_store.hpp"

namespace ferry::net {
class HttpClient;
}

namespace ferry::operator_ {

inline constexpr const char* kShardLabel = "ferry.dev/shard";    // "3"
inline constexpr const char* kShardsLabel = "ferry.dev/shards";  // "8": the count it was cut under

// The store options of shard `shard` of `shards`: its label on records, the selector that lists
// them, and the prefix of its state keys ("shard-3-of-8.").
store::KubeStoreOptions shard_store_options(store::KubeStoreOptions base, std::uint32_t shard,
                                            std::uint32_t shards);

// Every call on the engine's io_context thread unless it says otherwise.
class ShardEngines {
 public:
  ShardEngines(boost::asio::io_context& engine_io, kube::Api& api, store::KubeStoreOptions store,
               engine::EngineOptions engine, const runtime::ShardLeases& leases);
  ~ShardEngines();

  // The resources every engine works from; the first call lets held shards start.
  void set_resources(std::vector<model::Resource> resources);
  // Shard `shard` is this replica's now: its engine loads the shard's records and resumes the
  // unfinished ones (once resources are known).
  void acquire(std::uint32_t shard);
  // Stops every engine (no new work; copies in flight go on until drained or the process ends).
  void stop();
  boost::asio::awaitable<bool> drained(std::chrono::steady_clock::time_point deadline);
  std::size_t running() const;
  void retry(const std::string& record, const std::string& requested_at);

  // POST /registry-events/{registryName} on a sharded replica: each push goes to its shard's
  // engine, here or (once, never again) forwarded to the holder of the shard; 503 when a shard
  // has no holder now, so that the registry sends it again.
  std::optional<HttpResponse> check(const HttpRequest& request) const;
  boost::asio::awaitable<HttpResponse> serve(HttpRequest request);

  // Any thread.
  std::map<model::RegistryKey, std::string> effective_since(const model::RegistryKey& source) const;
  std::string metrics_text() const;  // every engine's metrics, each series labelled shard="i"

 private:
  struct Shard {
    std::unique_ptr<store::KubeStore> store;
    std::unique_ptr<engine::ReplicationEngine> engine;
  };
  void start(std::uint32_t shard);
  engine::ReplicationEngine* engine_of(std::uint32_t shard) const;
  boost::asio::awaitable<HttpResponse> forward(std::uint32_t shard, const HttpRequest& request);

  boost::asio::io_context& io_;
  kube::Api& api_;
  store::KubeStoreOptions store_options_;
  engine::EngineOptions engine_options_;
  const runtime::ShardLeases& leases_;
  std::uint32_t shards_;
  std::vector<model::Resource> resources_;
  bool have_resources_ = false;
  bool stopped_ = false;
  model::ResourceIndex index_;  // of resources_: Registries by name, tokens
  std::vector<std::uint32_t> pending_;  // acquired before resources were known
  mutable std::mutex mutex_;             // guards shards_by_id_ for the other threads
  std::map<std::uint32_t, Shard> shards_by_id_;
  std::unique_ptr<net::HttpClient> http_;
};

}  // namespace ferry::operator_
