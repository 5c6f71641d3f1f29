// `ferry operator`: cluster mode. Watches Ferry's resources through the Kubernetes API, keeps
// their status true, runs the replication engine with its records in the API (KubeStore), and
// serves health, metrics, registry notifications and the validating admission webhook.
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cctype>
#include <csignal>
#include <future>
#include <cstdlib>
#include <expected>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>

#include "operator/commands.hpp"
#include "operator/controllers/manager.hpp"
#include "operator/http_server.hpp"
#include "operator/notification_route.hpp"
#include "kube/api.hpp"
#include "kube/client.hpp"
#include "kube/config.hpp"
#include "operator/logging.hpp"
#include "operator/process_metrics.hpp"
#include "operator/runtime/leader_election.hpp"
#include "reconcilers/admission.hpp"
#include "reconcilers/model/clock.hpp"
#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/serialize.hpp"
#include "engine/replication_engine.hpp"
#include "reconcilers/status.hpp"
#include "store/kube_store.hpp"

namespace ferry::cli {

namespace {

constexpr std::string_view kAbout =
    "Runs the controllers against a Kubernetes API server: in a pod (in-cluster config) or with a\n"
    "kubeconfig (--kubeconfig, else $KUBECONFIG, else in-cluster, else ~/.kube/config).\n"
    "An address of 0 disables that endpoint.";

struct Flags {
  std::string kubeconfig;
  std::string context;
  std::string metrics_addr = ":8080";
  std::string health_addr = ":8081";
  bool leader_elect = false;
  std::string le_namespace = "ferry-system";
  std::string le_id = "ferry-leader";
  std::string events_addr = ":8082";
  std::string state_namespace;
  std::vector<std::string> secret_namespaces;
  int webhook_port = 9443;
  std::string webhook_host;
  std::string webhook_cert_dir = "/tmp/k8s-webhook-server/serving-certs";
  int workers = 2;
  std::chrono::milliseconds grace{std::chrono::seconds(30)};
  engine::EngineOptions engine_options;
};

// ":8080" → "0.0.0.0:8080"; "0" → disabled (nullopt).
std::optional<std::string> listen_address(const std::string& flag) {
  if (flag.empty() || flag == "0") return std::nullopt;
  if (flag.starts_with(':')) return "0.0.0.0" + flag;
  return flag;
}

std::string identity() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::mt19937_64 rng{std::random_device{}()};
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(host) + "_" + suffix;
}

int run(Flags& f) {
  engine::EngineOptions& engine_options = f.engine_options;

  // Configuration: --kubeconfig, $KUBECONFIG, in-cluster, ~/.kube/config (controller-runtime's
  // order).
  std::expected<kube::ClusterConfig, std::string> config = std::unexpected("no configuration");
  std::string kubeconfig = f.kubeconfig;
  if (kubeconfig.empty()) {
    if (const char* env = std::getenv("KUBECONFIG"); env && *env) kubeconfig = env;
  }
  if (!kubeconfig.empty()) {
    config = kube::load_kubeconfig(kubeconfig, f.context);
  } else {
    config = kube::load_in_cluster([](const char* k) -> std::optional<std::string> {
      const char* v = std::getenv(k);
      return v ? std::optional<std::string>(v) : std::nullopt;
    });
    if (!config) {
      const char* home = std::getenv("HOME");
      if (home && std::filesystem::exists(std::filesystem::path(home) / ".kube/config")) {
        config = kube::load_kubeconfig(std::filesystem::path(home) / ".kube/config", f.context);
      }
    }
  }
  if (!config) {
    spdlog::error("msg=\"no Kubernetes configuration\" error=\"{}\"", config.error());
    return 1;
  }

  // SIGTERM/SIGINT are taken by sigwait on the main thread; every thread started below inherits the
  // mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::unique_ptr<kube::Client> client;
  try {
    client = std::make_unique<kube::Client>(*config);
  } catch (const std::exception& e) {
    spdlog::error("msg=\"cannot set up the Kubernetes client\" error=\"{}\"", e.what());
    return 1;
  }
  kube::Api api(*client);
  operator_::Manager* manager_ptr = nullptr;  // set once the manager exists
  const std::string id = identity();
  spdlog::info("msg=\"starting\" server={} context={} identity={} leader_elect={}", config->server,
               config->context, id, f.leader_elect);

  // Two event loops: `io` serves health, metrics and the webhook; `engine_io` runs the replication
  // engine and its notification endpoint. The engine's record writes go to `store_pool` (below).
  boost::asio::io_context io;
  boost::asio::io_context engine_io;

  // The replication engine, with its records in the API. It runs once this replica leads and the
  // informers have synced; until then notifications get 503 and the registry retries.
  store::KubeStore records(api, {f.state_namespace.empty() ? f.le_namespace : f.state_namespace});
  // The engine's record writes, Events and backfill statuses run here: each is an API round trip
  // that must not stop the copies and the notification endpoint on the engine's thread.
  boost::asio::thread_pool store_pool(4);
  engine_options.store_executor = store_pool.get_executor();
  auto backfill_writes = boost::asio::make_strand(store_pool);  // one backfill's statuses in order
  engine_options.on_failed = [&api, &id, &store_pool](const model::ImageReplication& failed_record,
                                                      const model::ReplicationStatus& failed_status) {
    boost::asio::post(store_pool, [&api, &id, rec = failed_record, st = failed_status] {
    kube::EventSpec spec{"Warning", "ReplicationFailed", "Replicate",
                         "destination " + st.registry_id + "/" + st.region + ": " + st.failure_code +
                             ": " + st.message};
    auto ev = kube::make_event(model::to_json(rec), spec, id,
                               model::format_micro_time(std::chrono::system_clock::now()));
    if (auto r = api.create(kube::events(), kube::namespace_of(ev), ev); !r) {
      spdlog::warn("msg=\"event not recorded\" record={} error=\"{}\"", rec.metadata.name, r.error().to_string());
    }
    });
  };
  // A backfill's progress shows in its status (S17); each change of phase is an Event.
  auto write_backfill_status = [&api, &id](const model::ReplicationBackfill& b) {
    const std::string now = model::format_rfc3339(std::chrono::system_clock::now(), true);
    std::string old_phase;
    boost::json::value written;
    auto res = api.update_status(kube::replication_backfills(), "", b.metadata.name,
                                 [&](const boost::json::value& current) -> std::optional<boost::json::value> {
                                   if (kube::uid_of(current) != b.metadata.uid) return std::nullopt;
                                   const auto stored = reconcilers::stored_status(current);
                                   const auto* phase = stored.if_contains("phase");
                                   old_phase = phase && phase->is_string() ? std::string(phase->as_string()) : "";
                                   auto next = reconcilers::backfill_status(current, b.status, now);
                                   if (next == stored) return std::nullopt;
                                   written = current;
                                   return boost::json::value(std::move(next));
                                 });
    if (!res) {
      if (!res.error().not_found()) {
        spdlog::warn("msg=\"backfill status not written\" backfill={} error=\"{}\"", b.metadata.name,
                     res.error().to_string());
      }
      return;
    }
    if (!*res || old_phase == b.status.phase) return;
    std::string reason = "Backfill";
    bool upper = true;
    for (char c : b.status.phase) {  // IN_PROGRESS → BackfillInProgress
      if (c == '_') {
        upper = true;
        continue;
      }
      reason += upper ? c : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      upper = false;
    }
    const auto& n = b.status.images;
    kube::EventSpec spec{b.status.phase == model::kBackfillFailed ? "Warning" : "Normal", reason, "Backfill",
                         b.status.phase + ": " + std::to_string(n.replicated) + " replicated, " +
                             std::to_string(n.skipped) + " skipped, " + std::to_string(n.failed) + " failed of " +
                             std::to_string(n.total) + (b.status.message.empty() ? "" : "; " + b.status.message)};
    auto ev = kube::make_event(written, spec, id, model::format_micro_time(std::chrono::system_clock::now()));
    if (auto r = api.create(kube::events(), kube::namespace_of(ev), ev); !r) {
      spdlog::warn("msg=\"event not recorded\" backfill={} error=\"{}\"", b.metadata.name, r.error().to_string());
    }
  };
  engine_options.on_backfill_status = [&backfill_writes, write_backfill_status](const model::ReplicationBackfill& b) {
    boost::asio::post(backfill_writes, [write_backfill_status, b] { write_backfill_status(b); });
  };
  // New effective times show in the ReplicationConfigs' status.
  engine_options.on_effective_change = [&manager_ptr] {
    if (manager_ptr) manager_ptr->requeue_replication_configs();
  };
  engine::ReplicationEngine engine(engine_io, records, engine_options);
  std::atomic<bool> engine_running{false};
  std::atomic<bool> shutting_down{false};
  std::string engine_signature;  // engine thread only
  boost::asio::steady_timer reload_timer(engine_io);
  std::atomic<bool> reload_armed{false};

  auto log_inputs = [](const std::vector<model::Resource>& resources) {
    std::map<std::string, int> n;
    for (const auto& r : resources) ++n[std::string(model::kind_of(r))];
    spdlog::info("msg=\"engine resources\" registries={} configs={} policies={} repositories={} secrets={} "
                 "templates={} backfills={}",
                 n["Registry"], n["ReplicationConfig"], n["RegistryPolicy"], n["Repository"], n["Secret"],
                 n["RepositoryCreationTemplate"], n["ReplicationBackfill"]);
  };
  operator_::ManagerOptions manager_options{f.workers, id};
  manager_options.secret_namespaces = f.secret_namespaces;
  manager_options.effective_since = [&engine](const model::RegistryKey& source) {
    return engine.effective_since(source);
  };
  // Informer changes reach the engine coalesced (a burst of events, one reload), and only when
  // something the engine reads changed.
  manager_options.on_change = [&] {
    if (reload_armed.exchange(true)) return;
    boost::asio::post(engine_io, [&] {
      reload_timer.expires_after(std::chrono::milliseconds(200));
      reload_timer.async_wait([&](boost::system::error_code ec) {
        reload_armed = false;
        if (ec || !engine_running) return;
        auto in = manager_ptr->engine_inputs();
        if (in.signature == engine_signature) return;
        engine_signature = std::move(in.signature);
        log_inputs(in.resources);
        engine.set_resources(std::move(in.resources));
      });
    });
  };
  // `ferry retry` / kubectl annotate ferry.dev/retry=...: the engine retries on its thread (before
  // it runs, its start reads the annotations of the records it loads).
  manager_options.on_retry_requested = [&](const std::string& record, const std::string& at) {
    boost::asio::post(engine_io, [&engine, &engine_running, record, at] {
      if (engine_running) engine.retry(record, at);
    });
  };
  operator_::Manager manager(api, manager_options);
  manager_ptr = &manager;
  std::atomic<bool> standby{f.leader_elect};

  std::vector<std::unique_ptr<operator_::HttpServer>> servers;
  std::unique_ptr<operator_::HttpServer> webhook;
  std::unique_ptr<operator_::HttpServer> events_server;
  try {
    if (auto addr = listen_address(f.health_addr)) {
      servers.push_back(
          std::make_unique<operator_::HttpServer>(io, *addr, [&](const operator_::HttpRequest& r) {
            if (r.path == "/healthz")
              return operator_::HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
            if (r.path == "/readyz") {
              // A standby replica is ready (it serves the webhook); a leader once its caches are
              // synced.
              if (standby || manager.synced())
                return operator_::HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
              return operator_::HttpResponse{503, "text/plain; charset=utf-8",
                                             "informers not synced\n"};
            }
            return operator_::HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
          }));
      spdlog::info("msg=\"serving health probes\" address={}:{}", addr->substr(0, addr->rfind(':')),
                   servers.back()->port());
    }
    if (auto addr = listen_address(f.metrics_addr)) {
      servers.push_back(
          std::make_unique<operator_::HttpServer>(io, *addr, [&](const operator_::HttpRequest& r) {
            if (r.path == "/metrics") {
              return operator_::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                                             manager.metrics_text() + engine.metrics_text() +
                                                 operator_::process_metrics_text()};
            }
            return operator_::HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
          }));
      spdlog::info("msg=\"serving metrics\" address={}:{}", addr->substr(0, addr->rfind(':')),
                   servers.back()->port());
    }
    if (auto addr = listen_address(f.events_addr)) {
      // The handler awaits the record write (on the store pool), so the engine's thread keeps
      // copying meanwhile.
      events_server = std::make_unique<operator_::HttpServer>(
          engine_io, *addr,
          operator_::HttpServer::AsyncHandler(
              [&](const operator_::HttpRequest& r) -> boost::asio::awaitable<operator_::HttpResponse> {
                // Path and method were checked from the headers (below); leadership is checked
                // again, since it can be lost while the body is read.
                if (!engine_running) {
                  co_return operator_::HttpResponse{503, "text/plain; charset=utf-8",
                                                    "not the leader, or starting; retry later\n"};
                }
                co_return co_await operator_::serve_notification(engine, r);
              }),
          std::size_t{1} << 20, std::nullopt,
          // Decided from the headers, before the body is read (SPEC §6): a request without the
          // token is refused whatever its size.
          [&](const operator_::HttpRequest& r) -> std::optional<operator_::HttpResponse> {
            if (!operator_::is_notification(r))
              return operator_::HttpResponse{404, "text/plain; charset=utf-8", "not found: " + r.path + "\n"};
            if (!engine_running && r.method == "POST") {
              return operator_::HttpResponse{503, "text/plain; charset=utf-8",
                                             "not the leader, or starting; retry later\n"};
            }
            return operator_::check_notification(engine, r);
          });
      spdlog::info("msg=\"serving registry notifications\" address={}:{} path=/registry-events/{{registryName}}",
                   addr->substr(0, addr->rfind(':')), events_server->port());
    }
    if (f.webhook_port != 0) {
      const std::filesystem::path dir(f.webhook_cert_dir);
      if (std::filesystem::exists(dir / "tls.crt") && std::filesystem::exists(dir / "tls.key")) {
        const std::string addr = (f.webhook_host.empty() ? "0.0.0.0" : f.webhook_host) + ":" +
                                 std::to_string(f.webhook_port);
        webhook = std::make_unique<operator_::HttpServer>(
            io, addr, [&](const operator_::HttpRequest& r) {
              if (r.path != "/validate")
                return operator_::HttpResponse{404, "text/plain; charset=utf-8", "not found\n"};
              if (r.method != "POST")
                return operator_::HttpResponse{405, "text/plain; charset=utf-8", "POST only\n"};
              auto answer = reconcilers::review_admission(r.body, manager.catalog());
              if (answer.http_status != 200) {
                spdlog::warn("msg=\"malformed admission review\" error=\"{}\"", answer.message);
              } else if (!answer.allowed) {
                spdlog::info("msg=\"admission denied\" reason=\"{}\"", answer.message);
              }
              return operator_::HttpResponse{answer.http_status, answer.content_type, answer.body};
            },
            3 << 20, operator_::TlsFiles{dir / "tls.crt", dir / "tls.key"});
        spdlog::info("msg=\"serving the validating webhook\" address={} path=/validate", addr);
      } else {
        spdlog::warn("msg=\"webhook disabled: no tls.crt/tls.key\" dir={}", dir.string());
      }
    }
  } catch (const std::exception& e) {
    spdlog::error("msg=\"cannot start the HTTP endpoints\" error=\"{}\"", e.what());
    return 1;
  }
  std::thread io_thread([&io] {
    auto guard = boost::asio::make_work_guard(io);
    io.run();
  });
  std::thread engine_thread([&engine_io] {
    auto guard = boost::asio::make_work_guard(engine_io);
    engine_io.run();
  });

  std::stop_source stop;
  std::atomic<int> exit_code{0};
  std::thread runner([&] {
    runtime::LeaderElectionConfig le{f.le_namespace, f.le_id, id, {}};
    if (f.leader_elect) {
      if (!runtime::acquire_leadership(api, le, stop.get_token())) return;
      standby = false;
    }
    manager.set_leader(true);
    manager.start();
    // The engine starts on its own thread once every informer has listed; meanwhile this thread
    // goes on to renew the Lease.
    boost::asio::co_spawn(
        engine_io,
        [&]() -> boost::asio::awaitable<void> {
          boost::asio::steady_timer t(engine_io);
          while (!manager.synced() && !shutting_down) {
            t.expires_after(std::chrono::milliseconds(50));
            co_await t.async_wait(boost::asio::use_awaitable);
          }
          if (shutting_down) co_return;
          auto in = manager.engine_inputs();
          engine_signature = std::move(in.signature);
          log_inputs(in.resources);
          engine.set_resources(std::move(in.resources));
          engine.start();
          engine_running = true;
          manager.requeue_replication_configs();  // with the engine's effective times now
        },
        boost::asio::detached);
    if (f.leader_elect) {
      if (!runtime::hold_leadership(api, le, stop.get_token())) {
        exit_code =
            1;  // leadership lost: exit so that a restart starts clean, as controller-runtime does
        kill(getpid(), SIGTERM);
      }
    }
  });

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("msg=\"shutting down\" signal={} grace_seconds={}",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", std::chrono::duration<double>(f.grace).count());
  // Second phase: if in-flight work outlives the grace period, give up on it.
  std::thread([grace = f.grace] {
    std::this_thread::sleep_for(grace);
    spdlog::error("msg=\"in-flight work did not finish within the grace period; exiting\"");
    std::_Exit(1);
  }).detach();
  // The engine stops taking work first, while this replica still holds the Lease: copies in
  // flight get most of the grace period, so no other leader resumes them meanwhile. Whatever is
  // left stays IN_PROGRESS in its ImageReplication and resumes under the next leader. After a
  // lost Lease another replica may already lead: stop at once instead.
  {
    shutting_down = true;
    const bool lost_lease = exit_code != 0;
    const auto deadline = std::chrono::steady_clock::now() + f.grace * 4 / 5;
    std::promise<void> drained;
    boost::asio::co_spawn(
        engine_io,
        [&]() -> boost::asio::awaitable<void> {
          engine_running = false;
          engine.stop();
          boost::asio::steady_timer t(engine_io);
          while (!lost_lease && (engine.running() > 0 || engine.pending_writes() > 0) &&
                 std::chrono::steady_clock::now() < deadline) {
            t.expires_after(std::chrono::milliseconds(50));
            co_await t.async_wait(boost::asio::use_awaitable);
          }
          if (engine.running() > 0) {
            spdlog::warn("msg=\"copies left in flight; they resume under the next leader\" running={}",
                         engine.running());
          }
          drained.set_value();
        },
        boost::asio::detached);
    drained.get_future().wait();
  }
  stop.request_stop();
  manager.stop();
  runner.join();
  for (auto& s : servers) boost::asio::post(io, [&s] { s->stop(); });
  if (webhook) boost::asio::post(io, [&webhook] { webhook->stop(); });
  if (events_server) boost::asio::post(engine_io, [&events_server] { events_server->stop(); });
  io.stop();
  engine_io.stop();
  io_thread.join();
  engine_thread.join();
  spdlog::info("msg=\"stopped\"");
  return exit_code;
}

// "a,b" → {"a", "b"}; an empty namespace is a usage error.
std::vector<std::string> namespaces(const std::string& v) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= v.size()) {
    auto comma = v.find(',', at);
    std::string ns = v.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    if (ns.empty()) throw CLI::ValidationError("--secret-namespaces", "empty namespace in \"" + v + "\"");
    out.push_back(std::move(ns));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

}  // namespace

CLI::App* add_operator(CLI::App& app, Action& action) {
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("operator", "Run the controllers against a Kubernetes API server (in-cluster or --kubeconfig)");
  cmd->footer(std::string(kAbout));
  cmd->add_option("--kubeconfig", f->kubeconfig, "kubeconfig to use")->type_name("FILE");
  cmd->add_option("--context", f->context, "kubeconfig context (default: its current-context)")->type_name("NAME");
  cmd->add_option("--metrics-bind-address", f->metrics_addr, "/metrics")->type_name("ADDR")->capture_default_str();
  cmd->add_option("--health-probe-bind-address", f->health_addr, "/healthz and /readyz")
      ->type_name("ADDR")
      ->capture_default_str();
  cmd->add_flag("--leader-elect", f->leader_elect, "run the controllers only while holding the leader Lease");
  cmd->add_option("--leader-election-namespace", f->le_namespace, "namespace of the Lease")
      ->type_name("NS")
      ->capture_default_str();
  cmd->add_option("--leader-election-id", f->le_id, "name of the Lease")->type_name("NAME")->capture_default_str();
  cmd->add_option("--registry-events-bind-address", f->events_addr, "POST /registry-events/{registryName}")
      ->type_name("ADDR")
      ->capture_default_str();
  cmd->add_option_function<std::string>(
         "--secret-namespaces", [f](const std::string& v) { f->secret_namespaces = namespaces(v); },
         "watch Secrets only in these namespaces (default: all)")
      ->type_name("NS[,NS...]");
  cmd->add_option("--state-namespace", f->state_namespace,
                  "namespace of the engine's bookkeeping ConfigMaps (default: the leader election namespace)")
      ->type_name("NS");
  add_engine_flags(*cmd, f->engine_options);
  cmd->add_option("--webhook-port", f->webhook_port, "validating admission webhook, HTTPS (0 disables)")
      ->type_name("PORT")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--webhook-host", f->webhook_host, "address the webhook binds (default: all)")->type_name("HOST");
  cmd->add_option("--webhook-cert-dir", f->webhook_cert_dir, "tls.crt and tls.key")->type_name("DIR")->capture_default_str();
  cmd->add_option_function<int>(
         "--workers", [f](int n) { f->workers = std::max(1, n); }, "concurrent reconciles per controller (default 2)")
      ->type_name("N")
      ->check(CLI::NonNegativeNumber);
  add_duration(*cmd, "--graceful-shutdown-timeout", f->grace,
               "time in-flight work gets after SIGTERM, e.g. 30s (default 30s; a bare number is seconds)");
  cmd->callback([f, &action] { action = [f] { return run(*f); }; });
  return cmd;
}

}  // namespace ferry::cli
