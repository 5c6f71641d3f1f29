// Status writes and the Events that mark a change of readiness.
#include "operator/controllers/status_writer.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <optional>
#include <utility>

#include "reconcilers/model/clock.hpp"
#include "reconcilers/status.hpp"

namespace ferry::operator_ {

namespace json = boost::json;

namespace {

std::pair<std::string, std::string> ready_of(const json::object& status) {
  if (const auto* conds = status.if_contains("conditions"); conds && conds->is_array()) {
    for (const auto& c : conds->as_array()) {
      if (c.is_object() && c.as_object().contains("type") && c.at("type").is_string() &&
          c.at("type").as_string() == "Ready") {
        auto str = [&](const char* k) {
          const auto* v = c.as_object().if_contains(k);
          return v && v->is_string() ? std::string(v->as_string()) : std::string();
        };
        return {str("status"), str("reason")};
      }
    }
  }
  return {"", ""};
}

void emit_event(kube::Api& api, const std::string& instance, const json::value& regarding,
              const std::string& ready, const std::string& reason, const json::object& status) {
  std::string note;
  if (const auto* conds = status.if_contains("conditions"); conds && conds->is_array()) {
    for (const auto& c : conds->as_array()) {
      const auto* o = c.if_object();
      if (!o) continue;
      const auto* type = o->if_contains("type");
      const auto* message = o->if_contains("message");
      if (type && type->is_string() && type->as_string() == "Ready" && message &&
          message->is_string()) {
        note = std::string(message->as_string());
      }
    }
  }
  kube::EventSpec spec{ready == "True" ? "Normal" : "Warning",
                       reason.empty() ? "Unknown" : reason, "Reconcile", note};
  auto ev = kube::make_event(regarding, spec, instance,
                             model::format_micro_time(std::chrono::system_clock::now()));
  auto ns = kube::namespace_of(ev);
  if (auto r = api.create(kube::events(), ns, ev); !r) {
    spdlog::debug("msg=\"event not recorded\" error=\"{}\"", r.error().to_string());
  }
}

}  // namespace

std::string now_string() { return model::format_rfc3339(std::chrono::system_clock::now()); }

runtime::Outcome StatusWriter::write(const kube::ResourceType& t, const json::value& seen,
                                   const std::string& name,
                                   const std::function<json::object(const json::value&)>& compute) {
  const auto seen_generation = kube::generation_of(seen);
  const auto old_ready = ready_of(reconcilers::stored_status(seen));
  json::object written;
  auto res = api.update_status(t, "", name,
                               [&](const json::value& current) -> std::optional<json::value> {
                                 if (kube::generation_of(current) != seen_generation)
                                   return std::nullopt;  // a newer spec is queued
                                 auto next = compute(current);
                                 if (next == reconcilers::stored_status(current))
                                   return std::nullopt;  // only when changed
                                 written = next;
                                 return json::value(std::move(next));
                               });
  if (!res) {
    if (res.error().not_found()) return {};
    spdlog::warn("msg=\"status write failed\" resource={} name={} error=\"{}\"", t.plural, name,
                 res.error().to_string());
    return runtime::Outcome::retry();
  }
  if (*res) {
    auto new_ready = ready_of(written);
    spdlog::info("msg=\"status updated\" resource={} name={} ready={} reason={}", t.plural, name,
                 new_ready.first, new_ready.second);
    if (new_ready != old_ready) emit_event(api, instance, seen, new_ready.first, new_ready.second, written);
  }
  return {};
}

runtime::Outcome StatusWriter::write_invalid(const kube::ResourceType& t, const json::value& obj,
                                           const std::string& kind, const std::string& name,
                                           const model::FieldErrors& errors) {
  spdlog::info("msg=\"invalid resource\" resource={} name={} error=\"{}\"", t.plural, name,
               reconcilers::validation_message(kind, name, errors));
  const auto now = now_string();
  return write(t, obj, name, [&](const json::value& current) {
    return reconcilers::invalid_object_status(current, kind, name, errors, now);
  });
}

}  // namespace ferry::operator_
