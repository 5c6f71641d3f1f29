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
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <spdlog/spdlog.h>

#include "reconcilers/model/clock.hpp"
#include "reconcilers/model/events.hpp"
#include "reconcilers/model/replication.hpp"
#include "reconcilers/model/rules.hpp"
#include "reconcilers/model/secret_data.hpp"
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

  std::deque<std::pair<std::string, RegistryKey>> queue;
  std::set<std::string> queued;  // "record|destination" queued or running
  std::map<std::string, int> attempts;
  // "record|destination" authorized while the destination repository did not exist: the copy
  // creates it, and its Repository record is written once it exists (S12).
  std::set<std::string> creating_repository;
  std::size_t running = 0;
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
    if (r.spec.credentials_secret_ref) {
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
    endpoints.clear();
    std::map<std::string, registry::RegistryConfig> by_host;
    for (const auto& r : index.registries()) {
      auto e = endpoint_for(r);
      if (!e.error.empty()) {
        spdlog::error("msg=\"registry unusable\" registry={} error=\"{}\"", r.metadata.name, e.error);
      }
      by_host[e.host] = e.config;
      endpoints[key_text(r.key())] = std::move(e);
    }
    copier = std::make_shared<registry::Copier>(
        io.get_executor(),
        [by_host](const std::string& host, registry::Side) {
          auto it = by_host.find(host);
          if (it != by_host.end()) return it->second;
          registry::RegistryConfig c;
          c.host = host;
          return c;
        });
    update_effective_times();
    restart_polling();
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
      return pushed && since && *pushed < *since;  // S3: before this destination applied
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
    queue.emplace_back(record, dest);
    in_flight_gauge.Set(static_cast<double>(queued.size()));
    if (started) pump();
  }

  void pump() {
    while (!stopped && running < opts.max_parallel && !queue.empty()) {
      auto [name, dest] = queue.front();
      queue.pop_front();
      ++running;
      asio::co_spawn(io, replicate(name, dest),
                     [self = shared_from_this(), name, dest](std::exception_ptr e) {
                       --self->running;
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
        auto e = co_await repository_exists(*copier_now, *dst_ep_opt, src.repository_name);
        if (!e) {
          co_await retry_or_fail(name, dest, e.error().to_string());
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

    // S13: an IMMUTABLE destination keeps its tag; the image goes over by digest.
    bool write_tag = !src.image_tag.empty();
    std::string note;
    if (write_tag) {
      const model::Repository* settings = repository_settings(dest, src.repository_name);
      if (settings && settings->spec.image_tag_mutability == "IMMUTABLE") {
        auto head = co_await copier_now->client(dst_ep.host, registry::Side::Destination)
                        .head_manifest(src.repository_name, src.image_tag);
        if (!head) {
          co_await retry_or_fail(name, dest, head.error().to_string());
          co_return;
        }
        const std::string existing = *head ? (*head)->digest : std::string();
        if (!model::may_write_tag(settings, existing, src.image_digest)) {
          write_tag = false;
          note = "tag " + src.image_tag + " already points to " + existing + " in IMMUTABLE repository " +
                 src.repository_name + "; image copied by digest without the tag";
        }
      }
    }

    // S12: a repository this copy creates gets its Repository record once it exists, right after
    // the first manifest is written there; a copy that fails before leaves none behind. Resumed
    // after a restart, the destination says whether this copy still creates it.
    bool record_repository = false;
    if (!repository_settings(dest, src.repository_name)) {
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
      auto repo = model::new_replicated_repository(dest, src.repository_name, src_key, now_text());
      if (auto w = state.save(repo); !w) {
        record_error = w.error();
        spdlog::error("msg=\"cannot record repository\" registry={} repository={} error=\"{}\"", key_text(dest),
                      src.repository_name, record_error);
        return;
      }
      spdlog::info("msg=\"repository created\" registry={} repository={} record={}", key_text(dest),
                   src.repository_name, repo.metadata.name);
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
    auto& client = copier_now->client(ep.host, registry::Side::Source);
    auto repos = co_await client.catalog(1000);
    if (!repos) {
      spdlog::warn("msg=\"poll failed\" registry={} error=\"{}\"", key_text(reg), repos.error().to_string());
      co_return;
    }
    // Tags of every repository, then each tag's digest: HEADs in parallel (loopback registries
    // answer a HEAD in milliseconds, so a sequential scan of 10,000 tags would take half a minute).
    std::vector<std::vector<std::string>> tag_lists(repos->size());
    co_await for_each_bounded(repos->size(), kPollWidth, [&](std::size_t i) -> asio::awaitable<void> {
      auto tags = co_await client.tags((*repos)[i], 1000);
      if (tags) tag_lists[i] = std::move(*tags);  // else deleted meanwhile, or no tags yet
    });
    std::vector<model::PushEvent> found;
    std::size_t seen = 0;
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
      e.timestamp = now;
      ++new_pushes;
      if (auto res = handle_push(reg, e, "poll"); !res) {
        spdlog::error("msg=\"cannot record polled push\" registry={} repository={} error=\"{}\"", key_text(reg),
                      e.repository, res.error());
      }
    }
    save_known(reg);
    spdlog::info("msg=\"poll complete\" registry={} repositories={} tags={} new={} seconds={:.3f}", key_text(reg),
                 repos->size(), found.size(), new_pushes,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
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
