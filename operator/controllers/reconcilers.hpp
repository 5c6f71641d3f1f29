// One reconciler per kind: each reads its object from the informers' cache, validates it, does
// what the kind asks (a probe, a status computed from the catalog) and writes the status; the
// Outcome tells the controller what next.
#pragma once

#include <string>

#include "operator/controllers/context.hpp"
#include "operator/controllers/status_writer.hpp"
#include "operator/runtime/controller.hpp"

namespace ferry::operator_ {

runtime::Outcome reconcile_registry(Context& ctx, StatusWriter& status, const std::string& name);
runtime::Outcome reconcile_policy(Context& ctx, StatusWriter& status, const std::string& name);
runtime::Outcome reconcile_template(Context& ctx, StatusWriter& status, const std::string& name);
// A valid ReplicationBackfill's status is the engine's (it writes its progress); only an invalid
// one is answered here.
runtime::Outcome reconcile_backfill(Context& ctx, StatusWriter& status, const std::string& name);
runtime::Outcome reconcile_config(Context& ctx, StatusWriter& status, const std::string& name);

}  // namespace ferry::operator_
