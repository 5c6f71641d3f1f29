// Parsing of Docker distribution notification envelopes into manifest push events.
#include "reconcilers/model/events.hpp"

#include <boost/json.hpp>

#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/validate.hpp"

namespace ferry::model {
namespace json = boost::json;

bool is_manifest_media_type(std::string_view t) {
  return t == "application/vnd.docker.distribution.manifest.v2+json" ||
         t == "application/vnd.docker.distribution.manifest.list.v2+json" ||
         t == "application/vnd.oci.image.manifest.v1+json" ||
         t == "application/vnd.oci.image.index.v1+json" ||
         t == "application/vnd.oci.artifact.manifest.v1+json";
}

bool is_notification_content_type(std::string_view ct) {
  auto semi = ct.find(';');
  if (semi != std::string_view::npos) ct = ct.substr(0, semi);
  while (!ct.empty() && ct.back() == ' ') ct.remove_suffix(1);
  return ct == "application/vnd.docker.distribution.events.v1+json" ||
         ct == "application/vnd.docker.distribution.events.v2+json" || ct == "application/json";
}

namespace {

std::string str_at(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

}  // namespace

std::expected<std::vector<PushEvent>, std::string> parse_notification(std::string_view body) {
  auto doc = parse_json_text(body);
  if (!doc) {
    return std::unexpected("body is not JSON: " + doc.error().message + " at line " +
                           std::to_string(doc.error().line) + ", column " +
                           std::to_string(doc.error().column));
  }
  const auto* envelope = doc->if_object();
  const json::value* events = envelope ? envelope->if_contains("events") : nullptr;
  if (!events || !events->is_array()) {
    return std::unexpected(std::string("body is not a notification envelope: expected {\"events\": [...]}"));
  }
  std::vector<PushEvent> out;
  const auto& list = events->as_array();
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string where = "events[" + std::to_string(i) + "]";
    const auto* ev = list[i].if_object();
    if (!ev) return std::unexpected(where + ": must be an object");
    const std::string action = str_at(*ev, "action");
    if (action.empty()) return std::unexpected(where + ".action: required");
    const json::value* target_v = ev->if_contains("target");
    const auto* target = target_v ? target_v->if_object() : nullptr;
    if (!target) return std::unexpected(where + ".target: required object");
    if (action != "push") continue;
    PushEvent e;
    e.media_type = str_at(*target, "mediaType");
    if (!is_manifest_media_type(e.media_type)) continue;  // blobs, schema 1, unknown types
    e.id = str_at(*ev, "id");
    e.repository = str_at(*target, "repository");
    e.digest = str_at(*target, "digest");
    e.tag = str_at(*target, "tag");
    e.timestamp = str_at(*ev, "timestamp");
    if (const auto* req = ev->if_contains("request"); req && req->is_object()) {
      e.user_agent = str_at(req->as_object(), "useragent");
    }
    if (!is_valid_repository_name(e.repository)) {
      return std::unexpected(where + ".target.repository: \"" + e.repository +
                             "\" is not a repository name");
    }
    if (!is_valid_digest(e.digest)) {
      return std::unexpected(where + ".target.digest: \"" + e.digest +
                             "\" is not a sha256 digest");
    }
    if (!e.tag.empty() && !is_valid_tag(e.tag)) {
      return std::unexpected(where + ".target.tag: \"" + e.tag + "\" is not a tag");
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace ferry::model
