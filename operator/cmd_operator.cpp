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
#include <csignal>
#include <condition_variable>
#include <future>
#include <mutex>
#include <cstdlib>
#include <expected>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>

#include "operator/commands.hpp"
#include "operator/controllers/manager.hpp"
#include "operator/operator_endpoints.hpp"
#include "operator/record_events.hpp"
#include "kube/api.hpp"
#include "kube/client.hpp"
#include "kube/config.hpp"
#include "operator/logging.hpp"
#include "operator/runtime/leader_election.hpp"
#include "operator/runtime/shard_leases.hpp"
#include "operator/shard_engines.hpp"
#include "reconcilers/model/clock.hpp"
#include "reconcilers/model/parse.hpp"
#include "engine/replication_engine.hpp"
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
  runtime::LeaderElectionTiming timing;
  std::uint32_t shards = 0;  // 0: one engine, on the leader
  std::uint32_t replicas = 1;
  std::string notifications_url;
  engine::EngineOptions engine_options;
};

std::string identity() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::mt19937_64 rng{std::random_device{}()};
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(host) + "_" + suffix;
}

// Where other replicas forward notifications of this replica's shards: --notifications-url, else
// http://$POD_IP:<port of --registry-events-bind-address>.
std::expected<std::string, std::string> notifications_url(const Flags& f) {
  if (!f.notifications_url.empty()) return f.notifications_url;
  const char* pod_ip = std::getenv("POD_IP");
  const auto colon = f.events_addr.rfind(':');
  if (!pod_ip || !*pod_ip || colon == std::string::npos)
    return std::unexpected(std::string("--shards needs --notifications-url, or POD_IP and a port in "
                                       "--registry-events-bind-address"));
  return "http://" + std::string(pod_ip) + ":" + f.events_addr.substr(colon + 1);
}

int run(Flags& f) {
  engine::EngineOptions& engine_options = f.engine_options;
  if (!(f.timing.retry_period < f.timing.renew_deadline && f.timing.renew_deadline < f.timing.lease_duration)) {
    spdlog::error("msg=\"the leader election times must grow: retry period < renew deadline < lease duration\"");
    return 1;
  }
  const bool sharding = f.shards > 0;
  std::string own_url;
  if (sharding) {
    auto url = notifications_url(f);
    if (!url) {
      spdlog::error("msg=\"{}\"", url.error());
      return 1;
    }
    own_url = *url;
  }
  // With shards, the controllers run on the replica holding the leader Lease, always.
  const bool elect = f.leader_elect || sharding;

  auto config = kube::load_default_config(f.kubeconfig, f.context);
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
  spdlog::info("msg=\"starting\" server={} context={} identity={} leader_elect={} shards={}", config->server,
               config->context, id, elect, f.shards);

  // Two event loops: `io` serves health, metrics and the webhook; `engine_io` runs the replication
  // engine and its notification endpoint. The engine's record writes go to `store_pool` (below).
  boost::asio::io_context io;
  boost::asio::io_context engine_io;

  // The replication engine, with its records in the API. It runs once this replica leads and the
  // informers have synced; until then notifications get 503 and the registry retries.
  const store::KubeStoreOptions store_options{f.state_namespace.empty() ? f.le_namespace : f.state_namespace};
  store::KubeStore records(api, store_options);
  // The engine's record writes, Events and backfill statuses run here: each is an API round trip
  // that must not stop the copies and the notification endpoint on the engine's thread.
  boost::asio::thread_pool store_pool(4);
  engine_options.store_executor = store_pool.get_executor();
  auto backfill_writes = boost::asio::make_strand(store_pool);  // one backfill's statuses in order
  engine_options.on_failed = [&api, &id, &store_pool](const model::ImageReplication& failed_record,
                                                      const model::ReplicationStatus& failed_status) {
    boost::asio::post(store_pool, [&api, &id, rec = failed_record, st = failed_status] {
      operator_::record_failed_event(api, id, rec, st);
    });
  };
  engine_options.on_backfill_status = [&backfill_writes, &api, &id](const model::ReplicationBackfill& b) {
    boost::asio::post(backfill_writes, [&api, &id, b] { operator_::write_backfill_status(api, id, b); });
  };
  // New effective times show in the ReplicationConfigs' status.
  engine_options.on_effective_change = [&manager_ptr] {
    if (manager_ptr) manager_ptr->requeue_replication_configs();
  };
  std::stop_source stop;
  std::atomic<int> exit_code{0};
  // Without shards, one engine (on the leader); with them, one per shard this replica holds.
  std::unique_ptr<engine::ReplicationEngine> engine;
  std::unique_ptr<runtime::ShardLeases> shard_leases;
  std::unique_ptr<operator_::ShardEngines> sharded;
  if (!sharding) {
    engine = std::make_unique<engine::ReplicationEngine>(engine_io, records, engine_options);
  } else {
    runtime::ShardLeaseConfig sc{f.le_namespace, "ferry-shard-", f.shards, f.replicas, id, f.timing, {}, own_url};
    shard_leases = std::make_unique<runtime::ShardLeases>(
        api, sc,
        [&engine_io, &sharded](std::uint32_t shard) {
          boost::asio::post(engine_io, [&sharded, shard] { sharded->acquire(shard); });
        },
        [&exit_code](std::uint32_t) {
          // Its work must stop before another replica may take the Lease: exit, and a restart
          // starts clean (as after lost leadership).
          exit_code = 1;
          kill(getpid(), SIGTERM);
        });
    sharded = std::make_unique<operator_::ShardEngines>(engine_io, api, store_options, engine_options,
                                                        *shard_leases);
  }
  auto set_engine_resources = [&](std::vector<model::Resource> resources) {
    if (sharded) {
      sharded->set_resources(std::move(resources));
    } else {
      engine->set_resources(std::move(resources));
    }
  };
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
  manager_options.effective_since = [&](const model::RegistryKey& source) {
    return sharded ? sharded->effective_since(source) : engine->effective_since(source);
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
        set_engine_resources(std::move(in.resources));
      });
    });
  };
  // `ferry retry` / kubectl annotate ferry.dev/retry=...: the engine retries on its thread (before
  // it runs, its start reads the annotations of the records it loads).
  manager_options.on_retry_requested = [&](const std::string& record, const std::string& at) {
    boost::asio::post(engine_io, [&, record, at] {
      if (!engine_running) return;
      if (sharded) {
        sharded->retry(record, at);
      } else {
        engine->retry(record, at);
      }
    });
  };
  // The engine starts on its thread once every informer has listed (the Manager runs them only
  // while this replica leads).
  manager_options.on_synced = [&] {
    boost::asio::post(engine_io, [&] {
      if (shutting_down) return;
      auto in = manager_ptr->engine_inputs();
      engine_signature = std::move(in.signature);
      log_inputs(in.resources);
      set_engine_resources(std::move(in.resources));
      if (engine) engine->start();  // sharded: each held shard's engine starts now
      engine_running = true;
      manager_ptr->requeue_replication_configs();  // with the engine's effective times now
    });
  };
  operator_::Manager manager(api, manager_options);
  manager_ptr = &manager;
  std::atomic<bool> standby{elect && !sharding};  // a sharded replica runs engines either way

  operator_::OperatorEndpoints endpoints;
  try {
    endpoints = operator_::start_endpoints({f.health_addr, f.metrics_addr, f.events_addr,
                                            f.webhook_port, f.webhook_host, f.webhook_cert_dir},
                                           io, engine_io, manager, {engine.get(), sharded.get()}, standby,
                                           engine_running);
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

  std::thread shard_thread;
  if (sharding) {
    // Every replica watches (its engines need the resources) and takes shards; only the leader
    // runs the controllers.
    manager.start_informers();
    shard_thread = std::thread([&] { shard_leases->run(stop.get_token()); });
  }
  std::thread runner([&] {
    runtime::LeaderElectionConfig le{f.le_namespace, f.le_id, id, f.timing, {}};
    if (elect) {
      if (!runtime::acquire_leadership(api, le, stop.get_token())) return;
      standby = false;
    }
    manager.set_leader(true);
    manager.start();  // the informers, if not yet, and the controllers
    // The engine starts on its own thread once every informer has listed (manager_options.
    // on_synced); meanwhile this thread goes on to renew the Lease.
    if (elect) {
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
  std::jthread give_up([grace = f.grace](std::stop_token done) {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    cv.wait_for(lock, done, grace, [] { return false; });  // until the grace ends or run() returns
    if (done.stop_requested()) return;
    spdlog::error("msg=\"in-flight work did not finish within the grace period; exiting\"");
    std::_Exit(1);
  });
  // The engine stops taking work first, while this replica still holds the Lease: copies in
  // flight get most of the grace period, so no other leader resumes them meanwhile. Whatever is
  // left stays IN_PROGRESS in its ImageReplication and resumes under the next leader. After a
  // lost Lease another replica may already lead: stop at once instead.
  {
    shutting_down = true;
    const bool lost_lease = exit_code != 0;
    const auto deadline = lost_lease ? std::chrono::steady_clock::now()
                                     : std::chrono::steady_clock::now() + f.grace * 4 / 5;
    std::promise<void> drained;
    boost::asio::co_spawn(
        engine_io,
        [&]() -> boost::asio::awaitable<void> {
          engine_running = false;
          if (sharded) {
            sharded->stop();
            if (!co_await sharded->drained(deadline) && sharded->running() > 0) {
              spdlog::warn("msg=\"copies left in flight; they resume under the shards' next holders\" running={}",
                           sharded->running());
            }
          } else {
            engine->stop();
            if (!co_await engine->drained(deadline) && engine->running() > 0) {
              spdlog::warn("msg=\"copies left in flight; they resume under the next leader\" running={}",
                           engine->running());
            }
          }
          drained.set_value();
        },
        boost::asio::detached);
    drained.get_future().wait();
  }
  stop.request_stop();  // the shard Leases are released now that their work has stopped
  manager.stop();
  runner.join();
  if (shard_thread.joinable()) shard_thread.join();
  endpoints.stop(io, engine_io);
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
  add_duration(*cmd, "--leader-election-lease-duration", f->timing.lease_duration,
               "how long a leader or shard Lease lasts unrenewed (default 15s)");
  add_duration(*cmd, "--leader-election-renew-deadline", f->timing.renew_deadline,
               "a holder that could not renew for this long gives its Lease up (default 10s)");
  add_duration(*cmd, "--leader-election-retry-period", f->timing.retry_period,
               "time between Lease reads and renewals (default 2s)");
  cmd->add_option("--shards", f->shards,
                  "scale-out: split repositories into N shards, each owned by the replica holding "
                  "Lease ferry-shard-<i> (0: one engine, on the leader)")
      ->type_name("N")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  cmd->add_option("--replicas", f->replicas, "replicas expected (with --shards): each takes about shards/replicas")
      ->type_name("N")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--notifications-url", f->notifications_url,
                  "with --shards: where other replicas forward notifications of this replica's shards "
                  "(default http://$POD_IP:<registry-events port>)")
      ->type_name("URL");
  add_duration(*cmd, "--graceful-shutdown-timeout", f->grace,
               "time in-flight work gets after SIGTERM, e.g. 30s (default 30s; a bare number is seconds)");
  cmd->callback([f, &action] { action = [f] { return run(*f); }; });
  return cmd;
}

}  // namespace ferry::cli
