// Typed Kubernetes API calls: pagination, watch event dispatch, status writes with conflict retry.
#include "kube/api.hpp"

#include <functional>

#include <boost/json.hpp>
#include <random>

namespace ferry::kube {

namespace json = boost::json;

std::expected<json::value, ApiError> Api::object_call(const Request& r, std::stop_token stop) {
  auto res = client_.send(r, stop);
  if (!res) return std::unexpected(res.error());
  if (stop.stop_requested()) return std::unexpected(ApiError{0, "Stopped", r.target + ": stopped"});
  if (res->status < 200 || res->status >= 300)
    return std::unexpected(api_error(res->status, res->body));
  boost::system::error_code ec;
  auto v = json::parse(res->body, ec);
  if (ec)
    return std::unexpected(ApiError{res->status, "BadResponse", r.target + ": answer is not JSON"});
  return v;
}

std::expected<json::value, ApiError> Api::get(const ResourceType& t, std::string_view ns,
                                              std::string_view name) {
  return object_call(get_request(t, ns, name));
}

std::expected<ListResult, ApiError> Api::list(const ResourceType& t, std::string_view ns,
                                              std::uint32_t page_size, std::stop_token stop) {
  ListResult out;
  auto rv = list_pages(
      t, ns, page_size,
      [&](std::vector<json::value>&& items) {
        for (auto& item : items) out.items.push_back(std::move(item));
      },
      stop);
  if (!rv) return std::unexpected(rv.error());
  out.resource_version = std::move(*rv);
  return out;
}

std::expected<std::string, ApiError> Api::list_pages(
    const ResourceType& t, std::string_view ns, std::uint32_t page_size,
    const std::function<void(std::vector<json::value>&& items)>& on_page, std::stop_token stop,
    std::string_view label_selector) {
  ListParams p;
  p.limit = page_size;
  p.label_selector = label_selector;
  for (;;) {
    auto page = object_call(list_request(t, ns, p), stop);
    if (!page) return std::unexpected(page.error());
    if (!page->is_object())
      return std::unexpected(ApiError{200, "BadResponse", "list is not an object"});
    auto& o = page->as_object();
    std::vector<json::value> items;
    if (auto* listed = o.if_contains("items"); listed && listed->is_array()) {
      items.reserve(listed->as_array().size());
      for (auto& item : listed->as_array()) {
        // Items of a list carry no kind/apiVersion; add them so parse_resource can read them.
        if (item.is_object()) {
          item.as_object()["apiVersion"] = t.api_version();
          item.as_object()["kind"] = t.kind;
        }
        items.push_back(std::move(item));
      }
    }
    std::string cont, version;
    if (const auto* md = o.if_contains("metadata"); md && md->is_object()) {
      const auto& m = md->as_object();
      if (const auto* rv = m.if_contains("resourceVersion"); rv && rv->is_string()) version = rv->as_string();
      if (const auto* c = m.if_contains("continue"); c && c->is_string()) cont = c->as_string();
    }
    on_page(std::move(items));
    if (cont.empty()) return version;
    p.continue_token = cont;
  }
}

std::expected<WatchEnd, ApiError> Api::watch(const ResourceType& t, std::string_view ns,
                                             const WatchParams& params,
                                             const std::function<void(const WatchEvent&)>& on_event,
                                             std::stop_token stop) {
  bool gone = false;
  std::optional<ApiError> bad;
  auto on_line = [&](std::string_view line) {
    if (gone || bad) return;
    std::string err;
    auto ev = parse_watch_event(line, &err);
    if (!ev) {
      bad = ApiError{200, "BadResponse", "watch " + t.plural + ": " + err};
      return;
    }
    if (ev->type == "ERROR") {
      auto code = ev->object.as_object().if_contains("code");
      if (code && code->is_int64() && code->as_int64() == 410) {
        gone = true;
        return;
      }
      bad = api_error(code && code->is_int64() ? static_cast<unsigned>(code->as_int64()) : 500,
                      json::serialize(ev->object));
      return;
    }
    on_event(*ev);
  };
  // Silence longer than the server's own timeout plus a margin means a dead connection.
  const auto idle =
      std::chrono::seconds(params.timeout_seconds ? params.timeout_seconds + 30 : 330);
  auto res = client_.stream(watch_request(t, ns, params), on_line, stop, idle);
  if (stop.stop_requested()) return WatchEnd::Stopped;
  if (!res) return std::unexpected(res.error());
  if (res->status == 410) return WatchEnd::Gone;
  if (res->status != 200) return std::unexpected(api_error(res->status, res->body));
  if (gone) return WatchEnd::Gone;
  if (bad) return std::unexpected(*bad);
  return WatchEnd::Closed;
}

std::expected<json::value, ApiError> Api::create(const ResourceType& t, std::string_view ns,
                                                 const json::value& object) {
  return object_call(create_request(t, ns, object));
}

std::expected<json::value, ApiError> Api::replace(const ResourceType& t, std::string_view ns,
                                                  std::string_view name, const json::value& object,
                                                  std::string_view subresource) {
  return object_call(replace_request(t, ns, name, object, subresource));
}

std::expected<json::value, ApiError> Api::merge_patch(const ResourceType& t, std::string_view ns,
                                                      std::string_view name,
                                                      const json::value& patch,
                                                      std::string_view subresource) {
  return object_call(merge_patch_request(t, ns, name, patch, subresource));
}

std::expected<void, ApiError> Api::remove(const ResourceType& t, std::string_view ns,
                                          std::string_view name) {
  auto r = object_call(delete_request(t, ns, name));
  if (!r && !r.error().not_found()) return std::unexpected(r.error());
  return {};
}

std::expected<bool, ApiError> Api::update_status(
    const ResourceType& t, std::string_view ns, std::string_view name,
    const std::function<std::optional<json::value>(const json::value&)>& compute, int attempts) {
  ApiError last;
  for (int i = 0; i < attempts; ++i) {
    auto current = get(t, ns, name);
    if (!current) return std::unexpected(current.error());
    auto status = compute(*current);
    if (!status) return false;
    json::value object = *current;
    object.as_object()["status"] = std::move(*status);
    auto res = replace(t, ns, name, object, "status");
    if (res) return true;
    if (!res.error().conflict()) return std::unexpected(res.error());
    last = res.error();
  }
  return std::unexpected(last);
}

json::value make_event(const json::value& regarding, const EventSpec& spec,
                       std::string_view reporting_instance, std::string_view event_time) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  const auto name = name_of(regarding);
  auto ns = namespace_of(regarding);
  if (ns.empty()) ns = "default";  // events about cluster-scoped objects live in default
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(rng()));
  json::object ref{{"name", name}};
  if (const auto* o = regarding.if_object()) {
    for (const char* k : {"apiVersion", "kind"}) {
      if (const auto* v = o->if_contains(k)) ref[k] = *v;
    }
    if (const auto* md = o->if_contains("metadata"); md && md->is_object()) {
      for (const char* k : {"uid", "resourceVersion", "namespace"}) {
        if (const auto* v = md->as_object().if_contains(k)) ref[k] = *v;
      }
    }
  }
  std::string note = spec.note.substr(0, 1024);
  return json::object{{"apiVersion", "events.k8s.io/v1"},
                      {"kind", "Event"},
                      {"metadata", {{"name", name + "." + suffix}, {"namespace", ns}}},
                      {"eventTime", event_time},
                      {"reportingController", "ferry.dev/operator"},
                      {"reportingInstance", reporting_instance},
                      {"action", spec.action},
                      {"reason", spec.reason},
                      {"type", spec.type},
                      {"note", note},
                      {"regarding", std::move(ref)}};
}

}  // namespace ferry::kube
