// Events and statuses the engine's work produces in cluster mode; each is an API round trip, so
// callers run them off the engine's thread.
#pragma once

#include <string>

#include "kube/api.hpp"
#include "reconcilers/model/resources.hpp"

namespace ferry::operator_ {

// A Warning Event "ReplicationFailed" on the record, naming the destination and why.
void record_failed_event(kube::Api& api, const std::string& instance,
                         const model::ImageReplication& record,
                         const model::ReplicationStatus& failed);

// The backfill's progress as its status (S17), written only when changed and only to the object
// of the same uid; an Event (BackfillInProgress, BackfillCompleted, ...) when its phase changes.
void write_backfill_status(kube::Api& api, const std::string& instance,
                           const model::ReplicationBackfill& backfill);

}  // namespace ferry::operator_
