// One engine per held shard, and the sharded notification route; see shard_engines.hpp.
#include "operator/shard_engines.hpp"

#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <set>

#include "net/http.hpp"
#include "operator/notification_route.hpp"
#include "reconcilers/model/events.hpp"
#include "reconcilers/model/shard.hpp"

namespace ferry::operator_ {

namespace {

constexpr const char* kText = "text/plain; charset=utf-8";
constexpr const char* kForwarded = "forwarded";  // query parameters of a forwarded notification:
constexpr const char* kCount = "shards";         // the shard, and the sender's shard count

}  // namespace

store::KubeStoreOptions shard_store_options(store::KubeStoreOptions o, std::uint32_t shard,
                                            std::uint32_t shards) {
  const std::string i = std::to_string(shard), n = std::to_string(shards);
  o.record_labels[kShardLabel] = i;
  o.record_labels[kShardsLabel] = n;
  o.record_selector = std::string(kShardLabel) + "=" + i + "," + kShardsLabel + "=" + n;
  o.state_prefix = "shard-" + i + "-of-" + n + ".";
  return o;
}

ShardEngines::ShardEngines(boost::asio::io_context& engine_io, kube::Api& api,
                           store::KubeStoreOptions store, engine::EngineOptions engine,
                           const runtime::ShardLeases& leases)
    : io_(engine_io),
      api_(api),
      store_options_(std::move(store)),
      engine_options_(std::move(engine)),
      leases_(leases),
      shards_(leases.config().shards),
      // Forwarding is one hop inside the cluster: a holder that does not answer within seconds
      // gets the notification again from the registry's retry instead.
      http_(std::make_unique<net::HttpClient>(engine_io.get_executor(), net::TlsOptions{},
                                              net::HttpOptions{std::chrono::milliseconds(2000),
                                                               std::chrono::milliseconds(10'000), 8})) {}

ShardEngines::~ShardEngines() = default;

void ShardEngines::set_resources(std::vector<model::Resource> resources) {
  index_ = model::ResourceIndex(resources);
  resources_ = std::move(resources);
  {
    std::lock_guard lock(mutex_);
    for (auto& [i, s] : shards_by_id_) s.engine->set_resources(resources_);
  }
  if (have_resources_) return;
  have_resources_ = true;
  auto pending = std::move(pending_);
  for (auto i : pending) start(i);
}

void ShardEngines::acquire(std::uint32_t shard) {
  if (stopped_ || engine_of(shard)) return;
  if (!have_resources_) {
    pending_.push_back(shard);
    return;
  }
  start(shard);
}

void ShardEngines::start(std::uint32_t shard) {
  Shard s;
  s.store = std::make_unique<store::KubeStore>(api_, shard_store_options(store_options_, shard, shards_));
  engine::EngineOptions o = engine_options_;
  o.owns = [shard, n = shards_](const model::RegistryKey& source, const std::string& repository) {
    return model::shard_of(source, repository, n) == shard;
  };
  o.run_backfills = shard == 0;  // one engine runs every backfill; its records are shard 0's
  s.engine = std::make_unique<engine::ReplicationEngine>(io_, *s.store, std::move(o));
  s.engine->set_resources(resources_);
  spdlog::info("msg=\"shard engine starting\" shard={} shards={}", shard, shards_);
  s.engine->start();  // loads the shard's records, resumes the unfinished ones
  std::lock_guard lock(mutex_);
  shards_by_id_.emplace(shard, std::move(s));
}

engine::ReplicationEngine* ShardEngines::engine_of(std::uint32_t shard) const {
  std::lock_guard lock(mutex_);
  auto it = shards_by_id_.find(shard);
  return it == shards_by_id_.end() ? nullptr : it->second.engine.get();
}

void ShardEngines::stop() {
  stopped_ = true;
  std::lock_guard lock(mutex_);
  for (auto& [i, s] : shards_by_id_) s.engine->stop();
}

boost::asio::awaitable<bool> ShardEngines::drained(std::chrono::steady_clock::time_point deadline) {
  std::vector<engine::ReplicationEngine*> engines;
  {
    std::lock_guard lock(mutex_);
    for (auto& [i, s] : shards_by_id_) engines.push_back(s.engine.get());
  }
  bool all = true;
  for (auto* e : engines) {
    const bool done = co_await e->drained(deadline);
    all = all && done;
  }
  co_return all;
}

std::size_t ShardEngines::running() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& [i, s] : shards_by_id_) n += s.engine->running();
  return n;
}

void ShardEngines::retry(const std::string& record, const std::string& requested_at) {
  std::lock_guard lock(mutex_);
  for (auto& [i, s] : shards_by_id_) s.engine->retry(record, requested_at);  // the holder's acts
}

std::map<model::RegistryKey, std::string> ShardEngines::effective_since(const model::RegistryKey& source) const {
  // Each shard keeps its own times; the status shows the earliest this replica knows.
  std::map<model::RegistryKey, std::string> out;
  std::lock_guard lock(mutex_);
  for (const auto& [i, s] : shards_by_id_) {
    for (auto& [dest, at] : s.engine->effective_since(source)) {
      auto [it, fresh] = out.emplace(dest, at);
      if (!fresh && at < it->second) it->second = at;  // RFC 3339 UTC: ordered as text
    }
  }
  return out;
}

std::string ShardEngines::metrics_text() const {
  std::vector<prometheus::MetricFamily> merged;
  std::map<std::string, std::size_t> at;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [i, s] : shards_by_id_) {
      for (auto& family : s.engine->metric_families()) {
        for (auto& metric : family.metric) metric.label.push_back({"shard", std::to_string(i)});
        auto [it, fresh] = at.emplace(family.name, merged.size());
        if (fresh) {
          merged.push_back(std::move(family));
        } else {
          auto& into = merged[it->second].metric;
          into.insert(into.end(), std::make_move_iterator(family.metric.begin()),
                      std::make_move_iterator(family.metric.end()));
        }
      }
    }
  }
  return prometheus::TextSerializer().Serialize(merged);
}

std::optional<HttpResponse> ShardEngines::check(const HttpRequest& request) const {
  // Before the body is read, whichever shards it holds pushes of (SPEC §6).
  return check_notification(request, [this](const std::string& registry, const std::string& authorization) {
    if (!have_resources_) return std::optional(engine::NotificationOutcome{503, "starting; retry later"});
    return engine::authenticate_notification(index_, registry, authorization);
  });
}

boost::asio::awaitable<HttpResponse> ShardEngines::serve(HttpRequest request) {
  const std::string name = notification_registry(request);
  // The Registry may have gone while the body was read.
  if (auto refused = engine::authenticate_notification(index_, name, request.authorization))
    co_return HttpResponse{refused->status, kText, refused->message + "\n"};
  const model::RegistryKey source = index_.registry_named(name)->key();
  if (!model::is_notification_content_type(request.content_type))
    co_return HttpResponse{415, kText, "content type \"" + request.content_type + "\" is not a registry notification\n"};
  auto events = model::parse_notification(request.body);
  if (!events) co_return HttpResponse{400, kText, events.error() + "\n"};
  std::set<std::uint32_t> shards;
  auto forwarded = request.query.find(kForwarded);
  if (forwarded != request.query.end()) {
    // Sent here for one shard by the replica the registry told; the others are not ours to take.
    // Only under the same count: while --shards changes, shard i of one count is not shard i of
    // the other, and a push taken under the wrong one would be skipped by every engine.
    if (auto count = request.query.find(kCount); count == request.query.end() || count->second != std::to_string(shards_))
      co_return HttpResponse{503, kText, "this replica runs " + std::to_string(shards_) +
                                             " shards and the forwarding one another count (--shards is changing); retry later\n"};
    shards.insert(static_cast<std::uint32_t>(std::strtoul(forwarded->second.c_str(), nullptr, 10)));
  } else {
    for (const auto& e : *events) shards.insert(model::shard_of(source, e.repository, shards_));
  }
  const std::size_t pushes = events->size();
  for (auto shard : shards) {
    HttpResponse out;
    if (auto* e = engine_of(shard); e && !stopped_) {
      HttpRequest copy = request;  // each engine records its shard's pushes and skips the rest
      out = co_await serve_notification(*e, std::move(copy));
    } else if (forwarded != request.query.end()) {
      out = HttpResponse{503, kText, "shard " + std::to_string(shard) + " is not held here (any more); retry later\n"};
    } else {
      out = co_await forward(shard, request);
    }
    if (out.status != 200) co_return out;
  }
  co_return HttpResponse{200, kText, std::to_string(pushes) + " manifest pushes\n"};
}

boost::asio::awaitable<HttpResponse> ShardEngines::forward(std::uint32_t shard, const HttpRequest& request) {
  const std::string holder = leases_.holder_url(shard);
  if (holder.empty()) {
    spdlog::warn("msg=\"notification for a shard without a holder\" shard={}", shard);
    co_return HttpResponse{503, kText, "shard " + std::to_string(shard) + " has no holder now; retry later\n"};
  }
  auto url = net::Url::parse(holder + request.path + "?" + kForwarded + "=" + std::to_string(shard) + "&" + kCount +
                             "=" + std::to_string(shards_));
  if (!url) co_return HttpResponse{503, kText, "bad notification address of shard " + std::to_string(shard) + "\n"};
  net::HttpRequest out;
  out.method = "POST";
  out.url = std::move(*url);
  out.headers = {{"Content-Type", request.content_type}};
  if (!request.authorization.empty()) out.headers.emplace_back("Authorization", request.authorization);
  out.body = request.body;
  auto opened = co_await http_->open(std::move(out));
  if (!opened) {
    spdlog::warn("msg=\"cannot forward a notification\" shard={} holder={} error=\"{}\"", shard, holder,
                 opened.error().to_string());
    co_return HttpResponse{503, kText, "the holder of shard " + std::to_string(shard) + " did not answer; retry later\n"};
  }
  auto body = co_await opened->read_all(64 * 1024);
  co_return HttpResponse{static_cast<unsigned>(opened->status()), kText, body ? *body : std::string()};
}

}  // namespace ferry::operator_
