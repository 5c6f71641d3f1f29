// Pure request building and response parsing for the Kubernetes API.
#include "kube/request.hpp"

#include <boost/json.hpp>
#include <boost/url/url.hpp>

namespace ferry::kube {

namespace json = boost::json;

ResourceType registries() { return {"ferry.dev", "v1alpha1", "registries", "Registry", false}; }
ResourceType replication_configs() {
  return {"ferry.dev", "v1alpha1", "replicationconfigs", "ReplicationConfig", false};
}
ResourceType registry_policies() {
  return {"ferry.dev", "v1alpha1", "registrypolicies", "RegistryPolicy", false};
}
ResourceType repositories() {
  return {"ferry.dev", "v1alpha1", "repositories", "Repository", false};
}
ResourceType repository_creation_templates() {
  return {"ferry.dev", "v1alpha1", "repositorycreationtemplates", "RepositoryCreationTemplate", false};
}
ResourceType replication_backfills() {
  return {"ferry.dev", "v1alpha1", "replicationbackfills", "ReplicationBackfill", false};
}
ResourceType image_replications() {
  return {"ferry.dev", "v1alpha1", "imagereplications", "ImageReplication", false};
}
ResourceType secrets() { return {"", "v1", "secrets", "Secret", true}; }
ResourceType events() { return {"events.k8s.io", "v1", "events", "Event", true}; }
ResourceType leases() { return {"coordination.k8s.io", "v1", "leases", "Lease", true}; }
ResourceType config_maps() { return {"", "v1", "configmaps", "ConfigMap", true}; }

namespace {

// Path segments are percent-encoded by Boost.URL; names are DNS labels in practice.
std::string build(std::string_view path,
                  const std::vector<std::pair<std::string, std::string>>& query) {
  boost::urls::url u;
  u.set_path(path);
  for (const auto& [k, v] : query) u.params().append({k, v});
  return std::string(u.buffer());
}

}  // namespace

std::string resource_path(const ResourceType& t, std::string_view ns, std::string_view name,
                          std::string_view subresource) {
  std::string p = t.group.empty() ? "/api/" + t.version : "/apis/" + t.group + "/" + t.version;
  if (t.namespaced && !ns.empty()) {
    p += "/namespaces/";
    p += ns;
  }
  p += "/" + t.plural;
  if (!name.empty()) {
    p += "/";
    p += name;
    if (!subresource.empty()) {
      p += "/";
      p += subresource;
    }
  }
  return p;
}

Request get_request(const ResourceType& t, std::string_view ns, std::string_view name) {
  return {"GET", build(resource_path(t, ns, name), {})};
}

Request list_request(const ResourceType& t, std::string_view ns, const ListParams& p) {
  std::vector<std::pair<std::string, std::string>> q;
  if (p.limit) q.emplace_back("limit", std::to_string(p.limit));
  if (!p.continue_token.empty()) q.emplace_back("continue", p.continue_token);
  if (!p.label_selector.empty()) q.emplace_back("labelSelector", p.label_selector);
  if (!p.field_selector.empty()) q.emplace_back("fieldSelector", p.field_selector);
  return {"GET", build(resource_path(t, ns), q)};
}

Request watch_request(const ResourceType& t, std::string_view ns, const WatchParams& p) {
  std::vector<std::pair<std::string, std::string>> q{{"watch", "true"}};
  if (!p.resource_version.empty()) q.emplace_back("resourceVersion", p.resource_version);
  if (p.allow_bookmarks) q.emplace_back("allowWatchBookmarks", "true");
  if (p.timeout_seconds) q.emplace_back("timeoutSeconds", std::to_string(p.timeout_seconds));
  if (!p.label_selector.empty()) q.emplace_back("labelSelector", p.label_selector);
  if (!p.field_selector.empty()) q.emplace_back("fieldSelector", p.field_selector);
  return {"GET", build(resource_path(t, ns), q)};
}

Request create_request(const ResourceType& t, std::string_view ns, const json::value& object) {
  return {"POST", build(resource_path(t, ns), {}), "application/json", "application/json",
          json::serialize(object)};
}

Request replace_request(const ResourceType& t, std::string_view ns, std::string_view name,
                        const json::value& object, std::string_view subresource) {
  return {"PUT", build(resource_path(t, ns, name, subresource), {}), "application/json",
          "application/json", json::serialize(object)};
}

Request merge_patch_request(const ResourceType& t, std::string_view ns, std::string_view name,
                            const json::value& patch, std::string_view subresource) {
  return {"PATCH", build(resource_path(t, ns, name, subresource), {}), "application/json",
          "application/merge-patch+json", json::serialize(patch)};
}

Request delete_request(const ResourceType& t, std::string_view ns, std::string_view name) {
  return {"DELETE", build(resource_path(t, ns, name), {{"propagationPolicy", "Background"}})};
}

std::string ApiError::to_string() const {
  if (code == 0) return message;
  std::string s = std::to_string(code);
  if (!reason.empty()) s += " " + reason;
  if (!message.empty()) s += ": " + message;
  return s;
}

ApiError api_error(unsigned http_status, std::string_view body) {
  ApiError e;
  e.code = http_status;
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    const auto& o = v.as_object();
    if (auto* r = o.if_contains("reason"); r && r->is_string()) e.reason = r->as_string();
    if (auto* m = o.if_contains("message"); m && m->is_string()) e.message = m->as_string();
  }
  if (e.message.empty()) e.message = std::string(body.substr(0, 200));
  return e;
}

std::optional<WatchEvent> parse_watch_event(std::string_view line, std::string* error) {
  boost::system::error_code ec;
  auto v = json::parse(line, ec);
  auto fail = [&](std::string m) -> std::optional<WatchEvent> {
    if (error) *error = std::move(m);
    return std::nullopt;
  };
  if (ec) return fail("watch event is not JSON: " + ec.message());
  if (!v.is_object()) return fail("watch event is not an object");
  auto& o = v.as_object();
  auto* type = o.if_contains("type");
  auto* object = o.if_contains("object");
  if (!type || !type->is_string() || !object || !object->is_object()) {
    return fail("watch event lacks type or object");
  }
  return WatchEvent{std::string(type->as_string()), std::move(*object)};
}

std::vector<std::string> LineSplitter::feed(std::string_view chunk) {
  std::vector<std::string> lines;
  buffer_.append(chunk);
  std::size_t start = 0;
  for (;;) {
    auto nl = buffer_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string line = buffer_.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(std::move(line));
    start = nl + 1;
  }
  buffer_.erase(0, start);
  return lines;
}

namespace {
const json::value* meta_field(const json::value& object, std::string_view key) {
  const auto* o = object.if_object();
  if (!o) return nullptr;
  const auto* md = o->if_contains("metadata");
  if (!md || !md->is_object()) return nullptr;
  return md->as_object().if_contains(key);
}
std::string meta_string(const json::value& object, std::string_view key) {
  const auto* v = meta_field(object, key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}
}  // namespace

std::string name_of(const json::value& object) { return meta_string(object, "name"); }
std::string namespace_of(const json::value& object) { return meta_string(object, "namespace"); }
std::string resource_version_of(const json::value& object) {
  return meta_string(object, "resourceVersion");
}
std::string uid_of(const json::value& object) { return meta_string(object, "uid"); }
std::int64_t generation_of(const json::value& object) {
  const auto* v = meta_field(object, "generation");
  return v && v->is_int64() ? v->as_int64() : 0;
}

std::string WatchEvent::resource_version() const { return resource_version_of(object); }

}  // namespace ferry::kube
