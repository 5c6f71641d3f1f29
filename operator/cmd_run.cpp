// `ferry run --manifests DIR [--state-dir DIR] [--listen ADDR]`: the embedded default, no cluster.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <iostream>
#include <spdlog/spdlog.h>
#include <string_view>

#include "operator/commands.hpp"
#include "operator/http_server.hpp"
#include "operator/notification_route.hpp"
#include "operator/logging.hpp"
#include "operator/process_metrics.hpp"
#include "reconcilers/model/parse.hpp"
#include "engine/replication_engine.hpp"
#include "store/manifest_loader.hpp"
#include "store/state_dir.hpp"

namespace ferry::cli {
namespace fs = std::filesystem;
namespace asio = boost::asio;

namespace {

constexpr std::string_view kAbout =
    "Reads Ferry resources (and Secrets) from DIR, re-reads them when files change, keeps records\n"
    "in the state directory and serves /healthz, /readyz, /metrics and\n"
    "POST /registry-events/{registryName} on --listen. SIGTERM: copies in flight get 10 s, then exit 0.";

// Size and modification time of every manifest file: a change means "reload".
std::string directory_signature(const fs::path& dir) {
  std::vector<store::FileProblem> ignored;
  std::string sig;
  for (const auto& f : store::manifest_files({dir}, ignored)) {
    std::error_code ec;
    auto size = fs::file_size(f, ec);
    auto mtime = fs::last_write_time(f, ec).time_since_epoch().count();
    sig += f.string() + ":" + std::to_string(size) + ":" + std::to_string(mtime) + "\n";
  }
  return sig;
}

std::vector<model::Resource> load(const fs::path& dir) {
  auto set = store::load_manifests({dir});
  for (const auto& p : set.unreadable) spdlog::error("msg=\"manifest unreadable\" problem=\"{}\"", p.to_string());
  for (const auto& p : set.invalid) spdlog::error("msg=\"resource invalid, ignored\" problem=\"{}\"", p.to_string());
  std::vector<model::Resource> out;
  for (auto& r : set.resources) out.push_back(std::move(r.resource));
  spdlog::info("msg=\"manifests loaded\" dir={} valid={} invalid={} unreadable={}", dir.string(), out.size(),
               set.invalid.size(), set.unreadable.size());
  return out;
}

struct RunFlags {
  fs::path manifests, state_dir = "ferry-state";
  std::string listen = "127.0.0.1:8080";
  engine::EngineOptions options;
};

int run(const RunFlags& f) {
  const fs::path& manifests = f.manifests;
  const fs::path& state_dir = f.state_dir;
  const std::string& listen = f.listen;
  const engine::EngineOptions& options = f.options;
  if (manifests.empty()) {
    std::cerr << "ferry run: --manifests DIR is required\nRun 'ferry run --help' for usage.\n";
    return 2;
  }
  if (!fs::is_directory(manifests)) {
    std::cerr << "ferry run: --manifests " << manifests.string() << ": not a directory\n";
    return 2;
  }

  asio::io_context io;
  std::unique_ptr<store::StateDir> state;
  std::unique_ptr<operator_::HttpServer> server;
  try {
    state = std::make_unique<store::StateDir>(state_dir);
  } catch (const std::exception& e) {
    std::cerr << "ferry run: " << e.what() << "\n";
    return 2;
  }
  engine::ReplicationEngine engine(io, *state, options);
  engine.set_resources(load(manifests));
  bool ready = false;

  auto handler = [&](const operator_::HttpRequest& req) -> boost::asio::awaitable<operator_::HttpResponse> {
    if (req.path == "/healthz") co_return operator_::HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
    if (req.path == "/readyz") {
      co_return ready ? operator_::HttpResponse{200, "text/plain; charset=utf-8", "ok\n"}
                      : operator_::HttpResponse{503, "text/plain; charset=utf-8", "starting\n"};
    }
    if (req.path == "/metrics") {
      co_return operator_::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                                        engine.metrics_text() + operator_::process_metrics_text()};
    }
    // POST only: header_check answers other methods.
    if (operator_::is_notification(req)) co_return co_await operator_::serve_notification(engine, req);
    co_return operator_::HttpResponse{404, "text/plain; charset=utf-8", "not found: " + req.path + "\n"};
  };
  // Registry events are authenticated from the headers, before the body is read (SPEC §6).
  auto header_check = [&](const operator_::HttpRequest& req) {
    return operator_::check_notification(engine, req);
  };
  try {
    server = std::make_unique<operator_::HttpServer>(io, listen, operator_::HttpServer::AsyncHandler(handler), std::size_t{1} << 20, std::nullopt,
                                                     header_check);
  } catch (const std::exception& e) {
    std::cerr << "ferry run: " << e.what() << "\n";
    return 2;
  }
  spdlog::info("msg=\"listening\" address={} port={} state_dir={}", listen, server->port(), state_dir.string());
  std::cout << "ferry run: listening on port " << server->port() << std::endl;
  engine.start();
  ready = true;

  // Re-read the manifests when they change, and take `ferry retry` requests (both polled once a
  // second: works on every filesystem). A request goes once the record says it was handled.
  std::string signature = directory_signature(manifests);
  asio::steady_timer watch(io);
  std::function<void()> arm = [&] {
    watch.expires_after(std::chrono::seconds(1));
    watch.async_wait([&](boost::system::error_code ec) {
      if (ec) return;
      auto now = directory_signature(manifests);
      if (now != signature) {
        signature = now;
        engine.set_resources(load(manifests));
      }
      for (const auto& [name, at] : state->retry_requests()) {
        engine.retry(name, at);
        state->remove_retry_request(name);
      }
      arm();
    });
  };
  arm();

  // SIGTERM/SIGINT: stop taking work, give copies in flight a grace period, exit 0. Unfinished
  // records stay IN_PROGRESS in the state directory and resume at the next start.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::steady_timer grace(io);
  std::function<void()> drain;  // polls until copies in flight are done or the grace period ends
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("msg=\"shutting down\" signal={} running={}", sig, engine.running());
    ready = false;
    server->stop();
    watch.cancel();
    engine.stop();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    drain = [&, deadline] {
      if (engine.running() == 0 || std::chrono::steady_clock::now() >= deadline) {
        io.stop();
        return;
      }
      grace.expires_after(std::chrono::milliseconds(50));
      grace.async_wait([&](boost::system::error_code e) {
        if (!e) drain();
      });
    };
    drain();
    signals.async_wait([&](boost::system::error_code e2, int) {
      if (!e2) io.stop();  // a second signal: stop now
    });
  });
  io.run();
  spdlog::info("msg=\"stopped\"");
  return 0;
}

}  // namespace

CLI::App* add_run(CLI::App& app, Action& action) {
  auto f = std::make_shared<RunFlags>();
  auto* cmd = app.add_subcommand("run", "Replicate without a cluster: resources from a directory, records in a state directory");
  cmd->footer(std::string(kAbout));
  cmd->add_option("--manifests", f->manifests, "directory of Ferry resources (and Secrets); required")->type_name("DIR");
  cmd->add_option("--state-dir", f->state_dir, "where records and bookkeeping live")->type_name("DIR")->capture_default_str();
  cmd->add_option("--listen", f->listen, "address of the HTTP endpoints")->type_name("HOST:PORT")->capture_default_str();
  add_engine_flags(*cmd, f->options);
  cmd->callback([f, &action] { action = [f] { return run(*f); }; });
  return cmd;
}

}  // namespace ferry::cli
