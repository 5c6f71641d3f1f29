// The HTTP endpoints of `ferry operator`. Health, metrics and the webhook are served on `io`; the
// registry-events endpoint on the engine's io_context, whose handler awaits the record write.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "engine/replication_engine.hpp"
#include "operator/controllers/manager.hpp"
#include "operator/http_server.hpp"
#include "operator/shard_engines.hpp"

namespace ferry::operator_ {

// Listen addresses: ":8080" is every interface, "0" (or empty) disables the endpoint.
struct EndpointOptions {
  std::string health;
  std::string metrics;
  std::string events;
  int webhook_port = 0;  // 0: no webhook
  std::string webhook_host;
  std::string webhook_cert_dir;  // tls.crt and tls.key; without them the webhook is off
};

struct OperatorEndpoints {
  std::vector<std::unique_ptr<HttpServer>> on_io;  // health, metrics, webhook
  std::unique_ptr<HttpServer> events;              // on the engine's io_context
  // Stops accepting, each server on its own io_context.
  void stop(boost::asio::io_context& io, boost::asio::io_context& engine_io);
};

// The engines behind the endpoints: the one engine, or (--shards) the engines of the held shards.
struct Engines {
  engine::ReplicationEngine* single = nullptr;
  ShardEngines* sharded = nullptr;
};

// /readyz is ready on a standby (it serves the webhook) and on a leader once its caches are
// synced; notifications get 503 until the engine runs (a sharded replica forwards those of
// shards it does not hold). Throws std::runtime_error when an address cannot be bound.
OperatorEndpoints start_endpoints(const EndpointOptions& options, boost::asio::io_context& io,
                                  boost::asio::io_context& engine_io, Manager& manager,
                                  Engines engines, const std::atomic<bool>& standby,
                                  const std::atomic<bool>& engine_running);

}  // namespace ferry::operator_
