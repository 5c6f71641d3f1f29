#include "operator/notification_route.hpp"

#include <spdlog/spdlog.h>

#include <string_view>

namespace ferry::operator_ {

namespace {

constexpr std::string_view kEvents = "/registry-events/";
constexpr const char* kText = "text/plain; charset=utf-8";

HttpResponse refused(const HttpRequest& r, unsigned status, const std::string& message) {
  spdlog::warn("msg=\"notification refused\" path={} status={} reason=\"{}\"", r.path, status, message);
  return HttpResponse{status, kText, message + "\n"};
}

}  // namespace

bool is_notification(const HttpRequest& request) { return request.path.starts_with(kEvents); }

std::string notification_registry(const HttpRequest& request) { return request.path.substr(kEvents.size()); }

std::optional<HttpResponse> check_notification(const HttpRequest& request, const Authenticate& authenticate) {
  if (!is_notification(request)) return std::nullopt;
  if (request.method != "POST") return HttpResponse{405, kText, "use POST\n"};
  auto out = authenticate(notification_registry(request), request.authorization);
  if (!out) return std::nullopt;
  return refused(request, out->status, out->message);
}

std::optional<HttpResponse> check_notification(const engine::ReplicationEngine& engine,
                                               const HttpRequest& request) {
  return check_notification(request, [&engine](const std::string& registry, const std::string& authorization) {
    return engine.authenticate_notification(registry, authorization);
  });
}

boost::asio::awaitable<HttpResponse> serve_notification(engine::ReplicationEngine& engine,
                                                        HttpRequest request) {
  // Named, moved in: GCC 12 destroys temporaries built in a co_await's arguments twice.
  std::string registry = notification_registry(request);
  std::string content_type = request.content_type, authorization = request.authorization;
  std::string body = std::move(request.body);
  auto out = co_await engine.on_notification(std::move(registry), std::move(content_type),
                                             std::move(authorization), std::move(body));
  if (out.status != 200) co_return refused(request, out.status, out.message);
  co_return HttpResponse{out.status, kText, out.message + "\n"};
}

}  // namespace ferry::operator_
