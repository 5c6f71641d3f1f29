// Controllers of cluster mode: level-triggered reconcilers fed by informers through work queues.
#include "operator/controllers/manager.hpp"

#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/json.hpp>
#include <mutex>
#include <set>
#include <thread>

#include "operator/controllers/context.hpp"
#include "operator/controllers/reconcilers.hpp"
#include "operator/controllers/status_writer.hpp"
#include "operator/runtime/controller.hpp"
#include "operator/runtime/informer.hpp"
#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/validate.hpp"

namespace ferry::operator_ {

namespace json = boost::json;
using runtime::Controller;
using runtime::Informer;

struct Manager::Impl {
  kube::Api& api;
  ManagerOptions opts;
  std::shared_ptr<prometheus::Registry> metrics = std::make_shared<prometheus::Registry>();
  prometheus::Gauge* leader_gauge = nullptr;

  Informer registries;
  Informer policies;
  Informer configs;
  std::vector<std::unique_ptr<Informer>> secrets;  // one cluster-wide, or one per namespace
  Informer repositories;
  Informer templates;
  Informer backfills;
  std::unique_ptr<Informer> records;  // ImageReplications, for retry requests (no cache)
  Controller registry_ctl{"registry"};
  Controller policy_ctl{"registrypolicy"};
  Controller config_ctl{"replicationconfig"};
  Controller template_ctl{"repositorycreationtemplate"};
  Controller backfill_ctl{"replicationbackfill"};
  std::array<Controller*, 5> controllers() {
    return {&registry_ctl, &policy_ctl, &config_ctl, &template_ctl, &backfill_ctl};
  }

  Context context{api,      opts,      registries, policies,
                  configs,  templates, backfills,  secrets,
                  [this] { enqueue_all_configs(); }};
  StatusWriter status{api, opts.instance};

  std::stop_source stop_source;
  std::mutex threads_mutex;
  std::vector<std::jthread> threads;
  std::atomic<bool> started{false};
  std::atomic<bool> controllers_started{false};
  std::atomic<bool> stopped{false};
  std::atomic<bool> synced_reported{false};

  Impl(kube::Api& a, ManagerOptions o)
      : api(a),
        opts(std::move(o)),
        registries(a, kube::registries(), "",
                   [this](auto& t, auto& obj) {
                     on_registry(t, obj);
                     changed();
                   }),
        policies(a, kube::registry_policies(), "",
                 [this](auto&, auto& obj) {
                   policy_ctl.queue->add(kube::name_of(obj));
                   enqueue_all_configs();
                   changed();
                 }),
        configs(a, kube::replication_configs(), "",
                [this](auto&, auto& obj) {
                  config_ctl.queue->add(kube::name_of(obj));
                  changed();
                }),
        repositories(a, kube::repositories(), "", [this](auto&, auto&) { changed(); }),
        templates(a, kube::repository_creation_templates(), "", [this](auto&, auto& obj) {
          template_ctl.queue->add(kube::name_of(obj));
          changed();
        }),
        backfills(a, kube::replication_backfills(), "", [this](auto&, auto& obj) {
          backfill_ctl.queue->add(kube::name_of(obj));
          changed();
        }) {
    if (opts.on_retry_requested) {
      records = std::make_unique<Informer>(
          a, kube::image_replications(), "",
          [this](const std::string& type, const json::value& obj) {
            if (type == "DELETED" || !obj.is_object()) return;
            auto text_at = [&](std::initializer_list<std::string_view> path) -> std::string {
              const json::value* v = &obj;
              for (auto k : path) {
                v = v->is_object() ? v->as_object().if_contains(k) : nullptr;
                if (!v) return "";
              }
              return v->is_string() ? std::string(v->as_string()) : "";
            };
            auto asked = text_at({"metadata", "annotations", model::kRetryAnnotation});
            if (!asked.empty() && asked != text_at({"status", "lastHandledRetryAt"}))
              opts.on_retry_requested(kube::name_of(obj), asked);
          },
          /*keep_objects=*/false);
    }
    auto on_secret_change = [this](auto&, auto&) {
      on_secret();
      changed();
    };
    if (opts.secret_namespaces.empty()) {
      secrets.push_back(std::make_unique<Informer>(a, kube::secrets(), "", on_secret_change));
    } else {
      for (const auto& ns : opts.secret_namespaces)
        secrets.push_back(std::make_unique<Informer>(a, kube::secrets(), ns, on_secret_change));
    }
    runtime::register_controller_metrics(
        *metrics, {&registry_ctl, &policy_ctl, &config_ctl, &template_ctl, &backfill_ctl});
    leader_gauge = &prometheus::BuildGauge()
                        .Name("ferry_leader")
                        .Help("1 when this replica runs the controllers")
                        .Register(*metrics)
                        .Add({});
    auto bind = [this](runtime::Outcome (*reconcile)(Context&, StatusWriter&, const std::string&)) {
      return [this, reconcile](const std::string& key) { return reconcile(context, status, key); };
    };
    registry_ctl.reconcile = bind(reconcile_registry);
    policy_ctl.reconcile = bind(reconcile_policy);
    config_ctl.reconcile = bind(reconcile_config);
    template_ctl.reconcile = bind(reconcile_template);
    backfill_ctl.reconcile = bind(reconcile_backfill);
  }

  void changed() {
    if (opts.on_change) opts.on_change();
  }
  void enqueue_all_configs() {
    for (const auto& c : configs.items()) config_ctl.queue->add(kube::name_of(c));
  }
  void on_registry(const std::string& type, const json::value& obj) {
    if (type == "DELETED") {
      // A deleted Registry's last probe must not speak for a registry that no longer exists.
      auto parsed = model::parse_resource(obj);
      if (parsed.resource) {
        if (const auto* reg = std::get_if<model::Registry>(&*parsed.resource)) {
          std::lock_guard lock(context.probes_mutex);
          context.probes.erase(reg->key());
        }
      }
    }
    registry_ctl.queue->add(kube::name_of(obj));
    enqueue_all_configs();
  }
  void on_secret() {
    for (const auto& r : registries.items()) registry_ctl.queue->add(kube::name_of(r));
  }

};

Manager::Manager(kube::Api& api, ManagerOptions options)
    : impl_(std::make_unique<Impl>(api, std::move(options))) {}

Manager::~Manager() { stop(); }

void Manager::start() {
  start_informers();
  start_controllers();
}

void Manager::start_informers() {
  if (impl_->started.exchange(true)) return;
  auto token = impl_->stop_source.get_token();
  std::vector<Informer*> informers{&impl_->registries, &impl_->policies, &impl_->configs, &impl_->repositories,
                                   &impl_->templates, &impl_->backfills};
  for (auto& s : impl_->secrets) informers.push_back(s.get());
  if (impl_->records) informers.push_back(impl_->records.get());
  for (Informer* inf : informers) {
    inf->on_synced([this] {
      if (synced() && !impl_->synced_reported.exchange(true) && impl_->opts.on_synced)
        impl_->opts.on_synced();
    });
  }
  std::lock_guard lock(impl_->threads_mutex);
  for (Informer* inf : informers) impl_->threads.emplace_back([inf, token] { inf->run(token); });
}

void Manager::start_controllers() {
  if (impl_->stopped || impl_->controllers_started.exchange(true)) return;
  std::lock_guard lock(impl_->threads_mutex);
  for (Controller* c : impl_->controllers()) {
    for (int i = 0; i < std::max(1, impl_->opts.workers); ++i) {
      impl_->threads.emplace_back([c] { c->work(); });
    }
  }
  spdlog::info("msg=\"controllers started\" workers_per_controller={}",
               std::max(1, impl_->opts.workers));
}

void Manager::stop() {
  if (!impl_->started || impl_->stopped.exchange(true)) return;
  impl_->stop_source.request_stop();
  for (Controller* c : impl_->controllers()) c->queue->shut_down();
  std::lock_guard lock(impl_->threads_mutex);
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  spdlog::info("msg=\"controllers stopped\"");
}

bool Manager::started() const { return impl_->started; }

bool Manager::synced() const {
  return impl_->registries.has_synced() && impl_->policies.has_synced() &&
         impl_->configs.has_synced() && impl_->repositories.has_synced() && impl_->templates.has_synced() &&
         impl_->backfills.has_synced() &&
         std::ranges::all_of(impl_->secrets, [](const auto& s) { return s->has_synced(); });
}

EngineInputs Manager::engine_inputs() const {
  EngineInputs in;
  auto stamp = [&](const json::value& obj, const std::string& version) {
    in.signature += kube::name_of(obj) + "@" + version + "\n";
  };
  auto valid = impl_->context.valid_catalog_resources(true);
  for (const auto& item : impl_->registries.items()) stamp(item, std::to_string(kube::generation_of(item)));
  for (const auto& item : impl_->policies.items()) stamp(item, std::to_string(kube::generation_of(item)));
  model::RegistryCatalog catalog(valid);
  in.signature += "configs\n";
  for (const auto& item : impl_->configs.items()) {
    auto c = check(item, catalog);
    if (!c.resource) continue;
    stamp(item, std::to_string(kube::generation_of(item)));
    valid.push_back(std::move(*c.resource));
  }
  in.signature += "repositories\n";
  for (const auto& item : impl_->repositories.items()) {
    auto c = check(item);
    if (!c.resource) continue;
    // A Repository replication created counts once its status says so; its settings are the
    // defaults either way.
    stamp(item, std::to_string(kube::generation_of(item)));
    valid.push_back(std::move(*c.resource));
  }
  in.signature += "backfills\n";
  for (const auto& item : impl_->backfills.items()) {
    auto c = check(item);
    if (!c.resource) continue;
    stamp(item, std::to_string(kube::generation_of(item)));
    valid.push_back(std::move(*c.resource));
  }
  in.signature += "templates\n";
  for (const auto& item : impl_->templates.items()) {
    auto c = check(item);
    if (!c.resource) continue;
    stamp(item, std::to_string(kube::generation_of(item)));
    valid.push_back(std::move(*c.resource));
  }
  // Only the Secrets Registries point at: credentials, CA bundles, notification tokens.
  std::set<std::string> wanted;
  for (const auto& r : valid) {
    if (const auto* reg = std::get_if<model::Registry>(&r)) {
      for (const auto& ref : {reg->spec.credentials_secret_ref, reg->spec.tls_ca_secret_ref,
                              reg->spec.notifications_token_secret_ref}) {
        if (ref) wanted.insert(ref->namespace_ + "/" + ref->name);
      }
    }
  }
  in.signature += "secrets\n";
  for (const auto& key : wanted) {
    const auto slash = key.find('/');
    auto obj = impl_->context.secret_object(key.substr(0, slash), key.substr(slash + 1));
    if (!obj) continue;
    auto p = model::parse_resource(*obj);
    if (!p.resource || !std::holds_alternative<model::Secret>(*p.resource)) continue;
    in.signature += key + "@" + kube::resource_version_of(*obj) + "\n";
    valid.push_back(std::move(*p.resource));
  }
  in.resources = std::move(valid);
  return in;
}

model::RegistryCatalog Manager::catalog() const {
  auto resources = impl_->context.valid_catalog_resources(false);
  return model::RegistryCatalog(resources);
}

void Manager::set_leader(bool leader) { impl_->leader_gauge->Set(leader ? 1 : 0); }

void Manager::requeue_replication_configs() { impl_->enqueue_all_configs(); }

std::string Manager::metrics_text() const {
  for (Controller* c : impl_->controllers()) c->report_queue();
  return prometheus::TextSerializer().Serialize(impl_->metrics->Collect());
}

}  // namespace ferry::operator_
