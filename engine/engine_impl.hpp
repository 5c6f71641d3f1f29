// The replication engine's inside, shared by its parts (one file each, named after what it does):
//   configuration.cpp  resources → endpoints, the copier's table of registries
//   ledger.cpp         what is kept besides records: S3 effective times, polling baselines, own
//   writes intake.cpp         notifications and pushes → durable ImageReplication records
//   executor.cpp       the queue, copies in flight, finishing and retrying a destination
//   destination.cpp    one destination's copy: authorization (S2, S8), S12, S13, the copier
//   poller.cpp         the polling safety net
//   ecr.cpp            Amazon ECR registries (SPEC §7): API clients, tokens, CreateRepository
//   ecr_events.cpp     their push events from SQS (EventBridge "ECR Image Action")
//   backfill_progress.cpp, backfill_run.cpp   ReplicationBackfill (S17)
//   referrers.cpp      referrers (signatures, SBOMs) follow their image (S19)
//   lifecycle.cpp      start, the TTL sweep
// Not part of the engine's interface: only engine/*.cpp include it.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <deque>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "aws/credentials.hpp"
#include "aws/ecr.hpp"
#include "aws/sqs.hpp"
#include "engine/metrics.hpp"
#include "engine/replication_engine.hpp"
#include "engine/store_writer.hpp"
#include "reconcilers/model/clock.hpp"
#include "reconcilers/model/events.hpp"
#include "reconcilers/model/replication.hpp"
#include "reconcilers/model/rules.hpp"
#include "registry/copier.hpp"

namespace ferry::engine {

namespace asio = boost::asio;
namespace json = boost::json;
using model::RegistryKey;

inline std::string now_text() {
  return model::format_rfc3339(std::chrono::system_clock::now(), true);
}
inline std::string key_text(const RegistryKey& k) { return model::to_string(k); }

// How Ferry reaches one Registry: host for references, connection settings, or why it can't.
struct Endpoint {
  std::string host;
  registry::RegistryConfig config;  // config.limiter: its S21 byte and request limits
  std::size_t max_copies = 0;        // S21 maxConcurrentCopies; 0: no limit
  std::string error;                 // e.g. a missing credentials Secret
};

// A failed attempt: what to show, and whether waiting can make it pass (refused, reset, timeout,
// 408, 429, 5xx). A transient failure keeps its destination catching up after the attempt cycle
// (S20); any other fails the destination once the cycle is spent.
struct Failure {
  std::string text;
  bool transient = true;
};
inline Failure failure(const registry::Error& e) { return {e.to_string(), e.retryable()}; }
inline Failure failure(const aws::Error& e) { return {e.to_string(), e.retryable}; }

constexpr std::size_t kPollWidth = 16;  // requests in flight per poll or listing

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

struct ReplicationEngine::Impl : std::enable_shared_from_this<ReplicationEngine::Impl> {
  Impl(asio::io_context& io_, store::RecordStore& state_, EngineOptions opts_)
      : io(io_),
        state(state_),
        opts(std::move(opts_)),
        m(std::make_shared<EngineMetrics>()),
        replications(m->replications),
        pushes(m->pushes),
        bytes(m->bytes),
        in_flight_gauge(m->in_flight) {}

  asio::io_context& io;
  store::RecordStore& state;
  EngineOptions opts;
  // AWS APIs (ECR, STS, SQS, container credentials) on the engine's executor: one client per TLS
  // setting (a Registry's tls.caSecretRef and tls.insecureSkipVerify apply to every endpoint Ferry
  // calls for it), kept for the engine's life so that their pools survive reloads; by
  // tls_signature().
  std::map<std::string, std::unique_ptr<registry::HttpClient>> aws_http;
  registry::HttpClient& aws_http_for(const registry::TlsOptions& tls);
  static std::string tls_signature(const registry::TlsOptions& tls);
  std::vector<model::Resource> resources;
  model::ResourceIndex index;
  std::map<std::string, Endpoint> endpoints;  // by registry key text
  // S21: one limiter per registry with limits, kept across reloads (its buckets stay full or
  // empty as they were), by registry key text.
  std::map<std::string, std::shared_ptr<registry::Limiter>> limiters;
  std::shared_ptr<registry::Copier> copier;

  std::map<std::string, model::ImageReplication> records;
  std::map<std::string, model::Repository> created_repositories;  // records Ferry wrote, by name
  std::map<std::string, std::map<std::string, std::string>>
      effective;  // source → destination → since
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
  static std::string self_write_key(const RegistryKey& dest, const model::ImageSource& src);
  // "registry|repository|tag|digest" → the record of that image with the latest pushedAt. A push
  // of the same image at or before that moment, to destinations that record covers, is the push
  // it recorded: the registry's state a poll saw at poll time already held it, so its
  // notification arriving later is not a second push. Rebuilt from the records at start.
  std::map<std::string, std::string> latest_recorded;
  static std::string image_key(const RegistryKey& source, const std::string& repository,
                               const std::string& tag, const std::string& digest);
  // The same for pushes whose record is being written (the record lives in handle_push's frame).
  std::multimap<std::string, const model::ImageReplication*> recording;
  void note_recorded(const model::ImageReplication& r);
  void forget_recorded(const model::ImageReplication& r);
  bool recorded_already(const RegistryKey& src, const model::PushEvent& push,
                        const std::vector<RegistryKey>& dests) const;
  std::deque<std::pair<std::string, RegistryKey>> queue;  // pushes
  std::deque<std::pair<std::string, RegistryKey>>
      backfill_queue;            // backfilled images, after pushes
  std::set<std::string> queued;  // "record|destination" queued or running
  // "record|destination" from its first enqueue until finish(): queued, running or pausing
  // before its next attempt (ferry_copies, ferry_oldest_copy_seconds).
  std::map<std::string, std::chrono::steady_clock::time_point> unfinished;
  std::map<std::string, int> attempts;
  // "record|destination" authorized while the destination repository did not exist: the copy
  // creates it, and its Repository record is written once it exists (S12).
  std::set<std::string> creating_repository;
  std::size_t running = 0;
  std::map<std::string, std::size_t> copies_at;  // copies running per registry key text (S21)
  std::size_t backfill_running = 0;  // of `running`; at most backfill_slots(), so pushes find room
  std::uint64_t poll_generation = 0;
  bool started = false;
  bool stopped = false;

  std::shared_ptr<EngineMetrics> m;  // shared with copiers' callbacks, which may outlive Impl
  prometheus::Family<prometheus::Counter>& replications;
  prometheus::Family<prometheus::Counter>& pushes;
  prometheus::Counter& bytes;
  prometheus::Gauge& in_flight_gauge;
  // The Registry resource's name for a key (metric labels), or the key text when none is known.
  std::string registry_label(const RegistryKey& key) const;
  // ferry_copies and ferry_oldest_copy_seconds, from the queue as it is now.
  void update_copy_gauges();
  asio::awaitable<void> gauge_loop();

  // ---- configuration.cpp, ledger.cpp (S3 effective times) -----------------------

  Endpoint endpoint_for(const model::Registry& r);
  // The TLS settings of a Registry (verification, its CA Secret's bundle); an error when the CA
  // Secret is missing or holds no bundle.
  std::expected<registry::TlsOptions, std::string> tls_for(const model::Registry& r) const;
  void set_resources(std::vector<model::Resource> next);
  void update_effective_times();
  void retry_effective_times();
  std::string effective_since(const RegistryKey& src, const RegistryKey& dst) const;

  // ---- intake.cpp, ledger.cpp (polling baselines, own writes) -------------------

  bool is_self_write(const RegistryKey& reg, const model::PushEvent& push) const;
  Known* known_for(const RegistryKey& reg);
  bool polled(const RegistryKey& reg) const;
  void note_known(const RegistryKey& reg, const std::string& repo, const std::string& tag,
                  const std::string& digest);
  void save_known(const RegistryKey& reg);

  // Baselines changed by notifications are written at most once a second: a lost update only
  // means the next poll sees that tag again and finds its record (a duplicate, not a copy).
  bool known_flush_armed = false;
  void save_known_soon();
  void save_all_known();
  // A new ImageReplication with its first conditions (Reconciling: every destination IN_PROGRESS).
  model::ImageReplication new_record(const RegistryKey& src, const model::PushEvent& push,
                                     const std::vector<RegistryKey>& dests) const;
  // Records one push (durable before it returns); an error: not recorded, the caller reports failure.
  asio::awaitable<std::expected<void, std::string>> handle_push(RegistryKey src, model::PushEvent push,
                                                                const char* via);
  std::optional<NotificationOutcome> authenticate_notification(
      const std::string& registry_name, const std::string& authorization) const;
  asio::awaitable<NotificationOutcome> on_notification(std::string registry_name,
                                                       std::string content_type,
                                                       std::string authorization, std::string body);
  // Called from on_notification's frame, which owns the arguments.
  asio::awaitable<NotificationOutcome> take_notification(const std::string& registry_name,
                                                         const std::string& content_type,
                                                         const std::string& authorization,
                                                         const std::string& body);
  void count_notification(const std::string& registry_name, int status) const;

  // ---- executor.cpp, destination.cpp ---------------------------------------------

  void enqueue(const std::string& record, const RegistryKey& dest);
  // Calls fn on the engine's thread after d unless a call armed by the same flag is pending, so
  // what it does happens at most once per d (batched writes, a failed read tried again).
  void once_after(bool Impl::*armed, std::chrono::milliseconds d, void (Impl::*fn)());

  // Pushes first; backfilled images take what is left, at most half the copies at once (S17, S21).
  std::size_t backfill_slots() const { return std::max<std::size_t>(1, opts.max_parallel / 2); }

  void pump();
  // S21: the source and destination registry keys of a queued copy, and whether both have room.
  std::pair<std::string, std::string> copy_registries(const std::string& record,
                                                      const RegistryKey& dest) const;
  bool has_room(const std::pair<std::string, std::string>& regs) const;
  model::ReplicationStatus* status_of(model::ImageReplication& rec, const RegistryKey& dest);
  const model::Repository* repository_settings(const RegistryKey& dest,
                                               const std::string& repo) const;
  // Writes through `writer` (engine/store_writer.hpp): off the engine's thread in cluster mode,
  // in order per object; a failed write is tried again every second (save_unsaved).
  StoreWriter writer{io.get_executor(), opts.store_executor};
  // Cancelled when a copy or a write ends: what drained() waits on.
  asio::steady_timer drain_signal{io, std::chrono::steady_clock::time_point::max()};
  void save_record(const model::ImageReplication& rec);
  // A repository replication created: found by repository_settings() at once, its record written
  // as soon as the store takes it (S12).
  void save_repository(model::Repository repo);
  // Writes that failed, tried again every second (save_unsaved) without repeating the copies.
  std::set<std::string> unsaved_records;
  std::map<std::string, model::Repository> unsaved_repositories;  // by record name
  bool unsaved_armed = false;
  void save_unsaved();
  void finish(const std::string& name, const RegistryKey& dest, std::string_view status,
              std::string failure_code, std::string message, bool tagged);
  asio::awaitable<registry::Result<bool>> repository_exists(registry::Copier& c, const Endpoint& ep,
                                                            const std::string& repo);
  asio::awaitable<void> replicate(std::string name, RegistryKey dest);
  asio::awaitable<void> retry_or_fail(std::string name, RegistryKey dest, Failure why);
  std::size_t retry_now(const std::string& name, const std::string& requested_at);

  // ---- poller.cpp: the polling safety net -----------------------------------------

  void restart_polling();
  asio::awaitable<void> poll_loop(std::uint64_t gen, RegistryKey reg,
                                  std::chrono::milliseconds interval);
  asio::awaitable<void> poll_once(RegistryKey reg);

  // ---- ecr.cpp: Amazon ECR registries (SPEC §7) ----------------------------------

  struct Ecr {
    std::shared_ptr<aws::CredentialsProvider> creds;
    std::shared_ptr<aws::EcrClient> api;
    std::shared_ptr<aws::SqsClient> sqs;  // spec.ecr.eventsQueueUrl set: push events arrive there
    std::string error;      // why it cannot be used (e.g. no credentials)
    std::string signature;  // what it was built from: a token survives reloads while this holds
    std::optional<aws::AuthorizationToken> token;
  };
  std::map<std::string, std::shared_ptr<Ecr>> ecr;  // by registry key text

  std::shared_ptr<Ecr> ecr_of(const RegistryKey& k) const;
  void update_ecr_registries();
  void update_copier();
  asio::awaitable<std::expected<void, Failure>> ecr_ready(RegistryKey k);
  void ecr_unauthorized(const RegistryKey& k);
  // ecr_events.cpp: EventBridge "ECR Image Action" events from the registry's SQS queue.
  asio::awaitable<void> sqs_loop(std::uint64_t gen, RegistryKey reg);
  asio::awaitable<void> take_ecr_event(RegistryKey reg, aws::SqsMessage message);
  static model::Repository repository_from_ecr(const RegistryKey& dest, const aws::Repository& r);
  asio::awaitable<std::expected<bool, Failure>> destination_has_repository(registry::Copier& c,
                                                                           const Endpoint& ep,
                                                                           RegistryKey dest,
                                                                           std::string repo);

  // The destination ECR repository before a copy: described, or created (S12, S16) when absent
  // and the policy allows it; its settings as ECR reports them. A repository Ferry creates gets
  // its Repository record, mirroring ECR, at once (it exists from CreateRepository on).
  struct EcrDestination {
    std::optional<model::Repository> settings;
    std::string denied_code, denied_message;  // set: not allowed to create it
  };
  asio::awaitable<std::expected<EcrDestination, Failure>> ecr_destination(RegistryKey dest,
                                                                          model::ImageSource src);
  asio::awaitable<std::expected<std::vector<model::PushEvent>, std::string>> list_ecr_images(
      RegistryKey reg, std::function<bool(const std::string&)> wanted);

  // ---- backfill_progress.cpp, backfill_run.cpp (S17) -----------------------------

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
  std::map<std::string, BackfillRun> backfills;  // by name
  std::map<std::string, std::pair<std::string, std::size_t>>
      backfill_of;  // record → (backfill, item)
  bool backfill_flush_armed = false;
  bool backfill_retry_armed = false;
  static std::string backfill_state_key(const std::string& name) { return "backfill." + name; }

  std::string backfill_push_id(const BackfillRun& run) const;
  std::string backfill_record_name(const BackfillRun& run, const BackfillItem& item) const;
  BackfillRun* find_backfill(const std::string& name);
  void update_backfills();
  void load_backfill(BackfillRun& run);
  void retry_backfills_soon();
  static void recount(BackfillRun& run);
  void persist_backfill(BackfillRun& run);
  void report_backfill(BackfillRun& run);
  void save_backfills_soon();
  void flush_backfills();
  void set_backfill_phase(BackfillRun& run, std::string_view phase, std::string message);
  void backfill_item_done(const std::string& record, std::string_view status);
  void schedule_backfills();
  asio::awaitable<void> pause(std::chrono::milliseconds d);
  asio::awaitable<void> run_backfill(std::string name);
  asio::awaitable<std::expected<void, std::string>> list_backfill(std::string name);
  void keep_listing(const std::string& name, std::vector<BackfillItem> items, std::string_view via);
  asio::awaitable<std::expected<void, std::string>> submit_backfill_item(std::string name,
                                                                         std::size_t i);
  std::map<std::string, model::ReplicationBackfillStatus> backfill_statuses() const;

  // ---- referrers.cpp (S19) --------------------------------------------------------
  // Registries that answered the referrers API (by key text): polling looks there for referrers
  // pushed by digest alone, which no tag list shows.
  std::set<std::string> referrers_api;
  // The referrers of a finished record's image, to the destinations it reached; or of an image
  // at `source` to `dests` (a backfilled image found already there).
  void follow_referrers_soon(const std::string& record);
  void follow_referrers_soon(RegistryKey source, std::string repository, std::string digest,
                             std::vector<RegistryKey> dests);
  asio::awaitable<void> follow_referrers(std::string record);
  asio::awaitable<void> follow_referrers_of(RegistryKey source, std::string repository,
                                            std::string digest, std::vector<RegistryKey> dests);
  asio::awaitable<void> recheck_referrers(RegistryKey source);
  bool has_record_for(const RegistryKey& source, const model::PushEvent& push) const;

  // ---- lifecycle.cpp ---------------------------------------------------------------

  void start();
  asio::awaitable<void> sweep_loop();
};

}  // namespace ferry::engine
