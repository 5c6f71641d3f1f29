// What `ferry operator` tells users about the engine's work through the API: an Event for each
// failed destination, a ReplicationBackfill's progress in its status and an Event per phase.
#include "operator/record_events.hpp"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <cctype>
#include <chrono>
#include <optional>

#include "reconcilers/model/clock.hpp"
#include "reconcilers/model/serialize.hpp"
#include "reconcilers/status.hpp"

namespace ferry::operator_ {

void record_failed_event(kube::Api& api, const std::string& id, const model::ImageReplication& rec,
                         const model::ReplicationStatus& st) {
  kube::EventSpec spec{"Warning", "ReplicationFailed", "Replicate",
                       "destination " + st.registry_id + "/" + st.region + ": " + st.failure_code +
                           ": " + st.message};
  auto ev = kube::make_event(model::to_json(rec), spec, id,
                             model::format_micro_time(std::chrono::system_clock::now()));
  if (auto r = api.create(kube::events(), kube::namespace_of(ev), ev); !r) {
    spdlog::warn("msg=\"event not recorded\" record={} error=\"{}\"", rec.metadata.name, r.error().to_string());
  }
}

void write_backfill_status(kube::Api& api, const std::string& id, const model::ReplicationBackfill& b) {
  const std::string now = model::format_rfc3339(std::chrono::system_clock::now(), true);
  std::string old_phase;
  boost::json::value written;
  auto res = api.update_status(kube::replication_backfills(), "", b.metadata.name,
                               [&](const boost::json::value& current) -> std::optional<boost::json::value> {
                                 if (kube::uid_of(current) != b.metadata.uid) return std::nullopt;
                                 const auto stored = reconcilers::stored_status(current);
                                 const auto* phase = stored.if_contains("phase");
                                 old_phase = phase && phase->is_string() ? std::string(phase->as_string()) : "";
                                 auto next = reconcilers::backfill_status(current, b.status, now);
                                 if (next == stored) return std::nullopt;
                                 written = current;
                                 return boost::json::value(std::move(next));
                               });
  if (!res) {
    if (!res.error().not_found()) {
      spdlog::warn("msg=\"backfill status not written\" backfill={} error=\"{}\"", b.metadata.name,
                   res.error().to_string());
    }
    return;
  }
  if (!*res || old_phase == b.status.phase) return;
  std::string reason = "Backfill";
  bool upper = true;
  for (char c : b.status.phase) {  // IN_PROGRESS → BackfillInProgress
    if (c == '_') {
      upper = true;
      continue;
    }
    reason += upper ? c : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    upper = false;
  }
  const auto& n = b.status.images;
  kube::EventSpec spec{b.status.phase == model::kBackfillFailed ? "Warning" : "Normal", reason, "Backfill",
                       b.status.phase + ": " + std::to_string(n.replicated) + " replicated, " +
                           std::to_string(n.skipped) + " skipped, " + std::to_string(n.failed) + " failed of " +
                           std::to_string(n.total) + (b.status.message.empty() ? "" : "; " + b.status.message)};
  auto ev = kube::make_event(written, spec, id, model::format_micro_time(std::chrono::system_clock::now()));
  if (auto r = api.create(kube::events(), kube::namespace_of(ev), ev); !r) {
    spdlog::warn("msg=\"event not recorded\" backfill={} error=\"{}\"", b.metadata.name, r.error().to_string());
  }
}

}  // namespace ferry::operator_
