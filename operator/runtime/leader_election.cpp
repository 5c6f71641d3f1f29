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
  return json::object{{"apiVersion", "coordination.k8s.io/v1"},
                      {"kind", "Lease"},
                      {"metadata", {{"name", c.name}, {"namespace", c.namespace_}}},
                      {"spec",
                       {{"holderIdentity", r.holder},
                        {"leaseDurationSeconds", r.duration_seconds},
                        {"acquireTime", r.acquire_time},
                        {"renewTime", r.renew_time},
                        {"leaseTransitions", r.transitions}}}};
}

// One try: read the lease, decide, write. True when we hold the lease afterwards.
bool try_acquire_or_renew(kube::Api& api, const LeaderElectionConfig& c, LeaseObserver& observer) {
  const auto t = kube::leases();
  auto current = api.get(t, c.namespace_, c.name);
  if (!current && !current.error().not_found()) {
    spdlog::warn("msg=\"reading the leader lease failed\" lease={}/{} error=\"{}\"", c.namespace_,
                 c.name, current.error().to_string());
    return false;
  }
  std::optional<LeaseRecord> rec;
  if (current) rec = lease_record(*current);
  const auto action = observer.decide(rec, Clock::now());
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
      LeaseRecord next = *rec;
      if (action == LeaseAction::Acquire) {
        next.holder = c.identity;
        next.acquire_time = now;
        next.transitions += 1;
      }
      next.duration_seconds = duration;
      next.renew_time = now;
      json::value object = lease_object(c, next);
      object.as_object()["metadata"].as_object()["resourceVersion"] =
          kube::resource_version_of(*current);
      auto res = api.replace(t, c.namespace_, c.name, object);
      if (!res && !res.error().conflict()) {
        spdlog::warn("msg=\"writing the leader lease failed\" lease={}/{} error=\"{}\"",
                     c.namespace_, c.name, res.error().to_string());
      }
      return res.has_value();
    }
  }
  return false;
}

// Sleeps `d` or until stop; false when stopped.
bool sleep_for(std::chrono::milliseconds d, std::stop_token stop) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  return !cv.wait_for(lock, stop, d, [] { return false; }) && !stop.stop_requested();
}

}  // namespace

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
  auto current = api.get(kube::leases(), config.namespace_, config.name);
  if (current) {
    auto rec = lease_record(*current);
    if (rec && rec->holder == config.identity) {
      rec->holder.clear();
      rec->duration_seconds = 1;
      rec->renew_time = micro_now();
      json::value object = lease_object(config, *rec);
      object.as_object()["metadata"].as_object()["resourceVersion"] =
          kube::resource_version_of(*current);
      if (api.replace(kube::leases(), config.namespace_, config.name, object)) {
        spdlog::info("msg=\"released leadership\" lease={}/{}", config.namespace_, config.name);
      }
    }
  }
  return true;
}

}  // namespace ferry::runtime
