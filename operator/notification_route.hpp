// POST /registry-events/{registryName}: the one notification route of `ferry run` and
// `ferry operator` (SPEC §6).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <optional>
#include <string>

#include "engine/replication_engine.hpp"
#include "operator/http_server.hpp"

namespace ferry::operator_ {

// Decided from the headers, before the body is read: another path (nullopt, not this route's),
// 405 for a method other than POST, 404/401/503 from the engine (unknown Registry, token).
// nullopt for a request of this route means: read the body, then call serve_notification.
std::optional<HttpResponse> check_notification(const engine::ReplicationEngine& engine,
                                               const HttpRequest& request);
// The same with the refusal decided by `authenticate(registryName, authorization)` (the sharded
// route answers from the resources, without an engine).
using Authenticate = std::function<std::optional<engine::NotificationOutcome>(const std::string& registry,
                                                                              const std::string& authorization)>;
std::optional<HttpResponse> check_notification(const HttpRequest& request, const Authenticate& authenticate);
bool is_notification(const HttpRequest& request);
// The Registry a notification path names: "/registry-events/{registryName}" → registryName.
std::string notification_registry(const HttpRequest& request);
// Records every push of the body before answering 200; a refusal is logged.
boost::asio::awaitable<HttpResponse> serve_notification(engine::ReplicationEngine& engine,
                                                        HttpRequest request);

}  // namespace ferry::operator_
