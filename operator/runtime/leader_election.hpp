// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection: the decision
// is a pure function of the lease read and a clock (tested with a fake one); the loop does the I/O.
#pragma once

#include <boost/json/value.hpp>
#include <chrono>
#include <expected>
#include <functional>
#include <map>
#include <optional>
#include <stop_token>
#include <string>

#include "kube/api.hpp"
#include "operator/runtime/work_queue.hpp"

namespace ferry::runtime {

struct LeaseRecord {
  std::string holder;
  int duration_seconds = 0;
  std::string acquire_time;
  std::string renew_time;
  int transitions = 0;
  bool operator==(const LeaseRecord&) const = default;
};
std::optional<LeaseRecord> lease_record(const boost::json::value& lease);

enum class LeaseAction {
  Create,   // no Lease exists: create it holding it
  Renew,    // we hold it: write a new renewTime
  Acquire,  // the holder's lease expired (or was released): take it over
  Wait,     // someone else holds a live lease
};

struct LeaderElectionTiming {
  std::chrono::seconds lease_duration{15};
  std::chrono::seconds renew_deadline{10};
  std::chrono::seconds retry_period{2};
};

// Tracks when the lease record last changed by local clock (not the holder's timestamps, so
// clock skew between nodes does not matter), as client-go does.
class LeaseObserver {
 public:
  LeaseObserver(std::string identity, LeaderElectionTiming timing)
      : identity_(std::move(identity)), timing_(timing) {}
  LeaseAction decide(const std::optional<LeaseRecord>& current, Clock::time_point now);
  const std::string& identity() const { return identity_; }
  // Since when, by local clock, the record has been as it is now.
  Clock::time_point changed_at() const { return observed_at_; }

 private:
  std::string identity_;
  LeaderElectionTiming timing_;
  std::optional<LeaseRecord> observed_;
  Clock::time_point observed_at_{};
};

struct LeaderElectionConfig {
  std::string namespace_;
  std::string name;
  std::string identity;
  LeaderElectionTiming timing;
  // Written on the Lease with each write of ours (a shard holder's notification address).
  std::map<std::string, std::string> annotations;
};

// A Lease as read: its record (none: no Lease exists) and the resourceVersion a write carries.
struct LeaseState {
  std::optional<LeaseRecord> record;
  std::string resource_version;
  std::map<std::string, std::string> annotations;
};
// Reads the Lease config.name; an error is not "absent".
std::expected<LeaseState, std::string> read_lease(kube::Api& api, const LeaderElectionConfig& config);
// Writes Create, Renew or Acquire for config.identity over `current` (read just before); true when
// the API took it (a conflict: someone else wrote first).
bool write_lease(kube::Api& api, const LeaderElectionConfig& config, LeaseAction action,
                 const LeaseState& current);
// Gives the Lease up when config.identity holds it, so that a successor need not wait for it to
// expire; true when it was released.
bool release_lease(kube::Api& api, const LeaderElectionConfig& config);

// Sleeps `d` or until `stop`; false when stopped.
bool sleep_for(std::chrono::milliseconds d, std::stop_token stop);

// Blocks until leadership is acquired (true) or `stop` is requested (false).
bool acquire_leadership(kube::Api& api, const LeaderElectionConfig& config, std::stop_token stop);
// Renews every retry period; returns when `stop` is requested (true; the lease is released) or
// when the lease could not be renewed for the renew deadline (false: leadership lost).
bool hold_leadership(kube::Api& api, const LeaderElectionConfig& config, std::stop_token stop);

}  // namespace ferry::runtime
