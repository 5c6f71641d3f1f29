// Kubernetes-shaped JSON for the kinds Ferry writes; empty optional fields are left out.
#include "reconcilers/model/serialize.hpp"

#include <boost/json.hpp>

namespace ferry::model {
namespace json = boost::json;

namespace {

void put(json::object& o, std::string_view key, const std::string& v) {
  if (!v.empty()) o[key] = v;
}

json::object key_json(const RegistryKey& k) {
  return {{"region", k.region}, {"registryId", k.registry_id}};
}

json::object envelope(std::string_view kind, const ObjectMeta& m) {
  return {{"apiVersion", kApiVersion}, {"kind", kind}, {"metadata", to_json(m)}};
}

}  // namespace

json::object to_json(const ObjectMeta& m) {
  json::object o;
  o["name"] = m.name;
  put(o, "namespace", m.namespace_);
  put(o, "uid", m.uid);
  put(o, "resourceVersion", m.resource_version);
  if (m.generation) o["generation"] = m.generation;
  put(o, "creationTimestamp", m.creation_timestamp);
  if (!m.labels.empty()) {
    json::object l;
    for (const auto& [k, v] : m.labels) l[k] = v;
    o["labels"] = std::move(l);
  }
  if (!m.annotations.empty()) {
    json::object a;
    for (const auto& [k, v] : m.annotations) a[k] = v;
    o["annotations"] = std::move(a);
  }
  return o;
}

json::object to_json(const CommonStatus& s) {
  json::object o;
  if (s.observed_generation) o["observedGeneration"] = s.observed_generation;
  if (!s.conditions.empty()) {
    json::array conds;
    for (const auto& c : s.conditions) {
      json::object co{{"type", c.type}, {"status", c.status}};
      put(co, "reason", c.reason);
      co["message"] = c.message;
      put(co, "lastTransitionTime", c.last_transition_time);
      if (c.observed_generation) co["observedGeneration"] = c.observed_generation;
      conds.push_back(std::move(co));
    }
    o["conditions"] = std::move(conds);
  }
  return o;
}

json::object to_json(const ImageReplication& r) {
  json::object o = envelope("ImageReplication", r.metadata);
  const auto& s = r.spec.source;
  json::object source{{"registryId", s.registry_id},
                      {"region", s.region},
                      {"repositoryName", s.repository_name},
                      {"imageDigest", s.image_digest}};
  put(source, "imageTag", s.image_tag);
  put(source, "pushedAt", s.pushed_at);
  json::array dests;
  for (const auto& d : r.spec.destinations) dests.push_back(key_json(d));
  o["spec"] = json::object{{"source", std::move(source)}, {"destinations", std::move(dests)}};

  json::object status = to_json(static_cast<const CommonStatus&>(r.status));
  json::array statuses;
  for (const auto& rs : r.status.replication_statuses) {
    json::object x{{"region", rs.region}, {"registryId", rs.registry_id}, {"status", rs.status}};
    put(x, "failureCode", rs.failure_code);
    put(x, "message", rs.message);
    put(x, "startedAt", rs.started_at);
    put(x, "completedAt", rs.completed_at);
    put(x, "authorizedBy", rs.authorized_by);
    put(x, "nextAttemptAt", rs.next_attempt_at);
    x["tagged"] = rs.tagged;
    statuses.push_back(std::move(x));
  }
  if (!statuses.empty()) status["replicationStatuses"] = std::move(statuses);
  put(status, "digestShort", r.status.digest_short);
  put(status, "progress", r.status.progress);
  put(status, "lastHandledRetryAt", r.status.last_handled_retry_at);
  if (!status.empty()) o["status"] = std::move(status);
  return o;
}

json::object to_json(const Repository& r) {
  json::object o = envelope("Repository", r.metadata);
  const auto& s = r.spec;
  json::object enc{{"encryptionType", s.encryption_type}};
  put(enc, "kmsKey", s.kms_key);
  json::object spec{{"registryId", s.registry_id},
                    {"region", s.region},
                    {"repositoryName", s.repository_name},
                    {"imageTagMutability", s.image_tag_mutability},
                    {"imageScanningConfiguration", json::object{{"scanOnPush", s.scan_on_push}}},
                    {"encryptionConfiguration", std::move(enc)}};
  if (!s.image_tag_mutability_exclusion_filters.empty()) {
    json::array filters;
    for (const auto& f : s.image_tag_mutability_exclusion_filters) {
      filters.push_back(json::object{{"filter", f.filter}, {"filterType", f.filter_type}});
    }
    spec["imageTagMutabilityExclusionFilters"] = std::move(filters);
  }
  if (!s.resource_tags.empty()) {
    json::array tags;
    for (const auto& t : s.resource_tags) tags.push_back(json::object{{"Key", t.key}, {"Value", t.value}});
    spec["resourceTags"] = std::move(tags);
  }
  o["spec"] = std::move(spec);
  json::object status = to_json(static_cast<const CommonStatus&>(r.status));
  put(status, "createdBy", r.status.created_by);
  put(status, "createdAt", r.status.created_at);
  put(status, "template", r.status.template_name);
  if (r.status.source_registry) {
    json::object src = key_json(*r.status.source_registry);
    put(src, "repositoryName", r.status.source_repository_name);
    status["source"] = std::move(src);
  }
  if (!status.empty()) o["status"] = std::move(status);
  return o;
}

json::object status_to_json(const ReplicationConfigStatus& s) {
  json::object o = to_json(static_cast<const CommonStatus&>(s));
  put(o, "effectiveSince", s.effective_since);
  if (!s.destinations.empty()) {
    json::array a;
    for (const auto& d : s.destinations) {
      json::object x{{"region", d.region}, {"registryId", d.registry_id}, {"state", d.state}};
      put(x, "message", d.message);
      put(x, "effectiveSince", d.effective_since);
      a.push_back(std::move(x));
    }
    o["destinations"] = std::move(a);
  }
  return o;
}

json::object status_to_json(const ReplicationBackfillStatus& s) {
  json::object o = to_json(static_cast<const CommonStatus&>(s));
  put(o, "phase", s.phase);
  o["images"] = json::object{{"total", s.images.total},
                             {"replicated", s.images.replicated},
                             {"skipped", s.images.skipped},
                             {"failed", s.images.failed}};
  put(o, "startedAt", s.started_at);
  put(o, "completedAt", s.completed_at);
  put(o, "message", s.message);
  return o;
}

json::object status_to_json(const RegistryStatus& s) {
  json::object o = to_json(static_cast<const CommonStatus&>(s));
  put(o, "lastPolledAt", s.last_polled_at);
  return o;
}

}  // namespace ferry::model
