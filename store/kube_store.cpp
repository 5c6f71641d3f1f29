// Records as Kubernetes objects; bookkeeping as ConfigMaps, written so a crash never leaves a
// half-written state visible.
#include "store/kube_store.hpp"

#include <boost/json.hpp>
#include <chrono>

#include "reconcilers/model/failpoint.hpp"
#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/serialize.hpp"

namespace ferry::store {

namespace json = boost::json;

namespace {

constexpr const char* kDataKey = "state.json";
constexpr const char* kSlotAnnotation = "ferry.dev/state-slot";
constexpr const char* kChunksAnnotation = "ferry.dev/state-chunks";
constexpr const char* kGenerationAnnotation = "ferry.dev/state-generation";
constexpr const char* kCreatedByAnnotation = "ferry.dev/created-by";

std::string annotation(const json::value& obj, const char* key) {
  const auto* md = obj.is_object() ? obj.as_object().if_contains("metadata") : nullptr;
  const auto* an = md && md->is_object() ? md->as_object().if_contains("annotations") : nullptr;
  const auto* v = an && an->is_object() ? an->as_object().if_contains(key) : nullptr;
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::string data_of(const json::value& obj) {
  const auto* d = obj.is_object() ? obj.as_object().if_contains("data") : nullptr;
  const auto* v = d && d->is_object() ? d->as_object().if_contains(kDataKey) : nullptr;
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// The object as sent on create: server-set metadata and status removed.
json::object for_create(json::object obj) {
  obj.erase("status");
  if (auto* md = obj.if_contains("metadata"); md && md->is_object()) {
    for (const char* k : {"resourceVersion", "uid", "creationTimestamp", "generation"}) md->as_object().erase(k);
  }
  return obj;
}

// Splits `text` into pieces of at most `size` bytes, never inside a UTF-8 sequence.
std::vector<std::string> split(const std::string& text, std::size_t size) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = std::min(text.size(), at + size);
    while (end < text.size() && end > at + 1 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    out.push_back(text.substr(at, end - at));
    at = end;
  }
  return out;
}

template <typename T>
std::vector<T> parse_items(const std::vector<json::value>& items, const char* kind,
                           std::vector<std::string>* problems) {
  std::vector<T> out;
  for (const auto& item : items) {
    auto parsed = model::parse_resource(item);
    if (!parsed.resource || !std::holds_alternative<T>(*parsed.resource)) {
      if (problems) {
        problems->push_back(std::string(kind) + " " + kube::name_of(item) + ": " +
                            (parsed.errors.empty() ? "unexpected kind" : model::to_string(parsed.errors[0])));
      }
      continue;
    }
    out.push_back(std::get<T>(std::move(*parsed.resource)));
  }
  return out;
}

}  // namespace

KubeStore::KubeStore(kube::Api& api, KubeStoreOptions options) : api_(api), opts_(std::move(options)) {
  if (opts_.state_chunk_bytes == 0) opts_.state_chunk_bytes = 1;
}

std::string KubeStore::state_object_name(const std::string& key, std::size_t chunk) {
  return "ferry-state-" + key + (chunk == 0 ? "" : "-" + std::to_string(chunk));
}

std::expected<void, kube::ApiError> KubeStore::write_status(const kube::ResourceType& t, const std::string& name,
                                                            json::value object) {
  const std::string vkey = t.plural + "/" + name;
  kube::ApiError last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::string rv;
    {
      std::lock_guard lock(mutex_);
      rv = versions_[vkey];
    }
    object.as_object()["metadata"].as_object()["resourceVersion"] = rv;
    FERRY_FAILPOINT("kube.status.before");
    auto r = api_.replace(t, "", name, object, "status");
    if (r) {
      FERRY_FAILPOINT("kube.status.after");
      std::lock_guard lock(mutex_);
      versions_[vkey] = kube::resource_version_of(*r);
      return {};
    }
    last = r.error();
    // Someone else wrote it, or its version is not known here: read it and try again.
    if (!last.conflict() && !(last.code == 422 && rv.empty())) return std::unexpected(last);
    auto current = api_.get(t, "", name);
    if (!current) return std::unexpected(current.error());
    std::lock_guard lock(mutex_);
    versions_[vkey] = kube::resource_version_of(*current);
  }
  return std::unexpected(last);
}

std::expected<void, std::string> KubeStore::save(const model::ImageReplication& record) {
  const auto t = kube::image_replications();
  const std::string& name = record.metadata.name;
  json::object obj = model::to_json(record);
  if (!opts_.record_labels.empty()) {
    auto& labels = obj["metadata"].as_object()["labels"];
    if (!labels.is_object()) labels = json::object{};
    for (const auto& [k, v] : opts_.record_labels) labels.as_object()[k] = v;
  }
  bool known;
  {
    std::lock_guard lock(mutex_);
    known = versions_.contains(t.plural + "/" + name);
  }
  if (!known) {
    auto created = api_.create(t, "", for_create(obj));
    if (created) {
      FERRY_FAILPOINT("kube.record.created");  // the object exists, its status not yet
      std::lock_guard lock(mutex_);
      versions_[t.plural + "/" + name] = kube::resource_version_of(*created);
    } else if (!created.error().already_exists()) {
      return std::unexpected("cannot create ImageReplication " + name + ": " + created.error().to_string());
    }
  }
  auto w = write_status(t, name, obj);
  if (!w && w.error().not_found() && known) {
    // Deleted meanwhile (kubectl delete): the work is not finished, so the record comes back.
    {
      std::lock_guard lock(mutex_);
      versions_.erase(t.plural + "/" + name);
    }
    return save(record);
  }
  if (!w) return std::unexpected("cannot write the status of ImageReplication " + name + ": " + w.error().to_string());
  return {};
}

std::expected<void, std::string> KubeStore::status_of_repository(const kube::ResourceType& t,
                                                                 const std::string& name, json::object obj) {
  if (auto w = write_status(t, name, std::move(obj)); !w) {
    return std::unexpected("cannot write the status of Repository " + name + ": " + w.error().to_string());
  }
  return {};
}

std::expected<void, std::string> KubeStore::save(const model::Repository& record) {
  const auto t = kube::repositories();
  const std::string& name = record.metadata.name;
  json::object obj = model::to_json(record);
  obj["metadata"].as_object()["annotations"].emplace_object()[kCreatedByAnnotation] = "replication";
  auto created = api_.create(t, "", for_create(obj));
  if (created) {
    {
      std::lock_guard lock(mutex_);
      versions_[t.plural + "/" + name] = kube::resource_version_of(*created);
    }
    return status_of_repository(t, name, obj);
  }
  if (!created.error().already_exists()) {
    return std::unexpected("cannot create Repository " + name + ": " + created.error().to_string());
  }
  // It exists: a user's Repository keeps its settings and status (S12). One Ferry created whose
  // status write was interrupted gets it now.
  auto current = api_.get(t, "", name);
  if (!current) return std::unexpected("cannot read Repository " + name + ": " + current.error().to_string());
  const auto* st = current->as_object().if_contains("status");
  const bool has_status = st && st->is_object() && st->as_object().contains("createdBy");
  if (annotation(*current, kCreatedByAnnotation) != "replication" || has_status) return {};
  {
    std::lock_guard lock(mutex_);
    versions_[t.plural + "/" + name] = kube::resource_version_of(*current);
  }
  return status_of_repository(t, name, obj);
}

std::expected<void, std::string> KubeStore::remove_image_replication(const std::string& name) {
  const auto t = kube::image_replications();
  if (auto r = api_.remove(t, "", name); !r) {
    return std::unexpected("cannot delete ImageReplication " + name + ": " + r.error().to_string());
  }
  std::lock_guard lock(mutex_);
  versions_.erase(t.plural + "/" + name);
  return {};
}

std::vector<model::ImageReplication> KubeStore::image_replications(std::vector<std::string>* problems) const {
  const auto t = kube::image_replications();
  // Page by page: a page's objects are parsed, then dropped, so that many records never sit in
  // memory twice over (as JSON and parsed).
  std::vector<model::ImageReplication> out;
  auto listed = api_.list_pages(t, "", 500, [&](std::vector<json::value>&& items) {
    {
      std::lock_guard lock(mutex_);
      for (const auto& item : items) versions_[t.plural + "/" + kube::name_of(item)] = kube::resource_version_of(item);
    }
    for (auto& r : parse_items<model::ImageReplication>(items, "ImageReplication", problems)) out.push_back(std::move(r));
  }, {}, opts_.record_selector);
  if (!listed) {
    if (problems) problems->push_back("cannot list ImageReplications: " + listed.error().to_string());
    return {};
  }
  return out;
}

std::vector<model::Repository> KubeStore::repositories(std::vector<std::string>* problems) const {
  auto list = api_.list(kube::repositories(), "");
  if (!list) {
    if (problems) problems->push_back("cannot list Repositories: " + list.error().to_string());
    return {};
  }
  auto all = parse_items<model::Repository>(list->items, "Repository", problems);
  std::erase_if(all, [](const model::Repository& r) { return r.status.created_by != "Replication"; });
  return all;
}

// Layout of one state key:
//   ferry-state-<key>          the head: the whole JSON inline when it fits one chunk; else the
//                              slot ("a" or "b"), chunk count and generation of the last write
//   ferry-state-<key>-<slot>-<i>   chunk i of that write, annotated with its generation
// A large write fills the slot the head does not point at, then replaces the head, so a crash
// at any moment leaves the previous state readable.
std::expected<void, std::string> KubeStore::save_state(const std::string& bare_key, const json::value& v) {
  const std::string key = opts_.state_prefix + bare_key;
  const auto t = kube::config_maps();
  const std::string text = json::serialize(v);
  auto put = [&](const std::string& name, json::object annotations, const std::string& data)
      -> std::expected<void, std::string> {
    json::object cm{{"apiVersion", "v1"},
                    {"kind", "ConfigMap"},
                    {"metadata",
                     {{"name", name},
                      {"namespace", opts_.state_namespace},
                      {"labels", {{"app.kubernetes.io/managed-by", "ferry"}, {"ferry.dev/state", key}}},
                      {"annotations", std::move(annotations)}}},
                    {"data", json::object{{kDataKey, data}}}};
    FERRY_FAILPOINT("kube.state.before");
    auto r = api_.replace(t, opts_.state_namespace, name, cm);
    if (!r && r.error().not_found()) r = api_.create(t, opts_.state_namespace, cm);
    if (r) FERRY_FAILPOINT("kube.state.after");
    if (!r) return std::unexpected("cannot write ConfigMap " + opts_.state_namespace + "/" + name + ": " +
                                   r.error().to_string());
    return {};
  };
  const std::string generation =
      std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "-" +
      std::to_string(++state_generation_);
  if (text.size() <= opts_.state_chunk_bytes) {
    return put(state_object_name(key, 0), {{kGenerationAnnotation, generation}}, text);
  }
  std::string slot = "a";
  if (auto head = api_.get(t, opts_.state_namespace, state_object_name(key, 0)); head) {
    if (annotation(*head, kSlotAnnotation) == "a") slot = "b";
  } else if (!head.error().not_found()) {
    return std::unexpected("cannot read ConfigMap " + opts_.state_namespace + "/" + state_object_name(key, 0) +
                           ": " + head.error().to_string());
  }
  const auto chunks = split(text, opts_.state_chunk_bytes);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const std::string name = state_object_name(key, 0) + "-" + slot + "-" + std::to_string(i);
    if (auto w = put(name, {{kGenerationAnnotation, generation}}, chunks[i]); !w) return w;
  }
  return put(state_object_name(key, 0),
             {{kGenerationAnnotation, generation},
              {kSlotAnnotation, slot},
              {kChunksAnnotation, std::to_string(chunks.size())}},
             "");
}

std::expected<std::optional<json::value>, std::string> KubeStore::load_state(const std::string& bare_key) const {
  const std::string key = opts_.state_prefix + bare_key;
  const auto t = kube::config_maps();
  const std::string head_name = opts_.state_namespace + "/" + state_object_name(key, 0);
  auto head = api_.get(t, opts_.state_namespace, state_object_name(key, 0));
  if (!head) {
    if (head.error().not_found()) return std::nullopt;
    return std::unexpected("ConfigMap " + head_name + ": " + head.error().to_string());
  }
  std::string text;
  const std::string slot = annotation(*head, kSlotAnnotation);
  if (slot.empty()) {
    text = data_of(*head);
  } else {
    const std::string generation = annotation(*head, kGenerationAnnotation);
    std::size_t n = 0;
    try {
      n = std::stoul(annotation(*head, kChunksAnnotation));
    } catch (...) {
      return std::unexpected("ConfigMap " + head_name + ": annotation " + std::string(kChunksAnnotation) +
                             " is not a number");
    }
    for (std::size_t i = 0; i < n; ++i) {
      const std::string name = state_object_name(key, 0) + "-" + slot + "-" + std::to_string(i);
      auto chunk = api_.get(t, opts_.state_namespace, name);
      if (!chunk) return std::unexpected("ConfigMap " + opts_.state_namespace + "/" + name + ": " + chunk.error().to_string());
      if (annotation(*chunk, kGenerationAnnotation) != generation) {
        return std::unexpected("ConfigMap " + opts_.state_namespace + "/" + name + " belongs to another write than " +
                               head_name + " (torn state)");
      }
      text += data_of(*chunk);
    }
  }
  auto doc = model::parse_json_text(text);
  if (!doc) return std::unexpected("ConfigMap " + head_name + ": " + doc.error().message);
  return *doc;
}

}  // namespace ferry::store
