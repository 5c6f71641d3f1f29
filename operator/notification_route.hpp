// POST /registry-events/{registryName}: the one notification route of `ferry run` and
// `ferry operator` (SPEC §6).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <optional>

#include "engine/replication_engine.hpp"
#include "operator/http_server.hpp"

namespace ferry::operator_ {

// Decided from the headers, before the body is read: another path (nullopt, not this route's),
// 405 for a method other than POST, 404/401/503 from the engine (unknown Registry, token).
// nullopt for a request of this route means: read the body, then call serve_notification.
std::optional<HttpResponse> check_notification(const engine::ReplicationEngine& engine,
                                               const HttpRequest& request);
bool is_notification(const HttpRequest& request);
// Records every push of the body before answering 200; a refusal is logged.
boost::asio::awaitable<HttpResponse> serve_notification(engine::ReplicationEngine& engine,
                                                        HttpRequest request);

}  // namespace ferry::operator_
