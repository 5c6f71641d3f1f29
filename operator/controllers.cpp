// Controllers of cluster mode: level-triggered reconcilers fed by informers through work queues.
#include "operator/controllers.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "operator/registry_probe.hpp"
#include "operator/runtime/informer.hpp"
#include "operator/runtime/work_queue.hpp"
#include "reconcilers/model/clock.hpp"
#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/replication.hpp"
#include "reconcilers/model/secret_data.hpp"
#include "reconcilers/status.hpp"

namespace ferry::operator_ {

namespace json = boost::json;
using runtime::Informer;
using runtime::WorkQueue;

namespace {

std::string now_string() { return model::format_rfc3339(std::chrono::system_clock::now()); }

// What a reconcile asks for next: nothing (forget), a retry with backoff, or a check after a delay.
struct Outcome {
  bool error = false;
  std::chrono::seconds requeue_after{0};
  // False when the check after requeue_after is because the object is not ready yet (counted as
  // result="requeue_after"); a healthy object's periodic resync is a "success".
  bool settled = true;
};

struct Controller {
  std::string name;  // "registry", "registrypolicy", "replicationconfig"
  std::unique_ptr<WorkQueue> queue = std::make_unique<WorkQueue>();
  std::function<Outcome(const std::string&)> reconcile;
  prometheus::Counter* ok = nullptr;
  prometheus::Counter* errors = nullptr;
  prometheus::Counter* requeues = nullptr;
  prometheus::Counter* requeue_afters = nullptr;
  prometheus::Counter* error_total = nullptr;  // ferry_reconcile_errors_total
  prometheus::Histogram* work = nullptr;
  prometheus::Histogram* duration = nullptr;
  prometheus::Gauge* depth = nullptr;
  prometheus::Counter* adds = nullptr;
  prometheus::Counter* retries = nullptr;
  runtime::QueueCounters reported;
};

}  // namespace

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

  std::mutex probes_mutex;
  std::map<model::RegistryKey, reconcilers::ProbeResult> probes;

  std::stop_source stop_source;
  std::vector<std::jthread> threads;
  std::atomic<bool> started{false};
  std::atomic<bool> stopped{false};

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
    auto& total = prometheus::BuildCounter()
                      .Name("ferry_reconcile_total")
                      .Help("Reconciles per controller and result: success (a periodic resync "
                            "may follow), error (retried with backoff), requeue, requeue_after "
                            "(not ready yet: checked again sooner)")
                      .Register(*metrics);
    auto& errs = prometheus::BuildCounter()
                     .Name("ferry_reconcile_errors_total")
                     .Help("Reconciles that failed and were retried with backoff")
                     .Register(*metrics);
    auto& dur = prometheus::BuildHistogram()
                    .Name("ferry_reconcile_duration_seconds")
                    .Help("Time spent in one reconcile")
                    .Register(*metrics);
    auto& depth = prometheus::BuildGauge()
                      .Name("ferry_workqueue_depth")
                      .Help("Keys ready in the work queue")
                      .Register(*metrics);
    auto& adds = prometheus::BuildCounter()
                     .Name("ferry_workqueue_adds_total")
                     .Help("Keys added to the work queue")
                     .Register(*metrics);
    auto& waits = prometheus::BuildHistogram()
                      .Name("ferry_workqueue_queue_duration_seconds")
                      .Help("Time a key waited in the work queue before a worker took it")
                      .Register(*metrics);
    auto& work = prometheus::BuildHistogram()
                     .Name("ferry_workqueue_work_duration_seconds")
                     .Help("Time a worker spent on one key")
                     .Register(*metrics);
    auto& retries = prometheus::BuildCounter()
                        .Name("ferry_workqueue_retries_total")
                        .Help("Keys re-added after a failure (rate limited)")
                        .Register(*metrics);
    for (Controller* c : controllers()) {
      c->ok = &total.Add({{"controller", c->name}, {"result", "success"}});
      c->requeues = &total.Add({{"controller", c->name}, {"result", "requeue"}});
      c->requeue_afters = &total.Add({{"controller", c->name}, {"result", "requeue_after"}});
      c->errors = &total.Add({{"controller", c->name}, {"result", "error"}});
      c->error_total = &errs.Add({{"controller", c->name}});
      c->duration = &dur.Add({{"controller", c->name}},
                             prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1,
                                                                     0.25, 0.5, 1, 2.5, 5, 10});
      const prometheus::Histogram::BucketBoundaries queue_buckets{
          0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60};
      auto* wait = &waits.Add({{"name", c->name}}, queue_buckets);
      c->queue->on_dequeue([wait](runtime::Duration d) {
        wait->Observe(std::chrono::duration<double>(d).count());
      });
      c->work = &work.Add({{"name", c->name}}, queue_buckets);
      c->depth = &depth.Add({{"name", c->name}});
      c->adds = &adds.Add({{"name", c->name}});
      c->retries = &retries.Add({{"name", c->name}});
    }
    leader_gauge = &prometheus::BuildGauge()
                        .Name("ferry_leader")
                        .Help("1 when this replica runs the controllers")
                        .Register(*metrics)
                        .Add({});
    registry_ctl.reconcile = [this](const std::string& k) { return reconcile_registry(k); };
    policy_ctl.reconcile = [this](const std::string& k) { return reconcile_policy(k); };
    config_ctl.reconcile = [this](const std::string& k) { return reconcile_config(k); };
    template_ctl.reconcile = [this](const std::string& k) { return reconcile_template(k); };
    backfill_ctl.reconcile = [this](const std::string& k) { return reconcile_backfill(k); };
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
          std::lock_guard lock(probes_mutex);
          probes.erase(reg->key());
        }
      }
    }
    registry_ctl.queue->add(kube::name_of(obj));
    enqueue_all_configs();
  }
  void on_secret() {
    for (const auto& r : registries.items()) registry_ctl.queue->add(kube::name_of(r));
  }

  // ---- helpers -------------------------------------------------------------------------

  std::vector<model::Resource> valid_catalog_resources(bool with_policies) {
    std::vector<model::Resource> out;
    auto add_valid = [&](const std::vector<json::value>& items) {
      for (const auto& item : items) {
        auto p = model::parse_resource(item);
        if (p.errors.empty() && p.resource && model::validate(*p.resource).empty())
          out.push_back(std::move(*p.resource));
      }
    };
    add_valid(registries.items());
    if (with_policies) add_valid(policies.items());
    return out;
  }

  bool secret_namespace_watched(const std::string& ns) const {
    return opts.secret_namespaces.empty() ||
           std::ranges::find(opts.secret_namespaces, ns) != opts.secret_namespaces.end();
  }

  std::optional<json::value> secret_object(const std::string& ns, const std::string& name) const {
    for (const auto& inf : secrets) {
      if (auto obj = inf->get(ns + "/" + name)) return obj;
    }
    return std::nullopt;
  }

  // "not found", or why Ferry cannot see it.
  std::string secret_missing(const model::SecretRef& ref) const {
    if (secret_namespace_watched(ref.namespace_)) return " not found";
    std::string list;
    for (const auto& ns : opts.secret_namespaces) list += (list.empty() ? "" : ", ") + ns;
    return " is outside the namespaces whose Secrets Ferry reads (--secret-namespaces " + list + ")";
  }

  std::optional<model::Secret> secret(const model::SecretRef& ref) {
    auto obj = secret_object(ref.namespace_, ref.name);
    if (!obj) return std::nullopt;
    json::value v = *obj;
    auto p = model::parse_resource(v);
    if (!p.resource) return std::nullopt;
    if (auto* s = std::get_if<model::Secret>(&*p.resource)) return *s;
    return std::nullopt;
  }

  // Writes `compute(current)` as status when it differs from what is stored; retries on 409.
  Outcome write_status(const kube::ResourceType& t, const json::value& seen,
                       const std::string& name,
                       const std::function<json::object(const json::value&)>& compute) {
    const auto seen_generation = kube::generation_of(seen);
    const auto old_ready = ready_of(reconcilers::stored_status(seen));
    json::object written;
    auto res = api.update_status(t, "", name,
                                 [&](const json::value& current) -> std::optional<json::value> {
                                   if (kube::generation_of(current) != seen_generation)
                                     return std::nullopt;  // a newer spec is queued
                                   auto next = compute(current);
                                   if (next == reconcilers::stored_status(current))
                                     return std::nullopt;  // only when changed
                                   written = next;
                                   return json::value(std::move(next));
                                 });
    if (!res) {
      if (res.error().not_found()) return {};
      spdlog::warn("msg=\"status write failed\" resource={} name={} error=\"{}\"", t.plural, name,
                   res.error().to_string());
      return {true};
    }
    if (*res) {
      auto new_ready = ready_of(written);
      spdlog::info("msg=\"status updated\" resource={} name={} ready={} reason={}", t.plural, name,
                   new_ready.first, new_ready.second);
      if (new_ready != old_ready) emit_event(seen, new_ready.first, new_ready.second, written);
    }
    return {};
  }

  static std::pair<std::string, std::string> ready_of(const json::object& status) {
    if (const auto* conds = status.if_contains("conditions"); conds && conds->is_array()) {
      for (const auto& c : conds->as_array()) {
        if (c.is_object() && c.as_object().contains("type") && c.at("type").is_string() &&
            c.at("type").as_string() == "Ready") {
          auto str = [&](const char* k) {
            const auto* v = c.as_object().if_contains(k);
            return v && v->is_string() ? std::string(v->as_string()) : std::string();
          };
          return {str("status"), str("reason")};
        }
      }
    }
    return {"", ""};
  }

  void emit_event(const json::value& regarding, const std::string& ready, const std::string& reason,
                  const json::object& status) {
    std::string note;
    if (const auto* conds = status.if_contains("conditions"); conds && conds->is_array()) {
      for (const auto& c : conds->as_array()) {
        const auto* o = c.if_object();
        if (!o) continue;
        const auto* type = o->if_contains("type");
        const auto* message = o->if_contains("message");
        if (type && type->is_string() && type->as_string() == "Ready" && message &&
            message->is_string()) {
          note = std::string(message->as_string());
        }
      }
    }
    kube::EventSpec spec{ready == "True" ? "Normal" : "Warning",
                         reason.empty() ? "Unknown" : reason, "Reconcile", note};
    auto ev = kube::make_event(regarding, spec, opts.instance,
                               model::format_micro_time(std::chrono::system_clock::now()));
    auto ns = kube::namespace_of(ev);
    if (auto r = api.create(kube::events(), ns, ev); !r) {
      spdlog::debug("msg=\"event not recorded\" error=\"{}\"", r.error().to_string());
    }
  }

  // Invalid object: Stalled with the validation message (what `ferry validate` prints).
  Outcome write_invalid(const kube::ResourceType& t, const json::value& obj,
                        const std::string& kind, const std::string& name,
                        const model::FieldErrors& errors) {
    spdlog::info("msg=\"invalid resource\" resource={} name={} error=\"{}\"", t.plural, name,
                 reconcilers::validation_message(kind, name, errors));
    const auto now = now_string();
    return write_status(t, obj, name, [&](const json::value& current) {
      return reconcilers::invalid_object_status(current, kind, name, errors, now);
    });
  }

  // ---- reconcilers ---------------------------------------------------------------------

  reconcilers::ProbeResult probe(const model::Registry& reg) {
    ProbeInput in;
    in.endpoint = reg.spec.endpoint;
    in.insecure_skip_verify = reg.spec.tls_insecure_skip_verify;
    if (reg.spec.tls_ca_secret_ref) {
      auto s = secret(*reg.spec.tls_ca_secret_ref);
      if (!s) {
        return {false, std::nullopt,
                "CA Secret " + reg.spec.tls_ca_secret_ref->namespace_ + "/" +
                    reg.spec.tls_ca_secret_ref->name + secret_missing(*reg.spec.tls_ca_secret_ref)};
      }
      if (auto ca = model::ca_bundle_from_secret(*s)) in.ca_pem = std::move(*ca);
    }
    if (reg.spec.type == model::RegistryType::Ecr) {
      // ECR: the data plane takes GetAuthorizationToken's credentials, which the Secret's AWS
      // keys (or the default chain) obtain; failing to obtain them is the credentials' failure.
      std::optional<model::Secret> s;
      if (reg.spec.credentials_secret_ref) {
        s = secret(*reg.spec.credentials_secret_ref);
        if (!s) {
          return {false, std::nullopt,
                  "credentials Secret " + reg.spec.credentials_secret_ref->namespace_ + "/" +
                      reg.spec.credentials_secret_ref->name + secret_missing(*reg.spec.credentials_secret_ref)};
        }
      }
      registry::TlsOptions tls;
      tls.verify = !in.insecure_skip_verify;
      if (!in.ca_pem.empty()) tls.ca_pems.push_back(in.ca_pem);
      auto token = ecr_credentials(reg, s ? &*s : nullptr, in.timeout, std::move(tls));
      if (!token) return {true, false, "ECR GetAuthorizationToken for " + model::to_string(reg.key()) + ": " + token.error()};
      in.credentials = std::move(*token);
      return probe_registry(in);
    }
    if (reg.spec.credentials_secret_ref) {
      auto s = secret(*reg.spec.credentials_secret_ref);
      if (!s) {
        return {false, std::nullopt,
                "credentials Secret " + reg.spec.credentials_secret_ref->namespace_ + "/" +
                    reg.spec.credentials_secret_ref->name + secret_missing(*reg.spec.credentials_secret_ref)};
      }
      std::string host;
      if (auto u = boost::urls::parse_absolute_uri(reg.spec.endpoint))
        host = u->encoded_host_and_port();
      in.credentials = model::credentials_from_secret(*s, host);
      if (!in.credentials) {
        return {false, std::nullopt,
                "credentials Secret " + reg.spec.credentials_secret_ref->namespace_ + "/" +
                    reg.spec.credentials_secret_ref->name + " holds no credentials for " + host};
      }
    }
    return probe_registry(in);
  }

  Outcome reconcile_registry(const std::string& name) {
    auto obj = registries.get(name);
    if (!obj) {
      return {};
    }
    auto parsed = model::parse_resource(*obj);
    auto errors = parsed.errors;
    if (errors.empty() && parsed.resource) errors = model::validate(*parsed.resource);
    if (!errors.empty()) return write_invalid(kube::registries(), *obj, "Registry", name, errors);
    const auto& reg = std::get<model::Registry>(*parsed.resource);
    auto result = probe(reg);
    {
      std::lock_guard lock(probes_mutex);
      auto it = probes.find(reg.key());
      const bool changed = it == probes.end() || it->second.reachable != result.reachable ||
                           it->second.credentials_accepted != result.credentials_accepted;
      probes[reg.key()] = result;
      if (changed) enqueue_all_configs();
    }
    const auto now = now_string();
    auto out = write_status(kube::registries(), *obj, name, [&](const json::value& current) {
      return reconcilers::registry_status(current, reg, result, now);
    });
    if (out.error) return out;
    const bool ready = result.reachable && result.credentials_accepted.value_or(true);
    out.requeue_after = ready ? opts.resync : opts.retry_unready;
    out.settled = ready;
    return out;
  }

  Outcome reconcile_policy(const std::string& name) {
    auto obj = policies.get(name);
    if (!obj) return {};
    auto parsed = model::parse_resource(*obj);
    auto errors = parsed.errors;
    if (errors.empty() && parsed.resource) errors = model::validate(*parsed.resource);
    if (!errors.empty())
      return write_invalid(kube::registry_policies(), *obj, "RegistryPolicy", name, errors);
    const auto& policy = std::get<model::RegistryPolicy>(*parsed.resource);
    const auto now = now_string();
    auto out = write_status(kube::registry_policies(), *obj, name, [&](const json::value& current) {
      return reconcilers::policy_status(current, policy, now);
    });
    if (!out.error) out.requeue_after = opts.resync;
    return out;
  }

  Outcome reconcile_template(const std::string& name) {
    auto obj = templates.get(name);
    if (!obj) return {};
    auto parsed = model::parse_resource(*obj);
    auto errors = parsed.errors;
    if (errors.empty() && parsed.resource) errors = model::validate(*parsed.resource);
    if (!errors.empty()) {
      return write_invalid(kube::repository_creation_templates(), *obj, "RepositoryCreationTemplate", name, errors);
    }
    const auto& shape = std::get<model::RepositoryCreationTemplate>(*parsed.resource);
    const auto now = now_string();
    auto out = write_status(kube::repository_creation_templates(), *obj, name, [&](const json::value& current) {
      return reconcilers::template_status(current, shape, now);
    });
    if (!out.error) out.requeue_after = opts.resync;
    return out;
  }

  // A valid ReplicationBackfill's status is the engine's (it writes its progress); only an
  // invalid one is answered here.
  Outcome reconcile_backfill(const std::string& name) {
    auto obj = backfills.get(name);
    if (!obj) return {};
    auto parsed = model::parse_resource(*obj);
    auto errors = parsed.errors;
    if (errors.empty() && parsed.resource) errors = model::validate(*parsed.resource);
    if (!errors.empty()) {
      return write_invalid(kube::replication_backfills(), *obj, "ReplicationBackfill", name, errors);
    }
    return {};
  }

  Outcome reconcile_config(const std::string& name) {
    auto obj = configs.get(name);
    if (!obj) return {};
    auto parsed = model::parse_resource(*obj);
    auto errors = parsed.errors;
    auto resources = valid_catalog_resources(true);
    model::RegistryCatalog catalog(resources);
    if (errors.empty() && parsed.resource) errors = model::validate(*parsed.resource, catalog);
    if (!errors.empty())
      return write_invalid(kube::replication_configs(), *obj, "ReplicationConfig", name, errors);
    const auto& config = std::get<model::ReplicationConfig>(*parsed.resource);
    resources.push_back(config);
    model::ResourceIndex index(resources);
    std::map<model::RegistryKey, reconcilers::ProbeResult> checked;
    bool missing_probe = false;
    {
      std::lock_guard lock(probes_mutex);
      std::vector<model::RegistryKey> keys{config.key()};
      for (const auto& rule : config.spec.rules)
        keys.insert(keys.end(), rule.destinations.begin(), rule.destinations.end());
      for (const auto& k : keys) {
        if (!model::region_enabled(index, k)) continue;
        if (auto it = probes.find(k); it != probes.end()) {
          checked[k] = it->second;
        } else {
          missing_probe = true;  // its Registry reconcile will enqueue this config again
        }
      }
    }
    (void)missing_probe;
    const auto now = now_string();
    const auto effective = opts.effective_since ? opts.effective_since(config.key())
                                                : std::map<model::RegistryKey, std::string>{};
    auto out =
        write_status(kube::replication_configs(), *obj, name, [&](const json::value& current) {
          return reconcilers::replication_config_status(current, config, index, checked, now,
                                                        effective);
        });
    if (!out.error) out.requeue_after = opts.resync;
    return out;
  }

  // ---- running -------------------------------------------------------------------------

  void worker(Controller& c) {
    while (auto key = c.queue->get()) {
      const auto start = std::chrono::steady_clock::now();
      Outcome out;
      try {
        out = c.reconcile(*key);
      } catch (const std::exception& e) {
        spdlog::error("msg=\"reconcile threw\" controller={} name={} error=\"{}\"", c.name, *key,
                      e.what());
        out.error = true;
      }
      const double took =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      c.duration->Observe(took);
      c.work->Observe(took);
      if (out.error) {
        c.errors->Increment();
        c.error_total->Increment();
        c.queue->add_rate_limited(*key);
      } else {
        c.queue->forget(*key);
        (out.settled || out.requeue_after.count() == 0 ? c.ok : c.requeue_afters)->Increment();
        if (out.requeue_after.count() > 0) c.queue->add_after(*key, out.requeue_after);
      }
      c.queue->done(*key);
    }
  }
};

Manager::Manager(kube::Api& api, ManagerOptions options)
    : impl_(std::make_unique<Impl>(api, std::move(options))) {}

Manager::~Manager() { stop(); }

void Manager::start() {
  if (impl_->started.exchange(true)) return;
  auto token = impl_->stop_source.get_token();
  std::vector<Informer*> informers{&impl_->registries, &impl_->policies, &impl_->configs, &impl_->repositories,
                                   &impl_->templates, &impl_->backfills};
  for (auto& s : impl_->secrets) informers.push_back(s.get());
  if (impl_->records) informers.push_back(impl_->records.get());
  for (Informer* inf : informers) impl_->threads.emplace_back([inf, token] { inf->run(token); });
  for (Controller* c : impl_->controllers()) {
    for (int i = 0; i < std::max(1, impl_->opts.workers); ++i) {
      impl_->threads.emplace_back([this, c] { impl_->worker(*c); });
    }
  }
  spdlog::info("msg=\"controllers started\" workers_per_controller={}",
               std::max(1, impl_->opts.workers));
}

void Manager::stop() {
  if (!impl_->started || impl_->stopped.exchange(true)) return;
  impl_->stop_source.request_stop();
  for (Controller* c : impl_->controllers()) c->queue->shut_down();
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
  auto valid = impl_->valid_catalog_resources(true);
  for (const auto& item : impl_->registries.items()) stamp(item, std::to_string(kube::generation_of(item)));
  for (const auto& item : impl_->policies.items()) stamp(item, std::to_string(kube::generation_of(item)));
  model::RegistryCatalog catalog(valid);
  in.signature += "configs\n";
  for (const auto& item : impl_->configs.items()) {
    auto p = model::parse_resource(item);
    if (!p.errors.empty() || !p.resource || !model::validate(*p.resource, catalog).empty()) continue;
    stamp(item, std::to_string(kube::generation_of(item)));
    valid.push_back(std::move(*p.resource));
  }
  in.signature += "repositories\n";
  for (const auto& item : impl_->repositories.items()) {
    auto p = model::parse_resource(item);
    if (!p.errors.empty() || !p.resource || !model::validate(*p.resource).empty()) continue;
    // A Repository replication created counts once its status says so; its settings are the
    // defaults either way.
    stamp(item, std::to_string(kube::generation_of(item)));
    valid.push_back(std::move(*p.resource));
  }
  in.signature += "backfills\n";
  for (const auto& item : impl_->backfills.items()) {
    auto p = model::parse_resource(item);
    if (!p.errors.empty() || !p.resource || !model::validate(*p.resource).empty()) continue;
    stamp(item, std::to_string(kube::generation_of(item)));
    valid.push_back(std::move(*p.resource));
  }
  in.signature += "templates\n";
  for (const auto& item : impl_->templates.items()) {
    auto p = model::parse_resource(item);
    if (!p.errors.empty() || !p.resource || !model::validate(*p.resource).empty()) continue;
    stamp(item, std::to_string(kube::generation_of(item)));
    valid.push_back(std::move(*p.resource));
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
    auto obj = impl_->secret_object(key.substr(0, slash), key.substr(slash + 1));
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
  auto resources = impl_->valid_catalog_resources(false);
  return model::RegistryCatalog(resources);
}

void Manager::set_leader(bool leader) { impl_->leader_gauge->Set(leader ? 1 : 0); }

void Manager::requeue_replication_configs() { impl_->enqueue_all_configs(); }

std::string Manager::metrics_text() const {
  for (Controller* c : impl_->controllers()) {
    c->depth->Set(static_cast<double>(c->queue->len()));
    auto now = c->queue->counters();
    c->adds->Increment(static_cast<double>(now.adds - c->reported.adds));
    c->retries->Increment(static_cast<double>(now.retries - c->reported.retries));
    c->reported = now;
  }
  return prometheus::TextSerializer().Serialize(impl_->metrics->Collect());
}

}  // namespace ferry::operator_
