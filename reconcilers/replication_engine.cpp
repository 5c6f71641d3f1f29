// The replication engine: push detection (notifications, polling), durable records, copies.
#include "reconcilers/replication_engine.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <algorithm>
#include <deque>
#include <functional>
#include <expected>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <spdlog/spdlog.h>

#include "aws/credentials.hpp"
#include "aws/ecr.hpp"
#include "reconcilers/model/backfill.hpp"
#include "reconcilers/model/clock.hpp"
#include "reconcilers/model/events.hpp"
#include "reconcilers/model/replication.hpp"
#include "reconcilers/model/rules.hpp"
#include "reconcilers/model/secret_data.hpp"
#include "reconcilers/model/serialize.hpp"
#include "reconcilers/status.hpp"
#include "registry/copier.hpp"

namespace ferry::reconcilers {

namespace asio = boost::asio;
namespace json = boost::json;
using model::RegistryKey;

namespace {

std::string now_text() { return model::format_rfc3339(std::chrono::system_clock::now(), true); }

// How Ferry reaches one Registry: host for references, connection settings, or why it can't.
struct Endpoint {
  std::string host;
  registry::RegistryConfig config;
  std::string error;  // e.g. a missing credentials Secret
};

std::string key_text(const RegistryKey& k) { return model::to_string(k); }

constexpr std::size_t kPollWidth = 16;  // requests in flight per poll

// Runs fn(0) … fn(n-1) with at most `width` of them in flight; returns when all are done.
template <typename F>
asio::awaitable<void> for_each_bounded(std::size_t n, std::size_t width, F fn) {
  auto ex = co_await asio::this_coro::executor;
  std::size_t next = 0, active = 0;
  asio::steady_timer done(ex, std::chrono::steady_clock::time_point::max());
  auto worker = [&]() -> asio::awaitable<void> {
    while (next < n) co_await fn(next++);
  };
  for (std::size_t w = 0; w < std::min(width, n); ++w) {
    ++active;
    asio::co_spawn(ex, worker(), [&](std::exception_ptr) {
      if (--active == 0) done.cancel();
    });
  }
  if (active > 0) co_await done.async_wait(asio::as_tuple(asio::use_awaitable));
}

// A copy that failed because the source does not have what the push names (a 404 from the
// source registry) fails at once: no retry can make it appear (S20, SPEC §6). Returns the
// failure code and a message saying what was not found where; nullopt for any other failure.
std::optional<std::pair<std::string, std::string>> permanent_source_failure(const registry::Error& e,
                                                                            const model::ImageSource& src,
                                                                            const std::string& source_host) {
  if (!e.at_source || e.kind != registry::ErrorKind::NotFound) return std::nullopt;
  const std::string where = "repository " + src.repository_name + " at source " + src.registry_id + "/" +
                            src.region + " (" + source_host + ")";
  const std::string digest = e.digest.empty() ? src.image_digest : e.digest;
  const bool blob = e.code == "BLOB_UNKNOWN" || (e.code.empty() && e.operation.find("blob") != std::string::npos);
  if (e.code == "NAME_UNKNOWN") {
    return std::pair{std::string(model::kSourceRepositoryUnknown), where + " not found: " + e.to_string()};
  }
  if (blob) {
    return std::pair{std::string(model::kSourceBlobUnknown),
                     "blob " + digest + " not found in " + where + ": " + e.to_string()};
  }
  return std::pair{std::string(model::kSourceManifestUnknown),
                   "manifest " + digest + " not found in " + where + ": " + e.to_string()};
}

// State-file key for a registry's polling baseline.
std::string known_state_key(const RegistryKey& k) { return "known-" + k.registry_id + "-" + k.region; }

}  // namespace

struct ReplicationEngine::Impl : std::enable_shared_from_this<ReplicationEngine::Impl> {
  Impl(asio::io_context& io_, store::RecordStore& state_, EngineOptions opts_)
      : io(io_), state(state_), opts(std::move(opts_)), metrics(std::make_shared<prometheus::Registry>()),
        replications(prometheus::BuildCounter()
                         .Name("ferry_replications_total")
                         .Help("Destination replications finished, by result and failure code")
                         .Register(*metrics)),
        pushes(prometheus::BuildCounter()
                   .Name("ferry_pushes_total")
                   .Help("Pushes seen, by how they were noticed and what became of them")
                   .Register(*metrics)),
        bytes(prometheus::BuildCounter()
                  .Name("ferry_bytes_copied_total")
                  .Help("Blob bytes streamed to destinations")
                  .Register(*metrics)
                  .Add({})),
        in_flight_gauge(prometheus::BuildGauge()
                            .Name("ferry_replications_in_flight")
                            .Help("Destination copies running or queued")
                            .Register(*metrics)
                            .Add({})),
        latency(prometheus::BuildHistogram()
                    .Name("ferry_push_to_complete_seconds")
                    .Help("Time from the push (registry timestamp) to COMPLETE at a destination")
                    .Register(*metrics)
                    .Add({}, prometheus::Histogram::BucketBoundaries{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60,
                                                                     300, 1800})) {}

  asio::io_context& io;
  store::RecordStore& state;
  EngineOptions opts;
  // AWS APIs (ECR, STS, container credentials) share one client on the engine's executor.
  std::unique_ptr<registry::HttpClient> aws_http =
      std::make_unique<registry::HttpClient>(io.get_executor(), registry::TlsOptions{});

  std::vector<model::Resource> resources;
  model::ResourceIndex index;
  std::map<std::string, Endpoint> endpoints;  // by registry key text
  std::shared_ptr<registry::Copier> copier;

  std::map<std::string, model::ImageReplication> records;
  std::map<std::string, model::Repository> created_repositories;  // records Ferry wrote, by name
  std::map<std::string, std::map<std::string, std::string>> effective;  // source → destination → since
  // False until the stored times were read: until then no push is recorded (a notification is
  // answered 503, a poll leaves its tags for the next one), since "unreadable" is not "absent".
  bool effective_loaded = false;
  bool effective_retry_armed = false;
  std::chrono::milliseconds effective_retry{500};
  // The same, for other threads (the ReplicationConfig controller of cluster mode).
  mutable std::mutex effective_mutex;
  std::map<RegistryKey, std::map<RegistryKey, std::string>> effective_snapshot;
  struct Known {
    RegistryKey key;
    bool baselined = false;
    bool dirty = false;
    std::size_t size = 0;
    std::map<std::string, std::map<std::string, std::string>> tags;  // repository → tag → digest
  };
  std::map<std::string, Known> known;  // by registry key text
  // "registry|repository|digest" Ferry is writing or wrote, for every record kept: a poll that
  // finds one of these is not a push (S4). Rebuilt from the records at start.
  std::set<std::string> self_writes;
  static std::string self_write_key(const RegistryKey& dest, const model::ImageSource& src) {
    return key_text(dest) + "|" + src.repository_name + "|" + src.image_digest;
  }

  std::deque<std::pair<std::string, RegistryKey>> queue;           // pushes
  std::deque<std::pair<std::string, RegistryKey>> backfill_queue;  // backfilled images, after pushes
  std::set<std::string> queued;  // "record|destination" queued or running
  std::map<std::string, int> attempts;
  // "record|destination" authorized while the destination repository did not exist: the copy
  // creates it, and its Repository record is written once it exists (S12).
  std::set<std::string> creating_repository;
  std::size_t running = 0;
  std::size_t backfill_running = 0;  // of `running`; at most backfill_slots(), so pushes find room
  std::uint64_t poll_generation = 0;
  bool started = false;
  bool stopped = false;

  std::shared_ptr<prometheus::Registry> metrics;
  prometheus::Family<prometheus::Counter>& replications;
  prometheus::Family<prometheus::Counter>& pushes;
  prometheus::Counter& bytes;
  prometheus::Gauge& in_flight_gauge;
  prometheus::Histogram& latency;
  std::uint64_t bytes_seen = 0;

  // ---- configuration ----------------------------------------------------------

  Endpoint endpoint_for(const model::Registry& r) {
    Endpoint e;
    auto url = boost::urls::parse_absolute_uri(r.spec.endpoint);
    if (!url) {
      e.error = "endpoint " + r.spec.endpoint + " is not a URL";
      return e;
    }
    e.host = std::string(url->host());
    if (url->has_port()) e.host += ":" + std::string(url->port());
    e.config.host = e.host;
    e.config.plain_http = url->scheme() == "http";
    e.config.tls.verify = !r.spec.tls_insecure_skip_verify;
    e.config.user_agent = opts.user_agent;
    if (r.spec.tls_ca_secret_ref) {
      const model::Secret* s = index.secret(*r.spec.tls_ca_secret_ref);
      auto ca = s ? model::ca_bundle_from_secret(*s) : std::nullopt;
      if (!ca) {
        e.error = "TLS CA Secret " + r.spec.tls_ca_secret_ref->namespace_ + "/" + r.spec.tls_ca_secret_ref->name +
                  " not found or has none of the keys ca.crt, ca.pem, tls.crt";
        return e;
      }
      e.config.tls.ca_pems.push_back(std::move(*ca));
    }
    if (r.spec.credentials_secret_ref && r.spec.type != model::RegistryType::Ecr) {  // ECR: a token (rebuild_copier)
      const auto& ref = *r.spec.credentials_secret_ref;
      const model::Secret* s = index.secret(ref);
      if (!s) {
        e.error = "credentials Secret " + ref.namespace_ + "/" + ref.name + " not found";
        return e;
      }
      auto creds = model::credentials_from_secret(*s, e.host);
      if (!creds) {
        e.error = "credentials Secret " + ref.namespace_ + "/" + ref.name + " holds no credentials for " + e.host;
        return e;
      }
      e.config.credentials.username = creds->username;
      e.config.credentials.password = creds->password;
    }
    return e;
  }

  void set_resources(std::vector<model::Resource> next) {
    resources = std::move(next);
    index = model::ResourceIndex(resources);
    update_ecr_registries();
    endpoints.clear();
    for (const auto& r : index.registries()) {
      auto e = endpoint_for(r);
      if (!e.error.empty()) {
        spdlog::error("msg=\"registry unusable\" registry={} error=\"{}\"", r.metadata.name, e.error);
      }
      endpoints[key_text(r.key())] = std::move(e);
    }
    rebuild_copier();
    update_effective_times();
    restart_polling();
    update_backfills();
    if (started) pump();
  }

  // S3: when each (source, destination) pair started to apply; kept across restarts.
  void update_effective_times() {
    if (!effective_loaded) {
      auto v = state.load_state("effective");
      if (!v) {
        spdlog::error("msg=\"cannot read the effective times; pushes wait until they are read\" retry_in_ms={} "
                      "error=\"{}\"", effective_retry.count(), v.error());
        retry_effective_times();
        return;
      }
      if (*v && (*v)->is_object()) {
        for (const auto& [src, dests] : (*v)->as_object()) {
          if (!dests.is_object()) continue;
          for (const auto& [dst, since] : dests.as_object()) {
            if (since.is_string()) effective[src][dst] = since.as_string();
          }
        }
      }
      effective_loaded = true;
    }
    std::map<std::string, std::map<std::string, std::string>> next;
    std::map<RegistryKey, std::map<RegistryKey, std::string>> snapshot;
    const std::string now = now_text();
    for (const auto& c : index.configs()) {
      const std::string src = key_text(c.key());
      for (const auto& d : model::unique_destinations(c.spec)) {
        const std::string dst = key_text(d);
        auto old = effective.find(src);
        std::string since = now;
        if (old != effective.end() && old->second.contains(dst)) since = old->second.at(dst);
        next[src][dst] = since;
        snapshot[c.key()][d] = since;
      }
    }
    {
      std::lock_guard lock(effective_mutex);
      effective_snapshot = std::move(snapshot);
    }
    if (next != effective) {
      effective = std::move(next);
      json::object o;
      for (const auto& [src, dests] : effective) {
        json::object d;
        for (const auto& [dst, since] : dests) d[dst] = since;
        o[src] = std::move(d);
      }
      if (auto w = state.save_state("effective", o); !w) {
        spdlog::error("msg=\"cannot persist effective times\" error=\"{}\"", w.error());
      }
      if (opts.on_effective_change) opts.on_effective_change();
    }
  }

  void retry_effective_times() {
    if (effective_retry_armed) return;
    effective_retry_armed = true;
    auto t = std::make_shared<asio::steady_timer>(io, effective_retry);
    effective_retry = std::min<std::chrono::milliseconds>(effective_retry * 2, std::chrono::seconds(30));
    t->async_wait([self = shared_from_this(), t](boost::system::error_code ec) {
      self->effective_retry_armed = false;
      if (ec || self->stopped) return;
      self->update_effective_times();
    });
  }

  std::string effective_since(const RegistryKey& src, const RegistryKey& dst) const {
    auto s = effective.find(key_text(src));
    if (s == effective.end()) return {};
    auto d = s->second.find(key_text(dst));
    return d == s->second.end() ? std::string() : d->second;
  }

  // ---- push intake ---------------------------------------------------------------

  bool is_self_write(const RegistryKey& reg, const model::PushEvent& push) const {
    if (push.user_agent.starts_with(opts.user_agent.substr(0, opts.user_agent.find('/') + 1))) return true;
    return self_writes.contains(key_text(reg) + "|" + push.repository + "|" + push.digest);
  }

  // The polling baseline of a registry, read from the store once; nullptr while it cannot be
  // read (an unreadable baseline taken for an empty one would make the next poll a new
  // baseline and drop the pushes made meanwhile).
  Known* known_for(const RegistryKey& reg) {
    const std::string k = key_text(reg);
    auto it = known.find(k);
    if (it != known.end()) return &it->second;
    Known kn;
    kn.key = reg;
    auto v = state.load_state(known_state_key(reg));
    if (!v) {
      spdlog::error("msg=\"cannot read the polling baseline\" registry={} error=\"{}\"", k, v.error());
      return nullptr;
    }
    if (*v && (*v)->is_object()) {
      const auto& o = (*v)->as_object();
      if (auto* b = o.if_contains("baselined"); b && b->is_bool()) kn.baselined = b->as_bool();
      if (auto* repos = o.if_contains("repositories"); repos && repos->is_object()) {
        for (const auto& [repo, tags] : repos->as_object()) {
          if (!tags.is_object()) continue;
          for (const auto& [tag, digest] : tags.as_object()) {
            if (digest.is_string()) {
              kn.tags[std::string(repo)][std::string(tag)] = digest.as_string();
              ++kn.size;
            }
          }
        }
      }
    }
    return &known.emplace(k, std::move(kn)).first->second;
  }

  // Only registries polled as sources keep a baseline; elsewhere there is nothing to compare.
  bool polled(const RegistryKey& reg) const {
    const model::Registry* r = index.registry(reg);
    return r && r->spec.enabled && r->spec.poll_interval.count() > 0 && index.config_for(reg) != nullptr;
  }

  void note_known(const RegistryKey& reg, const std::string& repo, const std::string& tag, const std::string& digest) {
    if (tag.empty() || !polled(reg)) return;
    Known* kn = known_for(reg);
    if (!kn) return;  // the next poll sees the tag again
    auto& slot = kn->tags[repo][tag];
    if (slot == digest) return;
    if (slot.empty()) ++kn->size;
    slot = digest;
    kn->dirty = true;
  }

  void save_known(const RegistryKey& reg) {
    if (!polled(reg)) return;
    Known* kn = known_for(reg);
    if (!kn || !kn->dirty) return;
    json::object repos;
    for (const auto& [repo, tags] : kn->tags) {
      json::object t;
      for (const auto& [tag, digest] : tags) t[tag] = digest;
      repos[repo] = std::move(t);
    }
    json::object o{{"baselined", kn->baselined}, {"repositories", std::move(repos)}};
    if (auto w = state.save_state(known_state_key(reg), o); !w) {
      spdlog::error("msg=\"cannot persist polling baseline\" registry={} error=\"{}\"", key_text(reg), w.error());
      return;
    }
    kn->dirty = false;
  }

  // Baselines changed by notifications are written at most once a second: a lost update only
  // means the next poll sees that tag again and finds its record (a duplicate, not a copy).
  bool known_flush_armed = false;
  void save_known_soon() {
    if (known_flush_armed) return;
    known_flush_armed = true;
    auto t = std::make_shared<asio::steady_timer>(io, std::chrono::seconds(1));
    t->async_wait([self = shared_from_this(), t](boost::system::error_code) {
      self->known_flush_armed = false;
      self->save_all_known();
    });
  }
  void save_all_known() {
    for (auto& [k, kn] : known) {
      if (kn.dirty) save_known(kn.key);
    }
  }

  // Records one push; an error means it was not recorded and the caller must report failure.
  std::expected<void, std::string> handle_push(const RegistryKey& src, const model::PushEvent& push,
                                               const char* via) {
    if (is_self_write(src, push)) {
      pushes.Add({{"via", via}, {"outcome", "own_write"}}).Increment();
      return {};
    }
    if (!effective_loaded) {
      pushes.Add({{"via", via}, {"outcome", "state_unreadable"}}).Increment();
      return std::unexpected("the effective times (S3) could not be read yet; the push is not recorded");
    }
    auto dests = model::destinations_for_push(index, src, push.repository, push.tag);
    const auto pushed = model::parse_rfc3339(push.timestamp);
    std::erase_if(dests, [&](const RegistryKey& d) {
      auto since = model::parse_rfc3339(effective_since(src, d));
      if (!pushed || !since) return false;
      // A push time in whole seconds (ECR's imagePushedAt as some APIs give it) is compared in
      // whole seconds: a push in the second the destination started to apply counts as after.
      if (std::chrono::floor<std::chrono::seconds>(*pushed) == *pushed) {
        return *pushed < std::chrono::floor<std::chrono::seconds>(*since);
      }
      return *pushed < *since;  // S3: before this destination applied
    });
    // The baseline learns a tag only once its push is decided: a push whose record could not be
    // written is seen again by the next poll.
    if (dests.empty()) {
      note_known(src, push.repository, push.tag, push.digest);
      pushes.Add({{"via", via}, {"outcome", "no_destination"}}).Increment();
      return {};
    }
    auto record = model::new_image_replication(src, push, dests, now_text());
    if (records.contains(record.metadata.name)) {
      note_known(src, push.repository, push.tag, push.digest);
      pushes.Add({{"via", via}, {"outcome", "duplicate"}}).Increment();
      return {};
    }
    if (auto w = state.save(record); !w) return std::unexpected(w.error());
    note_known(src, push.repository, push.tag, push.digest);
    pushes.Add({{"via", via}, {"outcome", "replicating"}}).Increment();
    spdlog::info("msg=\"push recorded\" record={} registry={} repository={} digest={} tag={} destinations={} via={}",
                 record.metadata.name, key_text(src), push.repository, push.digest, push.tag, dests.size(), via);
    const std::string name = record.metadata.name;
    records.emplace(name, std::move(record));
    for (const auto& d : dests) enqueue(name, d);
    return {};
  }

  std::optional<NotificationOutcome> authenticate_notification(const std::string& registry_name,
                                                               const std::string& authorization) const {
    const model::Registry* reg = index.registry_named(registry_name);
    if (!reg) return NotificationOutcome{404, "no Registry named \"" + registry_name + "\""};
    if (reg->spec.notifications_token_secret_ref) {
      const auto& ref = *reg->spec.notifications_token_secret_ref;
      const model::Secret* s = index.secret(ref);
      auto tok = s ? s->data.find("token") : decltype(s->data.end()){};
      if (!s || tok == s->data.end()) {
        return NotificationOutcome{
            503, "notification token Secret " + ref.namespace_ + "/" + ref.name + " not found or has no token key"};
      }
      const std::string expected = "Bearer " + tok->second;
      bool same = expected.size() == authorization.size();
      unsigned char diff = 0;
      for (std::size_t i = 0; same && i < expected.size(); ++i) diff |= expected[i] ^ authorization[i];
      if (!same || diff != 0) return NotificationOutcome{401, "missing or wrong bearer token"};
    }
    return std::nullopt;
  }

  NotificationOutcome on_notification(const std::string& registry_name, const std::string& content_type,
                                      const std::string& authorization, const std::string& body) {
    if (auto refused = authenticate_notification(registry_name, authorization)) return *refused;
    const model::Registry* reg = index.registry_named(registry_name);
    if (!model::is_notification_content_type(content_type)) {
      return {415, "content type \"" + content_type +
                       "\" is not application/vnd.docker.distribution.events.v1+json or v2+json"};
    }
    auto events = model::parse_notification(body);
    if (!events) return {400, events.error()};
    for (const auto& e : *events) {
      if (auto r = handle_push(reg->key(), e, "notification"); !r) {
        spdlog::error("msg=\"cannot record push\" registry={} repository={} digest={} error=\"{}\"",
                      registry_name, e.repository, e.digest, r.error());
        return {503, "cannot record push: " + r.error()};
      }
    }
    save_known_soon();
    return {200, std::to_string(events->size()) + " manifest pushes"};
  }

  // ---- execution -----------------------------------------------------------------

  void enqueue(const std::string& record, const RegistryKey& dest) {
    if (!queued.insert(record + "|" + key_text(dest)).second) return;
    (backfill_of.contains(record) ? backfill_queue : queue).emplace_back(record, dest);
    in_flight_gauge.Set(static_cast<double>(queued.size()));
    if (started) pump();
  }

  // Pushes first; backfilled images take what is left, at most half the copies at once (S17, S21).
  std::size_t backfill_slots() const { return std::max<std::size_t>(1, opts.max_parallel / 2); }

  void pump() {
    while (!stopped && running < opts.max_parallel) {
      const bool low = queue.empty();
      if (low && (backfill_queue.empty() || backfill_running >= backfill_slots())) break;
      auto& from = low ? backfill_queue : queue;
      auto [name, dest] = from.front();
      from.pop_front();
      ++running;
      if (low) ++backfill_running;
      asio::co_spawn(io, replicate(name, dest),
                     [self = shared_from_this(), name, dest, low](std::exception_ptr e) {
                       --self->running;
                       if (low) --self->backfill_running;
                       self->queued.erase(name + "|" + key_text(dest));
                       self->in_flight_gauge.Set(static_cast<double>(self->queued.size()));
                       if (e) {
                         try {
                           std::rethrow_exception(e);
                         } catch (const std::exception& ex) {
                           spdlog::error("msg=\"replication crashed\" record={} destination={} error=\"{}\"", name,
                                         key_text(dest), ex.what());
                         }
                       }
                       self->pump();
                     });
    }
  }

  model::ReplicationStatus* status_of(model::ImageReplication& rec, const RegistryKey& dest) {
    for (auto& s : rec.status.replication_statuses) {
      if (s.registry_id == dest.registry_id && s.region == dest.region) return &s;
    }
    return nullptr;
  }

  const model::Repository* repository_settings(const RegistryKey& dest, const std::string& repo) const {
    if (const auto* user = index.repository(dest, repo)) return user;
    auto it = created_repositories.find(model::repository_record_name(dest, repo));
    return it == created_repositories.end() ? nullptr : &it->second;
  }

  void save_record(const model::ImageReplication& rec) {
    if (auto w = state.save(rec); !w) {
      spdlog::error("msg=\"cannot persist record\" record={} error=\"{}\"", rec.metadata.name, w.error());
    }
  }

  void finish(const std::string& name, const RegistryKey& dest, std::string_view status, std::string failure_code,
              std::string message, bool tagged) {
    auto it = records.find(name);
    if (it == records.end()) return;
    auto& rec = it->second;
    auto* st = status_of(rec, dest);
    if (!st) return;
    st->status = status;
    st->failure_code = std::move(failure_code);
    st->message = std::move(message);
    st->tagged = tagged;
    st->completed_at = now_text();
    model::summarize(rec);
    image_replication_conditions(rec, st->completed_at);  // Complete / Failed, for kstatus
    save_record(rec);
    backfill_item_done(name, status);
    attempts.erase(name + "|" + key_text(dest));
    creating_repository.erase(name + "|" + key_text(dest));
    replications.Add({{"result", std::string(status)}, {"failure_code", st->failure_code}}).Increment();
    if (status == model::kComplete) {
      auto pushed = model::parse_rfc3339(rec.spec.source.pushed_at);
      if (pushed) {
        latency.Observe(std::chrono::duration<double>(std::chrono::system_clock::now() - *pushed).count());
      }
      spdlog::info("msg=\"replication complete\" record={} repository={} digest={} tag={} destination={} tagged={}",
                   name, rec.spec.source.repository_name, rec.spec.source.image_digest, rec.spec.source.image_tag,
                   key_text(dest), tagged);
    } else {
      spdlog::warn("msg=\"replication failed\" record={} repository={} digest={} destination={} failure_code={} "
                   "reason=\"{}\"",
                   name, rec.spec.source.repository_name, rec.spec.source.image_digest, key_text(dest),
                   st->failure_code, st->message);
      if (opts.on_failed) opts.on_failed(rec, *st);
    }
  }

  asio::awaitable<registry::Result<bool>> repository_exists(registry::Copier& c, const Endpoint& ep,
                                                           const std::string& repo) {
    auto tags = co_await c.client(ep.host, registry::Side::Destination).tags(repo, 1000);
    if (tags) co_return true;
    if (tags.error().http_status == 404) co_return false;
    co_return std::unexpected(tags.error());
  }

  asio::awaitable<void> replicate(std::string name, RegistryKey dest) {
    auto self = shared_from_this();
    auto it = records.find(name);
    if (it == records.end()) co_return;
    auto* st = status_of(it->second, dest);
    if (!st || st->status != model::kInProgress) co_return;
    const model::ImageSource src = it->second.spec.source;
    const RegistryKey src_key{src.registry_id, src.region};
    auto copier_now = copier;  // survives a reload while this copy runs

    // Copies: a reload may replace `endpoints` while this coroutine waits.
    auto find_endpoint = [&](const RegistryKey& k) -> std::optional<Endpoint> {
      auto e = endpoints.find(key_text(k));
      if (e == endpoints.end()) return std::nullopt;
      return e->second;
    };
    const auto src_ep = find_endpoint(src_key);
    const auto dst_ep_opt = find_endpoint(dest);
    if (!src_ep || !model::region_enabled(index, src_key)) {
      finish(name, dest, model::kFailed, std::string(model::kRegionNotEnabled),
             "RegionNotEnabled: source region " + src.region + " is not enabled for account " + src.registry_id, false);
      co_return;
    }
    const std::string work_key = name + "|" + key_text(dest);
    if (st->authorized_by.empty()) {
      // S2/S8: decided now, when the copy starts, and recorded, so a later revocation does not
      // stop it (S9). Whether the repository exists is asked of the destination registry: no
      // record stands for it, neither a user's Repository (settings only) nor one Ferry wrote,
      // so nothing an earlier, failed attempt left widens what the policy grants (SPEC §6).
      bool exists = true;
      if (dst_ep_opt && dst_ep_opt->error.empty() && model::region_enabled(index, dest)) {
        auto e = co_await destination_has_repository(*copier_now, *dst_ep_opt, dest, src.repository_name);
        if (!e) {
          co_await retry_or_fail(name, dest, e.error());
          co_return;
        }
        exists = *e;
      }
      auto auth = model::authorize(index, src_key, dest, src.repository_name, exists);
      it = records.find(name);
      if (it == records.end()) co_return;
      st = status_of(it->second, dest);
      if (!st) co_return;
      if (!auth.allowed) {
        finish(name, dest, model::kFailed, auth.failure_code, auth.message, false);
        co_return;
      }
      if (!exists) creating_repository.insert(work_key);
      st->authorized_by = auth.authorized_by;
      st->started_at = now_text();
      save_record(it->second);
    }
    if (!dst_ep_opt) {
      finish(name, dest, model::kFailed, std::string(model::kRegionNotEnabled),
             "RegionNotEnabled: no Registry for " + key_text(dest), false);
      co_return;
    }
    if (!src_ep->error.empty() || !dst_ep_opt->error.empty()) {
      finish(name, dest, model::kFailed, std::string(model::kReplicationFailed),
             !src_ep->error.empty() ? src_ep->error : dst_ep_opt->error, false);
      co_return;
    }
    const Endpoint src_ep_v = *src_ep;
    const Endpoint dst_ep = *dst_ep_opt;

    // ECR on either side: fresh data-plane tokens first (SPEC §7).
    for (const auto& k : {src_key, dest}) {
      auto ready = co_await ecr_ready(k);
      if (!ready) {
        co_await retry_or_fail(name, dest, "ECR registry " + key_text(k) + ": " + ready.error());
        co_return;
      }
    }
    copier_now = copier;
    // An ECR destination: the repository as ECR has it, created first when absent (ECR does not
    // create repositories on push); S13 follows ECR's own mutability setting.
    const bool dest_ecr = ecr_of(dest) != nullptr;
    std::optional<model::Repository> ecr_settings;
    if (dest_ecr) {
      auto d = co_await ecr_destination(dest, src);
      if (!d) {
        co_await retry_or_fail(name, dest, "ECR registry " + key_text(dest) + ": " + d.error());
        co_return;
      }
      if (!d->denied_code.empty()) {
        finish(name, dest, model::kFailed, d->denied_code, d->denied_message, false);
        co_return;
      }
      ecr_settings = std::move(d->settings);
    }

    // S13: an immutable tag at the destination (IMMUTABLE, or the *_WITH_EXCLUSION modes of S16)
    // keeps its digest; the image goes over by digest.
    bool write_tag = !src.image_tag.empty();
    std::string note;
    if (write_tag) {
      const model::Repository* settings =
          ecr_settings ? &*ecr_settings : repository_settings(dest, src.repository_name);
      if (model::tag_immutable(settings, src.image_tag)) {
        auto head = co_await copier_now->client(dst_ep.host, registry::Side::Destination)
                        .head_manifest(src.repository_name, src.image_tag);
        if (!head) {
          co_await retry_or_fail(name, dest, head.error().to_string());
          co_return;
        }
        const std::string existing = *head ? (*head)->digest : std::string();
        if (!model::may_write_tag(settings, src.image_tag, existing, src.image_digest)) {
          write_tag = false;
          note = "tag " + src.image_tag + " already points to " + existing + " and is immutable in " +
                 settings->spec.image_tag_mutability + " repository " + src.repository_name +
                 "; image copied by digest without the tag";
        }
      }
    }

    // S12: a repository this copy creates gets its Repository record once it exists, right after
    // the first manifest is written there; a copy that fails before leaves none behind. Resumed
    // after a restart, the destination says whether this copy still creates it.
    bool record_repository = false;
    if (!dest_ecr && !repository_settings(dest, src.repository_name)) {
      if (creating_repository.contains(work_key)) {
        record_repository = true;
      } else {
        auto e = co_await repository_exists(*copier_now, dst_ep, src.repository_name);
        if (!e) {
          co_await retry_or_fail(name, dest, e.error().to_string());
          co_return;
        }
        record_repository = !*e;
        if (record_repository) creating_repository.insert(work_key);
      }
    }
    std::string record_error;
    auto write_repository_record = [this, &record_repository, &record_error, dest, src, src_key] {
      if (!record_repository) return;
      if (repository_settings(dest, src.repository_name)) {  // another copy recorded it meanwhile
        record_repository = false;
        return;
      }
      auto repo = model::new_replicated_repository(dest, src.repository_name, src_key, now_text(),
                                                   index.creation_template(dest, src.repository_name));
      if (auto w = state.save(repo); !w) {
        record_error = w.error();
        spdlog::error("msg=\"cannot record repository\" registry={} repository={} error=\"{}\"", key_text(dest),
                      src.repository_name, record_error);
        return;
      }
      spdlog::info("msg=\"repository created\" registry={} repository={} record={} template={}", key_text(dest),
                   src.repository_name, repo.metadata.name,
                   repo.status.template_name.empty() ? "none" : repo.status.template_name);
      created_repositories[repo.metadata.name] = std::move(repo);
      record_repository = false;
    };

    registry::Reference from{src_ep_v.host, src.repository_name, "", src.image_digest};
    registry::Reference to{dst_ep.host, src.repository_name, write_tag ? src.image_tag : "",
                           write_tag ? "" : src.image_digest};
    // Known as Ferry's own write before it exists (S4): in memory now, and through this record
    // (authorizedBy is saved) after a restart. The destination's baseline follows within a second.
    self_writes.insert(self_write_key(dest, src));
    note_known(dest, src.repository_name, write_tag ? src.image_tag : "", src.image_digest);
    save_known_soon();
    const auto before = copier_now->stats().bytes_copied;
    auto result = co_await copier_now->copy(from, to, write_repository_record);
    const auto after = copier_now->stats().bytes_copied;
    if (after > before) bytes.Increment(static_cast<double>(after - before));
    if (!result) {
      if (result.error().http_status == 401 || result.error().kind == registry::ErrorKind::Unauthorized) {
        ecr_unauthorized(result.error().at_source ? src_key : dest);
      }
      if (auto permanent = permanent_source_failure(result.error(), src, src_ep_v.host)) {
        finish(name, dest, model::kFailed, std::move(permanent->first), std::move(permanent->second), false);
        co_return;
      }
      co_await retry_or_fail(name, dest, result.error().to_string());
      co_return;
    }
    if (record_repository) {
      write_repository_record();  // the write during the copy failed: once more
      if (record_repository) {
        co_await retry_or_fail(name, dest, "cannot record repository " + src.repository_name + ": " + record_error);
        co_return;
      }
    }
    finish(name, dest, model::kComplete, "", note, write_tag || src.image_tag.empty());
  }

  asio::awaitable<void> retry_or_fail(std::string name, RegistryKey dest, std::string error) {
    const std::string key = name + "|" + key_text(dest);
    int n = ++attempts[key];
    if (n >= opts.max_attempts || stopped) {
      if (!stopped) {
        finish(name, dest, model::kFailed, std::string(model::kReplicationFailed),
               error + " (after " + std::to_string(n) + " attempts)", false);
      }
      co_return;
    }
    auto it = records.find(name);
    if (it != records.end()) {
      if (auto* st = status_of(it->second, dest)) {
        st->message = "attempt " + std::to_string(n) + " failed: " + error;
        save_record(it->second);
      }
    }
    static thread_local std::mt19937 rng{std::random_device{}()};
    auto delay = opts.retry_base * (1 << std::min(n - 1, 6));
    delay = std::chrono::milliseconds(
        std::uniform_int_distribution<long long>(delay.count() / 2, delay.count())(rng));
    spdlog::warn("msg=\"replication attempt failed; retrying\" record={} destination={} attempt={} delay_ms={} error=\"{}\"",
                 name, key_text(dest), n, delay.count(), error);
    asio::steady_timer t(io, delay);
    co_await t.async_wait(asio::use_awaitable);
    // Re-queued after this coroutine ends and its slot is free.
    asio::post(io, [self = shared_from_this(), name, dest] { self->enqueue(name, dest); });
  }

  // ---- polling safety net ------------------------------------------------------------

  void restart_polling() {
    const std::uint64_t gen = ++poll_generation;
    if (stopped) return;
    for (const auto& c : index.configs()) {
      const model::Registry* reg = index.registry(c.key());
      if (!reg || !reg->spec.enabled) continue;
      if (reg->spec.poll_interval.count() == 0) {
        // No polling: the baseline is still taken once so that enabling it later copies nothing old.
        continue;
      }
      asio::co_spawn(io, poll_loop(gen, c.key(), reg->spec.poll_interval), asio::detached);
    }
  }

  asio::awaitable<void> poll_loop(std::uint64_t gen, RegistryKey reg, std::chrono::milliseconds interval) {
    auto self = shared_from_this();
    // Before the first poll, let start() load the records so duplicates are recognised.
    while (!started && !stopped && gen == poll_generation) {
      asio::steady_timer t(io, std::chrono::milliseconds(50));
      co_await t.async_wait(asio::use_awaitable);
    }
    while (!stopped && gen == poll_generation) {
      co_await poll_once(reg);
      asio::steady_timer t(io, interval);
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  asio::awaitable<void> poll_once(RegistryKey reg) {
    auto ep_it = endpoints.find(key_text(reg));
    if (ep_it == endpoints.end() || !ep_it->second.error.empty()) co_return;
    const Endpoint ep = ep_it->second;
    auto copier_now = copier;
    const auto began = std::chrono::steady_clock::now();
    std::vector<model::PushEvent> found;
    std::size_t repositories = 0, seen = 0;
    if (ecr_of(reg)) {
      // ECR has no _catalog: DescribeRepositories and DescribeImages, with ECR's push times.
      std::set<std::string> names;
      auto listed = co_await list_ecr_images(reg, {});
      if (!listed) {
        spdlog::warn("msg=\"poll failed\" registry={} error=\"{}\"", key_text(reg), listed.error());
        co_return;
      }
      for (auto& e : *listed) {
        if (++seen > opts.max_known_tags_per_registry) break;
        names.insert(e.repository);
        found.push_back(std::move(e));
      }
      repositories = names.size();
    } else {
      auto& client = copier_now->client(ep.host, registry::Side::Source);
      auto repos = co_await client.catalog(1000);
      if (!repos) {
        spdlog::warn("msg=\"poll failed\" registry={} error=\"{}\"", key_text(reg), repos.error().to_string());
        co_return;
      }
      repositories = repos->size();
      // Tags of every repository, then each tag's digest: HEADs in parallel (loopback registries
      // answer a HEAD in milliseconds, so a sequential scan of 10,000 tags would take half a minute).
      std::vector<std::vector<std::string>> tag_lists(repos->size());
      co_await for_each_bounded(repos->size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
        auto tags = co_await client.tags((*repos)[i], 1000);
        if (tags) tag_lists[i] = std::move(*tags);  // else deleted meanwhile, or no tags yet
      });
      for (std::size_t i = 0; i < repos->size(); ++i) {
        for (auto& tag : tag_lists[i]) {
          if (++seen > opts.max_known_tags_per_registry) break;
          model::PushEvent e;
          e.repository = (*repos)[i];
          e.tag = std::move(tag);
          found.push_back(std::move(e));
        }
      }
      co_await for_each_bounded(found.size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
        auto head = co_await client.head_manifest(found[i].repository, found[i].tag);
        if (head && *head) {
          found[i].digest = (*head)->digest;
          found[i].media_type = (*head)->media_type;
        }
      });
      std::erase_if(found, [](const model::PushEvent& e) { return e.digest.empty(); });
    }
    if (seen > opts.max_known_tags_per_registry) {
      spdlog::warn("msg=\"poll baseline bound reached; tags beyond it are not watched\" registry={} bound={}",
                   key_text(reg), opts.max_known_tags_per_registry);
    }
    if (stopped) co_return;
    Known* known_now = known_for(reg);
    if (!known_now || !effective_loaded) {
      spdlog::warn("msg=\"poll skipped: its baseline or the effective times cannot be read\" registry={}",
                   key_text(reg));
      co_return;
    }
    Known& kn = *known_now;
    if (!kn.baselined) {
      // S3: what exists when a configuration starts to apply is the baseline, never copied.
      for (const auto& e : found) note_known(reg, e.repository, e.tag, e.digest);
      kn.baselined = true;
      kn.dirty = true;
      save_known(reg);
      spdlog::info("msg=\"poll baseline recorded\" registry={} tags={}", key_text(reg), found.size());
      co_return;
    }
    const std::string now = now_text();
    std::size_t new_pushes = 0;
    for (auto& e : found) {
      auto r = kn.tags.find(e.repository);
      if (r != kn.tags.end()) {
        auto t = r->second.find(e.tag);
        if (t != r->second.end() && t->second == e.digest) continue;
      }
      e.id = "poll-" + now;
      if (e.timestamp.empty()) e.timestamp = now;  // ECR's imagePushedAt where it has one
      ++new_pushes;
      if (auto res = handle_push(reg, e, "poll"); !res) {
        spdlog::error("msg=\"cannot record polled push\" registry={} repository={} error=\"{}\"", key_text(reg),
                      e.repository, res.error());
      }
    }
    save_known(reg);
    spdlog::info("msg=\"poll complete\" registry={} repositories={} tags={} new={} seconds={:.3f}", key_text(reg),
                 repositories, found.size(), new_pushes,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
  }

  // ---- Amazon ECR registries (SPEC §7) -------------------------------------------------
  //
  // A `type: ecr` Registry is reached in two ways: its OCI data plane (the copier, with Basic
  // credentials from GetAuthorizationToken, cached until 5 minutes before they expire and
  // dropped on a 401), and its API (SigV4-signed with the credentials of its Secret or of the
  // default chain) for what a plain registry cannot say: whether a repository exists, its tag
  // mutability, creating it, and listing images (ECR has no _catalog).

  struct Ecr {
    std::shared_ptr<aws::CredentialsProvider> creds;
    std::shared_ptr<aws::EcrClient> api;
    std::string error;      // why it cannot be used (e.g. no credentials)
    std::string signature;  // what it was built from: a token survives reloads while this holds
    std::optional<aws::AuthorizationToken> token;
  };
  std::map<std::string, std::shared_ptr<Ecr>> ecr;  // by registry key text

  std::shared_ptr<Ecr> ecr_of(const RegistryKey& k) const {
    auto it = ecr.find(key_text(k));
    return it == ecr.end() ? nullptr : it->second;
  }

  void update_ecr_registries() {
    std::map<std::string, std::shared_ptr<Ecr>> next;
    for (const auto& r : index.registries()) {
      if (r.spec.type != model::RegistryType::Ecr) continue;
      const std::string k = key_text(r.key());
      const model::Secret* secret = r.spec.credentials_secret_ref ? index.secret(*r.spec.credentials_secret_ref) : nullptr;
      std::string sig = r.spec.endpoint + "|" + r.spec.ecr_api_endpoint + "|" + r.spec.sts_endpoint;
      if (secret) {
        for (const auto& [key, value] : secret->data) sig += "|" + key + "=" + model::sha256_hex(value);
      }
      if (auto old = ecr.find(k); old != ecr.end() && old->second->signature == sig) {
        next[k] = old->second;
        continue;
      }
      auto e = std::make_shared<Ecr>();
      e->signature = sig;
      const aws::StsOptions sts{r.spec.region, r.spec.sts_endpoint};
      aws::Result<std::shared_ptr<aws::CredentialsProvider>> creds =
          std::unexpected(aws::Error{.kind = aws::ErrorKind::Credentials});
      if (r.spec.credentials_secret_ref && !secret) {
        e->error = "credentials Secret " + r.spec.credentials_secret_ref->namespace_ + "/" +
                   r.spec.credentials_secret_ref->name + " not found";
      } else {
        creds = secret ? aws::from_secret(secret->data, *aws_http, sts)
                       : aws::default_chain(*aws_http, aws::process_environment(), sts);
        if (!creds) e->error = "AWS credentials for " + k + ": " + creds.error().to_string();
      }
      if (e->error.empty()) {
        e->creds = *creds;
        e->api = std::make_shared<aws::EcrClient>(
            *aws_http, e->creds, aws::EcrOptions{r.spec.region, r.spec.ecr_api_endpoint, r.spec.registry_id});
        spdlog::info("msg=\"ECR registry\" registry={} api={} credentials={}", k, e->api->endpoint(), e->creds->name());
      } else {
        spdlog::error("msg=\"ECR registry unusable\" registry={} error=\"{}\"", k, e->error);
      }
      next[k] = std::move(e);
    }
    ecr = std::move(next);
  }

  // The copier sees every registry's connection settings, ECR tokens included; rebuilt when
  // the resources or a token change (copies in flight keep the copier they started with).
  void rebuild_copier() {
    std::map<std::string, registry::RegistryConfig> by_host;
    for (const auto& [k, e] : endpoints) {
      auto config = e.config;
      if (auto it = ecr.find(k); it != ecr.end() && it->second->token) {
        config.credentials.username = it->second->token->username;
        config.credentials.password = it->second->token->password;
      }
      by_host[e.host] = std::move(config);
    }
    copier = std::make_shared<registry::Copier>(io.get_executor(), [by_host](const std::string& host, registry::Side) {
      auto it = by_host.find(host);
      if (it != by_host.end()) return it->second;
      registry::RegistryConfig c;
      c.host = host;
      return c;
    });
  }

  // Makes sure an ECR registry's data-plane token is fresh; nothing to do for other registries.
  asio::awaitable<std::expected<void, std::string>> ecr_ready(RegistryKey k) {
    auto self = shared_from_this();
    auto e = ecr_of(k);
    if (!e) co_return std::expected<void, std::string>{};
    if (!e->error.empty()) co_return std::unexpected(e->error);
    const auto now = std::chrono::system_clock::now();
    if (e->token && (!e->token->expires_at || *e->token->expires_at - now > std::chrono::minutes(5))) {
      co_return std::expected<void, std::string>{};
    }
    auto token = co_await e->api->get_authorization_token();
    if (!token) co_return std::unexpected(token.error().to_string());
    e->token = std::move(*token);
    spdlog::info("msg=\"ECR authorization token obtained\" registry={}", key_text(k));
    if (ecr_of(k) == e) rebuild_copier();
    co_return std::expected<void, std::string>{};
  }

  // A 401 from an ECR data plane: the token is dropped, the next attempt asks for a new one.
  void ecr_unauthorized(const RegistryKey& k) {
    if (auto e = ecr_of(k); e && e->token) {
      e->token.reset();
      spdlog::warn("msg=\"ECR token refused; a new one is asked for\" registry={}", key_text(k));
    }
  }

  // ECR's view of a repository as a Repository: mutability, exclusion filters, scanning, encryption.
  static model::Repository repository_from_ecr(const RegistryKey& dest, const aws::Repository& r) {
    model::Repository out;
    out.metadata.name = model::repository_record_name(dest, r.name);
    out.spec.registry_id = dest.registry_id;
    out.spec.region = dest.region;
    out.spec.repository_name = r.name;
    out.spec.image_tag_mutability = r.image_tag_mutability.empty() ? "MUTABLE" : r.image_tag_mutability;
    for (const auto& f : r.exclusion_filters) {
      out.spec.image_tag_mutability_exclusion_filters.push_back({f.filter, f.filter_type});
    }
    out.spec.scan_on_push = r.scan_on_push;
    out.spec.encryption_type = r.encryption_type.empty() ? "AES256" : r.encryption_type;
    out.spec.kms_key = r.kms_key;
    return out;
  }

  // Whether the destination has the repository: the ECR API for ECR, the tag list otherwise.
  asio::awaitable<std::expected<bool, std::string>> destination_has_repository(registry::Copier& c, const Endpoint& ep,
                                                                               RegistryKey dest, std::string repo) {
    auto self = shared_from_this();
    if (auto e = ecr_of(dest)) {
      if (!e->error.empty()) co_return std::unexpected(e->error);
      auto r = co_await e->api->describe_repository(repo);
      if (!r) co_return std::unexpected(r.error().to_string());
      co_return r->has_value();
    }
    auto exists = co_await repository_exists(c, ep, repo);
    if (!exists) co_return std::unexpected(exists.error().to_string());
    co_return *exists;
  }

  // The destination ECR repository before a copy: described, or created (S12, S16) when absent
  // and the policy allows it; its settings as ECR reports them. A repository Ferry creates gets
  // its Repository record, mirroring ECR, at once (it exists from CreateRepository on).
  struct EcrDestination {
    std::optional<model::Repository> settings;
    std::string denied_code, denied_message;  // set: not allowed to create it
  };
  asio::awaitable<std::expected<EcrDestination, std::string>> ecr_destination(RegistryKey dest, model::ImageSource src) {
    auto self = shared_from_this();
    auto e = ecr_of(dest);
    if (!e || !e->error.empty()) co_return std::unexpected(e ? e->error : "not an ECR registry");
    const RegistryKey src_key{src.registry_id, src.region};
    const std::string& repo = src.repository_name;
    auto described = co_await e->api->describe_repository(repo);
    if (!described) co_return std::unexpected(described.error().to_string());
    EcrDestination out;
    if (*described) {
      out.settings = repository_from_ecr(dest, **described);
      co_return out;
    }
    // Absent: creating it needs ecr:CreateRepository (S2), decided on the policy as it is now.
    auto auth = model::authorize(index, src_key, dest, repo, false);
    if (!auth.allowed) {
      out.denied_code = auth.failure_code;
      out.denied_message = auth.message;
      co_return out;
    }
    const model::RepositoryCreationTemplate* shape = index.creation_template(dest, repo);
    aws::CreateRepositoryInput in;
    in.name = repo;
    if (shape) {
      in.image_tag_mutability = shape->spec.image_tag_mutability;
      for (const auto& f : shape->spec.image_tag_mutability_exclusion_filters) {
        in.exclusion_filters.push_back({f.filter_type, f.filter});
      }
      in.encryption_type = shape->spec.encryption_type;
      in.kms_key = shape->spec.kms_key;
      for (const auto& t : shape->spec.resource_tags) in.tags.emplace_back(t.key, t.value);
    }
    const std::string template_name = shape ? shape->metadata.name : "";
    const auto repository_policy = shape ? shape->spec.repository_policy : json::value();
    const auto lifecycle_policy = shape ? shape->spec.lifecycle_policy : json::value();
    auto created = co_await e->api->create_repository(in);
    aws::Repository made;
    if (created) {
      made = std::move(*created);
    } else if (created.error().is("RepositoryAlreadyExistsException")) {  // created meanwhile: keep it
      auto again = co_await e->api->describe_repository(repo);
      if (!again || !*again) {
        co_return std::unexpected(again ? "repository " + repo + " vanished right after it existed"
                                        : again.error().to_string());
      }
      out.settings = repository_from_ecr(dest, **again);
      co_return out;
    } else {
      co_return std::unexpected(created.error().to_string());
    }
    auto document = [](const json::value& v) { return v.is_string() ? std::string(v.as_string()) : json::serialize(v); };
    if (!repository_policy.is_null()) {
      if (auto w = co_await e->api->set_repository_policy(repo, document(repository_policy)); !w) {
        co_return std::unexpected(w.error().to_string());
      }
    }
    if (!lifecycle_policy.is_null()) {
      if (auto w = co_await e->api->put_lifecycle_policy(repo, document(lifecycle_policy)); !w) {
        co_return std::unexpected(w.error().to_string());
      }
    }
    auto record = repository_from_ecr(dest, made);
    record.metadata.generation = 1;
    record.metadata.creation_timestamp = now_text();
    for (const auto& [k, v] : in.tags) record.spec.resource_tags.push_back({k, v});
    record.status.created_by = "Replication";
    record.status.created_at = record.metadata.creation_timestamp;
    record.status.source_registry = src_key;
    record.status.source_repository_name = repo;
    record.status.template_name = template_name;
    if (auto w = state.save(record); !w) {
      spdlog::error("msg=\"cannot record repository\" registry={} repository={} error=\"{}\"", key_text(dest), repo,
                    w.error());
    } else {
      created_repositories[record.metadata.name] = record;
    }
    spdlog::info("msg=\"repository created\" registry={} repository={} record={} template={} via=CreateRepository",
                 key_text(dest), repo, record.metadata.name, template_name.empty() ? "none" : template_name);
    out.settings = std::move(record);
    co_return out;
  }

  // Every tag of every repository of an ECR source that `wanted` accepts, from DescribeRepositories
  // and DescribeImages (ECR has no _catalog); the push time is ECR's imagePushedAt (S3).
  asio::awaitable<std::expected<std::vector<model::PushEvent>, std::string>> list_ecr_images(
      RegistryKey reg, std::function<bool(const std::string&)> wanted) {
    auto self = shared_from_this();
    auto e = ecr_of(reg);
    if (!e || !e->error.empty()) co_return std::unexpected(e ? e->error : "not an ECR registry");
    auto api = e->api;
    auto repos = co_await api->describe_repositories();
    if (!repos) co_return std::unexpected(repos.error().to_string());
    std::erase_if(*repos, [&](const aws::Repository& r) { return wanted && !wanted(r.name); });
    std::vector<std::vector<aws::Image>> images(repos->size());
    std::string failure;
    co_await for_each_bounded(repos->size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
      auto got = co_await api->describe_images((*repos)[i].name);
      if (got) {
        images[i] = std::move(*got);
      } else if (!got.error().is("RepositoryNotFoundException") && failure.empty()) {
        failure = got.error().to_string();
      }
    });
    if (!failure.empty()) co_return std::unexpected(failure);
    std::vector<model::PushEvent> out;
    for (std::size_t i = 0; i < repos->size(); ++i) {
      for (const auto& img : images[i]) {
        for (const auto& tag : img.tags) {
          model::PushEvent p;
          p.repository = (*repos)[i].name;
          p.tag = tag;
          p.digest = img.digest;
          p.media_type = img.manifest_media_type;
          if (img.pushed_at) p.timestamp = model::format_rfc3339(*img.pushed_at, true);
          out.push_back(std::move(p));
        }
      }
    }
    co_return out;
  }

  // ---- backfill (S17) --------------------------------------------------------------
  //
  // A ReplicationBackfill lists what its source holds in the repositories the configuration
  // sends to its destination, then hands each image the destination lacks (by digest) to the
  // ordinary copy path as an ImageReplication record with that one destination, so S2, S8, S12,
  // S13 and S16 apply exactly as to a push. Its progress (phase, and each image's outcome) is
  // kept in the store under "backfill.<name>", so a restart resumes without listing again and
  // without copying anything twice: an image's record name is fixed by the backfill.

  struct BackfillItem {
    std::string repository, tag, digest;
    char state = 'p';  // p pending, s skipped, q submitted, r replicated, f failed
  };
  struct BackfillRun {
    model::ReplicationBackfill object;
    model::ReplicationBackfillStatus status;
    std::vector<BackfillItem> items;
    bool loaded = false;  // the stored progress was read (or there was none)
    bool listed = false;
    bool active = false;  // its coroutine runs
    bool dirty = false;
    std::size_t outstanding = 0;
    std::string reported;  // the status last handed to on_backfill_status
  };
  std::map<std::string, BackfillRun> backfills;                            // by name
  std::map<std::string, std::pair<std::string, std::size_t>> backfill_of;  // record → (backfill, item)
  bool backfill_flush_armed = false;
  bool backfill_retry_armed = false;

  static std::string backfill_state_key(const std::string& name) { return "backfill." + name; }

  std::string backfill_push_id(const BackfillRun& run) const {
    const auto& md = run.object.metadata;
    return "backfill-" + md.name + (md.uid.empty() ? "" : "-" + md.uid);
  }
  std::string backfill_record_name(const BackfillRun& run, const BackfillItem& item) const {
    return model::image_replication_name(run.object.key(), item.repository, item.digest, item.tag,
                                         backfill_push_id(run));
  }

  BackfillRun* find_backfill(const std::string& name) {
    auto it = backfills.find(name);
    return it == backfills.end() ? nullptr : &it->second;
  }

  // The backfills of the current resources: new ones are added, removed ones forgotten (their
  // records go on as records; nothing in a registry is touched, S10).
  void update_backfills() {
    std::set<std::string> present;
    for (const auto& b : index.backfills()) {
      present.insert(b.metadata.name);
      auto [it, fresh] = backfills.try_emplace(b.metadata.name);
      if (!fresh && !it->second.object.metadata.uid.empty() && it->second.object.metadata.uid != b.metadata.uid) {
        it->second = BackfillRun{};  // deleted and created again under the same name: a new backfill
      }
      it->second.object = b;
    }
    for (auto it = backfills.begin(); it != backfills.end();) {
      if (present.contains(it->first)) {
        ++it;
        continue;
      }
      for (auto r = backfill_of.begin(); r != backfill_of.end();) {
        r = r->second.first == it->first ? backfill_of.erase(r) : std::next(r);
      }
      it = backfills.erase(it);
    }
    if (started) schedule_backfills();
  }

  void load_backfill(BackfillRun& run) {
    if (run.loaded) return;
    const std::string& name = run.object.metadata.name;
    auto v = state.load_state(backfill_state_key(name));
    if (!v) {
      spdlog::error("msg=\"cannot read the progress of a backfill; it waits until it can\" backfill={} error=\"{}\"",
                    name, v.error());
      retry_backfills_soon();
      return;
    }
    run.loaded = true;
    if (!*v || !(*v)->is_object()) return;
    const auto& o = (*v)->as_object();
    auto str = [&](const char* k) {
      const auto* x = o.if_contains(k);
      return x && x->is_string() ? std::string(x->as_string()) : std::string();
    };
    if (str("uid") != run.object.metadata.uid) return;  // progress of an earlier object of that name
    run.status.phase = str("phase");
    run.status.started_at = str("startedAt");
    run.status.completed_at = str("completedAt");
    run.status.message = str("message");
    if (const auto* l = o.if_contains("listed"); l && l->is_bool()) run.listed = l->as_bool();
    if (const auto* items = o.if_contains("items"); items && items->is_array()) {
      for (const auto& it : items->as_array()) {
        const auto* a = it.if_array();
        if (!a || a->size() != 4 || !std::ranges::all_of(*a, [](const json::value& x) { return x.is_string(); })) {
          continue;
        }
        BackfillItem item{std::string((*a)[0].as_string()), std::string((*a)[1].as_string()),
                          std::string((*a)[2].as_string()), (*a)[3].as_string().empty() ? 'p' : (*a)[3].as_string()[0]};
        run.items.push_back(std::move(item));
      }
    }
    // Submitted images, and pending ones whose record was written just before a crash, take
    // their state from their record; a submitted one whose record is gone was COMPLETE (only
    // those are swept).
    for (std::size_t i = 0; i < run.items.size(); ++i) {
      auto& item = run.items[i];
      if (item.state != 'p' && item.state != 'q') continue;
      const std::string rec = backfill_record_name(run, item);
      auto r = records.find(rec);
      if (r == records.end()) {
        if (item.state == 'q') item.state = 'r';
        continue;
      }
      const auto* st = status_of(r->second, run.object.spec.destination);
      if (st && st->status == model::kComplete) {
        item.state = 'r';
      } else if (st && st->status == model::kFailed) {
        item.state = 'f';
      } else {
        item.state = 'q';
        backfill_of[rec] = {run.object.metadata.name, i};
        ++run.outstanding;
      }
    }
    recount(run);
    spdlog::info("msg=\"backfill progress read\" backfill={} phase={} images={} outstanding={}", name,
                 run.status.phase.empty() ? "new" : run.status.phase, run.items.size(), run.outstanding);
  }

  void retry_backfills_soon() {
    if (backfill_retry_armed) return;
    backfill_retry_armed = true;
    auto t = std::make_shared<asio::steady_timer>(io, std::chrono::seconds(2));
    t->async_wait([self = shared_from_this(), t](boost::system::error_code ec) {
      self->backfill_retry_armed = false;
      if (!ec && !self->stopped) self->schedule_backfills();
    });
  }

  static void recount(BackfillRun& run) {
    model::BackfillImages n;
    n.total = static_cast<std::int64_t>(run.items.size());
    for (const auto& i : run.items) {
      if (i.state == 's') ++n.skipped;
      if (i.state == 'r') ++n.replicated;
      if (i.state == 'f') ++n.failed;
    }
    run.status.images = n;
  }

  void persist_backfill(BackfillRun& run) {
    json::array items;
    items.reserve(run.items.size());
    for (const auto& i : run.items) items.push_back(json::array{i.repository, i.tag, i.digest, std::string(1, i.state)});
    json::object o{{"uid", run.object.metadata.uid},   {"phase", run.status.phase},
                   {"startedAt", run.status.started_at}, {"completedAt", run.status.completed_at},
                   {"message", run.status.message},     {"listed", run.listed},
                   {"items", std::move(items)}};
    if (auto w = state.save_state(backfill_state_key(run.object.metadata.name), o); !w) {
      spdlog::error("msg=\"cannot persist backfill progress\" backfill={} error=\"{}\"", run.object.metadata.name,
                    w.error());
      return;
    }
    run.dirty = false;
    report_backfill(run);
  }

  void report_backfill(BackfillRun& run) {
    const std::string now = json::serialize(model::status_to_json(run.status));
    if (now == run.reported) return;
    run.reported = now;
    if (opts.on_backfill_status) {
      model::ReplicationBackfill b = run.object;
      b.status = run.status;
      opts.on_backfill_status(b);
    }
  }

  // Image outcomes are written at most once a second; phase changes at once.
  void save_backfills_soon() {
    if (backfill_flush_armed) return;
    backfill_flush_armed = true;
    auto t = std::make_shared<asio::steady_timer>(io, std::chrono::seconds(1));
    t->async_wait([self = shared_from_this(), t](boost::system::error_code) {
      self->backfill_flush_armed = false;
      for (auto& [name, run] : self->backfills) {
        if (run.dirty) self->persist_backfill(run);
      }
    });
  }

  void set_backfill_phase(BackfillRun& run, std::string_view phase, std::string message) {
    run.status.phase = phase;
    run.status.message = std::move(message);
    if (model::backfill_finished(phase)) run.status.completed_at = now_text();
    if (run.status.started_at.empty()) run.status.started_at = now_text();
    spdlog::info("msg=\"backfill {}\" backfill={} total={} replicated={} skipped={} failed={} message=\"{}\"", phase,
                 run.object.metadata.name, run.status.images.total, run.status.images.replicated,
                 run.status.images.skipped, run.status.images.failed, run.status.message);
    persist_backfill(run);
  }

  void backfill_item_done(const std::string& record, std::string_view status) {
    auto b = backfill_of.find(record);
    if (b == backfill_of.end()) return;
    auto [name, i] = b->second;
    backfill_of.erase(b);
    BackfillRun* run = find_backfill(name);
    if (!run || i >= run->items.size()) return;
    run->items[i].state = status == model::kComplete ? 'r' : 'f';
    if (run->outstanding > 0) --run->outstanding;
    recount(*run);
    run->dirty = true;
    save_backfills_soon();
  }

  // Starts, holds back or ends each unfinished backfill; runs whenever the set or a phase changes.
  void schedule_backfills() {
    if (!started || stopped) return;
    std::vector<model::ReplicationBackfill> objects;
    std::map<std::string, std::string> phases;
    for (auto& [name, run] : backfills) {
      load_backfill(run);
      if (!run.loaded) continue;
      objects.push_back(run.object);
      phases[name] = run.status.phase;
    }
    auto admission = model::admit_backfills(objects, phases);
    for (auto& [name, run] : backfills) {
      if (!run.loaded || run.active || model::backfill_finished(run.status.phase)) continue;
      if (run.object.spec.stop) {
        set_backfill_phase(run, model::kBackfillStopped, "stopped (spec.stop) before it started copying");
        continue;
      }
      const auto a = admission[name];
      if (a.decision == model::BackfillAdmission::Decision::Refuse) {
        set_backfill_phase(run, model::kBackfillFailed, a.message);
        continue;
      }
      if (auto problem = model::backfill_problem(index, run.object)) {
        set_backfill_phase(run, model::kBackfillFailed, *problem);
        continue;
      }
      if (a.decision == model::BackfillAdmission::Decision::Wait) {
        if (run.status.phase != model::kBackfillPreparing || run.status.message != a.message) {
          set_backfill_phase(run, model::kBackfillPreparing, a.message);
        }
        continue;
      }
      run.active = true;
      asio::co_spawn(io, run_backfill(name), [self = shared_from_this(), name](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            spdlog::error("msg=\"backfill crashed\" backfill={} error=\"{}\"", name, ex.what());
          }
        }
        if (auto* run = self->find_backfill(name)) run->active = false;
        if (!self->stopped) asio::post(self->io, [self] { self->schedule_backfills(); });
      });
    }
  }

  asio::awaitable<void> pause(std::chrono::milliseconds d) {
    asio::steady_timer t(io, d);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }

  asio::awaitable<void> run_backfill(std::string name) {
    auto self = shared_from_this();
    BackfillRun* run = find_backfill(name);
    if (!run) co_return;
    if (!run->listed) {
      set_backfill_phase(*run, model::kBackfillPreparing, "listing the source");
      std::chrono::milliseconds wait{1000};
      for (;;) {
        auto listed = co_await list_backfill(name);
        run = find_backfill(name);
        if (!run || stopped) co_return;
        if (listed) break;
        if (run->object.spec.stop) {
          set_backfill_phase(*run, model::kBackfillStopped, "stopped (spec.stop) while listing the source");
          co_return;
        }
        run->status.message = "cannot list the source yet, retrying: " + listed.error();
        report_backfill(*run);
        spdlog::warn("msg=\"backfill listing failed\" backfill={} retry_in_ms={} error=\"{}\"", name, wait.count(),
                     listed.error());
        co_await pause(wait);
        wait = std::min<std::chrono::milliseconds>(wait * 2, std::chrono::seconds(60));
        run = find_backfill(name);
        if (!run || stopped) co_return;
      }
      run->listed = true;
    }
    if (run->status.phase != model::kBackfillStopping) set_backfill_phase(*run, model::kBackfillInProgress, "");
    const std::size_t width = 2 * backfill_slots();
    std::size_t next = 0;
    for (;;) {
      run = find_backfill(name);
      if (!run || stopped) co_return;
      if (run->object.spec.stop && run->status.phase != model::kBackfillStopping) {
        set_backfill_phase(*run, model::kBackfillStopping, "stopping (spec.stop): images in flight finish");
      }
      const bool stopping = run->status.phase == model::kBackfillStopping;
      const bool failing = model::backfill_failing(run->status.images);
      bool blocked = false;
      while (!stopping && !failing && run->outstanding < width) {
        while (next < run->items.size() && run->items[next].state != 'p') ++next;
        if (next >= run->items.size()) break;
        const std::size_t i = next++;
        auto submitted = co_await submit_backfill_item(name, i);
        run = find_backfill(name);
        if (!run || stopped) co_return;
        if (!submitted) {
          next = i;  // still pending: tried again after a pause
          run->status.message = "waiting to check the destination: " + submitted.error();
          report_backfill(*run);
          blocked = true;
          break;
        }
      }
      const bool pending = std::ranges::any_of(run->items, [](const BackfillItem& x) { return x.state == 'p'; });
      if (run->outstanding == 0 && (stopping || failing || !pending)) {
        const auto& n = run->status.images;
        if (stopping) {
          const auto left = std::ranges::count_if(run->items, [](const BackfillItem& x) { return x.state == 'p'; });
          set_backfill_phase(*run, model::kBackfillStopped,
                             "stopped (spec.stop); " + std::to_string(left) + " images not started");
        } else if (failing) {
          set_backfill_phase(*run, model::kBackfillFailed,
                             std::to_string(n.failed) + " of " + std::to_string(n.replicated + n.failed) +
                                 " images tried failed (at least half of at least 100); see their ImageReplication "
                                 "records");
        } else {
          set_backfill_phase(*run, model::kBackfillComplete,
                             std::to_string(n.replicated) + " replicated, " + std::to_string(n.skipped) +
                                 " already at the destination, " + std::to_string(n.failed) + " failed");
        }
        co_return;
      }
      if (!blocked && run->status.message.starts_with("waiting to check")) {
        run->status.message.clear();
        report_backfill(*run);
      }
      // Image counts reach the store and the status through the once-a-second flush, not from here.
      co_await pause(blocked ? std::chrono::milliseconds(2000) : std::chrono::milliseconds(100));
    }
  }

  // Every tag of every repository in scope, with its digest. An error: the listing is not
  // complete (a repository or tag that vanished meanwhile is not an error, just not there).
  asio::awaitable<std::expected<void, std::string>> list_backfill(std::string name) {
    auto self = shared_from_this();
    BackfillRun* run = find_backfill(name);
    if (!run) co_return std::expected<void, std::string>{};
    const model::ReplicationBackfill object = run->object;
    auto ep_it = endpoints.find(key_text(object.key()));
    if (ep_it == endpoints.end()) co_return std::unexpected("no Registry for the source " + key_text(object.key()));
    if (!ep_it->second.error.empty()) co_return std::unexpected(ep_it->second.error);
    const Endpoint ep = ep_it->second;
    if (ecr_of(object.key())) {  // ECR has no _catalog: its API lists repositories and images
      auto listed = co_await list_ecr_images(
          object.key(), [&](const std::string& r) { return model::backfill_covers_repository(index, object, r); });
      if (!listed) co_return std::unexpected(listed.error());
      std::vector<BackfillItem> items;
      for (auto& e : *listed) {
        if (model::backfill_covers(index, object, e.repository, e.tag)) items.push_back({e.repository, e.tag, e.digest, 'p'});
      }
      keep_listing(name, std::move(items), "DescribeImages");
      co_return std::expected<void, std::string>{};
    }
    auto copier_now = copier;
    auto& client = copier_now->client(ep.host, registry::Side::Source);
    auto repos = co_await client.catalog(1000);
    if (!repos) co_return std::unexpected("catalog of " + ep.host + ": " + repos.error().to_string());
    std::erase_if(*repos, [&](const std::string& r) { return !model::backfill_covers_repository(index, object, r); });
    std::vector<std::vector<std::string>> tag_lists(repos->size());
    std::string failure;
    co_await for_each_bounded(repos->size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
      auto tags = co_await client.tags((*repos)[i], 1000);
      if (tags) {
        tag_lists[i] = std::move(*tags);
      } else if (tags.error().http_status != 404 && failure.empty()) {
        failure = "tags of " + (*repos)[i] + ": " + tags.error().to_string();
      }
    });
    if (!failure.empty()) co_return std::unexpected(failure);
    std::vector<BackfillItem> items;
    for (std::size_t i = 0; i < repos->size(); ++i) {
      for (auto& tag : tag_lists[i]) {
        if (model::backfill_covers(index, object, (*repos)[i], tag)) items.push_back({(*repos)[i], std::move(tag), "", 'p'});
      }
    }
    co_await for_each_bounded(items.size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
      auto head = co_await client.head_manifest(items[i].repository, items[i].tag);
      if (head && *head) {
        items[i].digest = (*head)->digest;
      } else if (!head && failure.empty()) {
        failure = items[i].repository + ":" + items[i].tag + ": " + head.error().to_string();
      }
    });
    if (!failure.empty()) co_return std::unexpected(failure);
    std::erase_if(items, [](const BackfillItem& x) { return x.digest.empty(); });
    keep_listing(name, std::move(items), "catalog");
    co_return std::expected<void, std::string>{};
  }

  // The listing becomes the backfill's kept list (if the backfill still exists).
  void keep_listing(const std::string& name, std::vector<BackfillItem> items, std::string_view via) {
    BackfillRun* run = find_backfill(name);
    if (!run) return;
    run->items = std::move(items);
    run->listed = true;
    recount(*run);
    spdlog::info("msg=\"backfill listed\" backfill={} images={} via={}", name, run->items.size(), via);
    persist_backfill(*run);
  }

  // One image: skipped when the destination's tag already names its digest, else recorded and
  // queued like a push to that one destination. An error leaves it pending.
  asio::awaitable<std::expected<void, std::string>> submit_backfill_item(std::string name, std::size_t i) {
    auto self = shared_from_this();
    BackfillRun* run = find_backfill(name);
    if (!run || i >= run->items.size()) co_return std::expected<void, std::string>{};
    const BackfillItem item = run->items[i];
    const RegistryKey dest = run->object.spec.destination;
    const RegistryKey src = run->object.key();
    const std::string rec_name = backfill_record_name(*run, item);
    auto ep = endpoints.find(key_text(dest));
    if (!records.contains(rec_name) && ep != endpoints.end() && ep->second.error.empty() &&
        model::region_enabled(index, dest)) {
      if (auto ready = co_await ecr_ready(dest); !ready) co_return std::unexpected(ready.error());
      run = find_backfill(name);
      if (!run || i >= run->items.size()) co_return std::expected<void, std::string>{};
      ep = endpoints.find(key_text(dest));
      if (ep == endpoints.end()) co_return std::unexpected("no Registry for " + key_text(dest));
      auto copier_now = copier;
      // "Already there": the tag names the same digest at the destination (a digest there under
      // another tag is not: the tag is still copied, its blobs skipped by the copier).
      auto head = co_await copier_now->client(ep->second.host, registry::Side::Destination)
                      .head_manifest(item.repository, item.tag.empty() ? item.digest : item.tag);
      if (!head) co_return std::unexpected(head.error().to_string());
      run = find_backfill(name);
      if (!run || i >= run->items.size()) co_return std::expected<void, std::string>{};
      if (*head && (*head)->digest == item.digest) {
        run->items[i].state = 's';
        recount(*run);
        run->dirty = true;
        save_backfills_soon();
        co_return std::expected<void, std::string>{};
      }
    }
    // A destination that is missing, disabled or unusable still gets the record: the copy path
    // fails it with the same code a push would get.
    if (!records.contains(rec_name)) {
      model::PushEvent push;
      push.id = backfill_push_id(*run);
      push.repository = item.repository;
      push.digest = item.digest;
      push.tag = item.tag;
      push.timestamp = now_text();
      auto record = model::new_image_replication(src, push, {dest}, now_text());
      if (auto w = state.save(record); !w) co_return std::unexpected("cannot write the record: " + w.error());
      spdlog::info("msg=\"backfill image recorded\" backfill={} record={} repository={} digest={} tag={}", name,
                   record.metadata.name, item.repository, item.digest, item.tag);
      records.emplace(rec_name, std::move(record));
    }
    run->items[i].state = 'q';
    ++run->outstanding;
    backfill_of[rec_name] = {name, i};
    run->dirty = true;
    save_backfills_soon();
    const auto* st = status_of(records.at(rec_name), dest);
    if (st && st->status == model::kInProgress) {
      enqueue(rec_name, dest);
    } else {
      backfill_item_done(rec_name, st ? st->status : model::kFailed);
    }
    co_return std::expected<void, std::string>{};
  }

  std::map<std::string, model::ReplicationBackfillStatus> backfill_statuses() const {
    std::map<std::string, model::ReplicationBackfillStatus> out;
    for (const auto& [name, run] : backfills) out[name] = run.status;
    return out;
  }

  // ---- lifecycle -----------------------------------------------------------------

  void start() {
    std::vector<std::string> problems;
    for (auto& r : state.repositories(&problems)) created_repositories[r.metadata.name] = std::move(r);
    for (auto& r : state.image_replications(&problems)) records[r.metadata.name] = std::move(r);
    for (const auto& p : problems) spdlog::error("msg=\"unreadable record skipped\" problem=\"{}\"", p);
    for (const auto& [name, rec] : records) {
      for (const auto& st : rec.status.replication_statuses) {
        if (!st.authorized_by.empty()) self_writes.insert(self_write_key({st.registry_id, st.region}, rec.spec.source));
      }
    }
    started = true;
    for (auto& [name, run] : backfills) load_backfill(run);  // before resuming: their records queue low
    std::size_t resumed = 0;
    for (const auto& [name, rec] : records) {
      for (const auto& s : rec.status.replication_statuses) {
        if (s.status == model::kInProgress) {
          enqueue(name, {s.registry_id, s.region});
          ++resumed;
        }
      }
    }
    spdlog::info("msg=\"engine started\" records={} resumed_destinations={}", records.size(), resumed);
    pump();
    schedule_backfills();
    asio::co_spawn(io, sweep_loop(), asio::detached);
  }

  asio::awaitable<void> sweep_loop() {
    auto self = shared_from_this();
    while (!stopped) {
      asio::steady_timer t(io, std::min<std::chrono::seconds>(opts.completed_ttl, std::chrono::seconds(60)));
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      if (stopped) break;
      const auto now = std::chrono::system_clock::now();
      std::vector<std::string> expired;
      for (const auto& [name, rec] : records) {
        if (!model::finished(rec)) continue;
        bool all_complete = true;
        std::optional<model::Timestamp> last;
        for (const auto& s : rec.status.replication_statuses) {
          all_complete = all_complete && s.status == model::kComplete;
          auto t2 = model::parse_rfc3339(s.completed_at);
          if (t2 && (!last || *t2 > *last)) last = t2;
        }
        if (all_complete && last && now - *last > opts.completed_ttl) expired.push_back(name);
      }
      for (const auto& name : expired) {
        // Only Ferry's record goes; nothing in any registry is deleted (S10).
        auto it = records.find(name);
        if (it == records.end() || !state.remove_image_replication(name)) continue;
        for (const auto& st : it->second.status.replication_statuses) {
          self_writes.erase(self_write_key({st.registry_id, st.region}, it->second.spec.source));
        }
        records.erase(it);
      }
    }
  }
};

ReplicationEngine::ReplicationEngine(asio::io_context& io, store::RecordStore& state, EngineOptions options)
    : impl_(std::make_shared<Impl>(io, state, std::move(options))) {}

ReplicationEngine::~ReplicationEngine() { impl_->stopped = true; }

void ReplicationEngine::set_resources(std::vector<model::Resource> resources) {
  impl_->set_resources(std::move(resources));
}

void ReplicationEngine::start() { impl_->start(); }

void ReplicationEngine::stop() {
  impl_->stopped = true;
  ++impl_->poll_generation;
  impl_->save_all_known();
  for (auto& [name, run] : impl_->backfills) {
    if (run.dirty) impl_->persist_backfill(run);
  }
}

std::size_t ReplicationEngine::running() const { return impl_->running; }

std::optional<NotificationOutcome> ReplicationEngine::authenticate_notification(
    const std::string& registry_name, const std::string& authorization) const {
  return impl_->authenticate_notification(registry_name, authorization);
}

NotificationOutcome ReplicationEngine::on_notification(const std::string& registry_name,
                                                       const std::string& content_type,
                                                       const std::string& authorization, const std::string& body) {
  return impl_->on_notification(registry_name, content_type, authorization, body);
}

std::map<std::string, model::ReplicationBackfillStatus> ReplicationEngine::backfills() const {
  return impl_->backfill_statuses();
}

std::vector<model::ImageReplication> ReplicationEngine::records() const {
  std::vector<model::ImageReplication> out;
  for (const auto& [name, rec] : impl_->records) out.push_back(rec);
  return out;
}

std::map<model::RegistryKey, std::string> ReplicationEngine::effective_since(const model::RegistryKey& source) const {
  std::lock_guard lock(impl_->effective_mutex);
  auto it = impl_->effective_snapshot.find(source);
  return it == impl_->effective_snapshot.end() ? std::map<model::RegistryKey, std::string>{} : it->second;
}

std::string ReplicationEngine::metrics_text() const {
  prometheus::TextSerializer s;
  return s.Serialize(impl_->metrics->Collect());
}

}  // namespace ferry::reconcilers
