// Lease-based leader election; see leader_election.hpp.
#include "operator/runtime/leader_election.hpp"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <condition_variable>
#include <mutex>

#include "reconcilers/model/clock.hpp"

namespace ferry::runtime {

namespace json = boost::json;

std::optional<LeaseRecord> lease_record(const json::value& lease) {
  const auto* o = lease.if_object();
  if (!o) return std::nullopt;
  LeaseRecord r;
  const auto* spec = o->if_contains("spec");
  if (!spec || !spec->is_object()) return r;
  const auto& s = spec->as_object();
  auto str = [&](const char* k) {
    const auto* v = s.if_contains(k);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  auto num = [&](const char* k) {
    const auto* v = s.if_contains(k);
    return v && v->is_int64() ? static_cast<int>(v->as_int64()) : 0;
  };
  r.holder = str("holderIdentity");
  r.acquire_time = str("acquireTime");
  r.renew_time = str("renewTime");
  r.duration_seconds = num("leaseDurationSeconds");
  r.transitions = num("leaseTransitions");
  return r;
}

LeaseAction LeaseObserver::decide(const std::optional<LeaseRecord>& current,
                                  Clock::time_point now) {
  if (!current) {
    observed_.reset();
    return LeaseAction::Create;
  }
  if (!observed_ || !(*observed_ == *current)) {
    observed_ = current;
    observed_at_ = now;
  }
  if (current->holder == identity_) return LeaseAction::Renew;
  if (current->holder.empty()) return LeaseAction::Acquire;
  const auto duration = current->duration_seconds > 0
                            ? std::chrono::seconds(current->duration_seconds)
                            : timing_.lease_duration;
  if (observed_at_ + duration <= now) return LeaseAction::Acquire;
  return LeaseAction::Wait;
}

namespace {

std::string micro_now() { return model::format_micro_time(std::chrono::system_clock::now()); }

json::value lease_object(const LeaderElectionConfig& c, const LeaseRecord& r) {
  json::object metadata{{"name", c.name}, {"namespace", c.namespace_}};
  if (!c.annotations.empty()) {
    json::object a;
    for (const auto& [k, v] : c.annotations) a[k] = v;
    metadata["annotations"] = std::move(a);
  }
  return json::object{{"apiVersion", "coordination.k8s.io/v1"},
                      {"kind", "Lease"},
                      {"metadata", std::move(metadata)},
                      {"spec",
                       {{"holderIdentity", r.holder},
                        {"leaseDurationSeconds", r.duration_seconds},
                        {"acquireTime", r.acquire_time},
                        {"renewTime", r.renew_time},
                        {"leaseTransitions", r.transitions}}}};
}


// One try: read the lease, decide, write. True when we hold the lease afterwards.
bool try_acquire_or_renew(kube::Api& api, const LeaderElectionConfig& c, LeaseObserver& observer) {
  auto current = read_lease(api, c);
  if (!current) {
    spdlog::warn("msg=\"reading the leader lease failed\" lease={}/{} error=\"{}\"", c.namespace_,
                 c.name, current.error());
    return false;
  }
  const auto action = observer.decide(current->record, Clock::now());
  return action != LeaseAction::Wait && write_lease(api, c, action, *current);
}

}  // namespace

bool sleep_for(std::chrono::milliseconds d, std::stop_token stop) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  return !cv.wait_for(lock, stop, d, [] { return false; }) && !stop.stop_requested();
}

std::expected<LeaseState, std::string> read_lease(kube::Api& api, const LeaderElectionConfig& c) {
  auto current = api.get(kube::leases(), c.namespace_, c.name);
  if (!current) {
    if (current.error().not_found()) return LeaseState{};
    return std::unexpected(current.error().to_string());
  }
  LeaseState state{lease_record(*current), kube::resource_version_of(*current), {}};
  if (const auto* md = current->as_object().if_contains("metadata"); md && md->is_object()) {
    if (const auto* a = md->as_object().if_contains("annotations"); a && a->is_object()) {
      for (const auto& [k, v] : a->as_object())
        if (v.is_string()) state.annotations[std::string(k)] = std::string(v.as_string());
    }
  }
  return state;
}

bool write_lease(kube::Api& api, const LeaderElectionConfig& c, LeaseAction action,
                 const LeaseState& current) {
  const auto t = kube::leases();
  const auto now = micro_now();
  const int duration = static_cast<int>(c.timing.lease_duration.count());
  switch (action) {
    case LeaseAction::Wait:
      return false;
    case LeaseAction::Create: {
      auto res = api.create(t, c.namespace_, lease_object(c, {c.identity, duration, now, now, 0}));
      return res.has_value();
    }
    case LeaseAction::Renew:
    case LeaseAction::Acquire: {
      if (!current.record) return false;
      LeaseRecord next = *current.record;
      if (action == LeaseAction::Acquire) {
        next.holder = c.identity;
        next.acquire_time = now;
        next.transitions += 1;
      }
      next.duration_seconds = duration;
      next.renew_time = now;
      json::value object = lease_object(c, next);
      object.as_object()["metadata"].as_object()["resourceVersion"] = current.resource_version;
      auto res = api.replace(t, c.namespace_, c.name, object);
      if (!res && !res.error().conflict()) {
        spdlog::warn("msg=\"writing a lease failed\" lease={}/{} error=\"{}\"", c.namespace_, c.name,
                     res.error().to_string());
      }
      return res.has_value();
    }
  }
  return false;
}

bool release_lease(kube::Api& api, const LeaderElectionConfig& c) {
  auto current = read_lease(api, c);
  if (!current || !current->record || current->record->holder != c.identity) return false;
  auto rec = *current->record;
  rec.holder.clear();
  rec.duration_seconds = 1;
  rec.renew_time = micro_now();
  LeaderElectionConfig released = c;
  released.annotations.clear();  // nobody's address any more
  json::value object = lease_object(released, rec);
  object.as_object()["metadata"].as_object()["resourceVersion"] = current->resource_version;
  return api.replace(kube::leases(), c.namespace_, c.name, object).has_value();
}

bool acquire_leadership(kube::Api& api, const LeaderElectionConfig& config, std::stop_token stop) {
  LeaseObserver observer(config.identity, config.timing);
  spdlog::info("msg=\"waiting for leadership\" lease={}/{} identity={}", config.namespace_,
               config.name, config.identity);
  while (!stop.stop_requested()) {
    if (try_acquire_or_renew(api, config, observer)) {
      spdlog::info("msg=\"acquired leadership\" lease={}/{} identity={}", config.namespace_,
                   config.name, config.identity);
      return true;
    }
    if (!sleep_for(config.timing.retry_period, stop)) break;
  }
  return false;
}

bool hold_leadership(kube::Api& api, const LeaderElectionConfig& config, std::stop_token stop) {
  LeaseObserver observer(config.identity, config.timing);
  auto last_renew = Clock::now();
  while (sleep_for(config.timing.retry_period, stop)) {
    if (try_acquire_or_renew(api, config, observer)) {
      last_renew = Clock::now();
    } else if (Clock::now() - last_renew > config.timing.renew_deadline) {
      spdlog::error(
          "msg=\"leadership lost: lease not renewed within the renew deadline\" lease={}/{}",
          config.namespace_, config.name);
      return false;
    }
  }
  // Release so that a successor need not wait for the lease to expire.
  if (release_lease(api, config)) {
    spdlog::info("msg=\"released leadership\" lease={}/{}", config.namespace_, config.name);
  }
  return true;
}

}  // namespace ferry::runtime
