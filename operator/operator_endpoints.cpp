// The HTTP endpoints of `ferry operator`: health probes, metrics, registry notifications and the
// validating webhook.
#include "operator/operator_endpoints.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <filesystem>

#include "operator/notification_route.hpp"
#include "operator/process_metrics.hpp"
#include "reconcilers/admission.hpp"

namespace ferry::operator_ {

namespace {

// ":8080" → "0.0.0.0:8080"; "0" → disabled (nullopt).
std::optional<std::string> listen_address(const std::string& flag) {
  if (flag.empty() || flag == "0") return std::nullopt;
  if (flag.starts_with(':')) return "0.0.0.0" + flag;
  return flag;
}

}  // namespace

OperatorEndpoints start_endpoints(const EndpointOptions& in, boost::asio::io_context& io,
                                  boost::asio::io_context& engine_io, Manager& manager,
                                  Engines engines, const std::atomic<bool>& standby,
                                  const std::atomic<bool>& engine_running) {
  OperatorEndpoints out;
  if (auto addr = listen_address(in.health)) {
    out.on_io.push_back(
        std::make_unique<HttpServer>(io, *addr, [standby = &standby, manager = &manager](const HttpRequest& r) {
          if (r.path == "/healthz")
            return HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
          if (r.path == "/readyz") {
            // A standby replica is ready (it serves the webhook); a leader once its caches are
            // synced.
            if (standby->load() || manager->synced())
              return HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
            return HttpResponse{503, "text/plain; charset=utf-8", "informers not synced\n"};
          }
          return HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
        }));
    spdlog::info("msg=\"serving health probes\" address={}:{}", addr->substr(0, addr->rfind(':')),
                 out.on_io.back()->port());
  }
  if (auto addr = listen_address(in.metrics)) {
    out.on_io.push_back(
        std::make_unique<HttpServer>(io, *addr, [manager = &manager, engines](const HttpRequest& r) {
          if (r.path == "/metrics") {
            return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                                manager->metrics_text() +
                                    (engines.sharded ? engines.sharded->metrics_text()
                                                     : engines.single->metrics_text()) +
                                    process_metrics_text()};
          }
          return HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
        }));
    spdlog::info("msg=\"serving metrics\" address={}:{}", addr->substr(0, addr->rfind(':')),
                 out.on_io.back()->port());
  }
  if (auto addr = listen_address(in.events)) {
    // The handler awaits the record write (on the store pool), so the engine's thread keeps
    // copying meanwhile.
    out.events = std::make_unique<HttpServer>(
        engine_io, *addr,
        HttpServer::AsyncHandler(
            [running = &engine_running, engine = engines.single, sharded = engines.sharded](
                const HttpRequest& r) -> boost::asio::awaitable<HttpResponse> {
              if (sharded) {
                HttpRequest copy = r;  // named: GCC 12 and temporaries in co_await arguments
                co_return co_await sharded->serve(std::move(copy));
              }
              // Path and method were checked from the headers (below); leadership is checked
              // again, since it can be lost while the body is read.
              if (!*running) {
                co_return HttpResponse{503, "text/plain; charset=utf-8",
                                       "not the leader, or starting; retry later\n"};
              }
              co_return co_await serve_notification(*engine, r);
            }),
        std::size_t{1} << 20, std::nullopt,
        // Decided from the headers, before the body is read (SPEC §6): a request without the
        // token is refused whatever its size.
        [running = &engine_running, engine = engines.single,
         sharded = engines.sharded](const HttpRequest& r) -> std::optional<HttpResponse> {
          if (!is_notification(r))
            return HttpResponse{404, "text/plain; charset=utf-8", "not found: " + r.path + "\n"};
          if (sharded) return sharded->check(r);
          if (!*running && r.method == "POST") {
            return HttpResponse{503, "text/plain; charset=utf-8",
                                "not the leader, or starting; retry later\n"};
          }
          return check_notification(*engine, r);
        });
    spdlog::info("msg=\"serving registry notifications\" address={}:{} path=/registry-events/{{registryName}}",
                 addr->substr(0, addr->rfind(':')), out.events->port());
  }
  if (in.webhook_port != 0) {
    const std::filesystem::path dir(in.webhook_cert_dir);
    if (std::filesystem::exists(dir / "tls.crt") && std::filesystem::exists(dir / "tls.key")) {
      const std::string addr = (in.webhook_host.empty() ? "0.0.0.0" : in.webhook_host) + ":" +
                               std::to_string(in.webhook_port);
      out.on_io.push_back(std::make_unique<HttpServer>(
          io, addr, [manager = &manager](const HttpRequest& r) {
            if (r.path != "/validate")
              return HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
            if (r.method != "POST")
              return HttpResponse{405, "text/plain; charset=utf-8", "POST only\n"};
            auto answer = reconcilers::review_admission(r.body, manager->catalog());
            if (answer.http_status != 200) {
              spdlog::warn("msg=\"malformed admission review\" error=\"{}\"", answer.message);
            } else if (!answer.allowed) {
              spdlog::info("msg=\"admission denied\" reason=\"{}\"", answer.message);
            }
            return HttpResponse{answer.http_status, answer.content_type, answer.body};
          },
          3 << 20, TlsFiles{dir / "tls.crt", dir / "tls.key"}));
      spdlog::info("msg=\"serving the validating webhook\" address={} path=/validate", addr);
    } else {
      spdlog::warn("msg=\"webhook disabled: no tls.crt/tls.key\" dir={}", dir.string());
    }
  }
  return out;
}

void OperatorEndpoints::stop(boost::asio::io_context& io, boost::asio::io_context& engine_io) {
  for (auto& s : on_io) boost::asio::post(io, [server = s.get()] { server->stop(); });
  if (events) boost::asio::post(engine_io, [server = events.get()] { server->stop(); });
}

}  // namespace ferry::operator_
