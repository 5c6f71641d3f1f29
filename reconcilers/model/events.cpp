// Parsing of Docker distribution notification envelopes into manifest push events.
#include "reconcilers/model/events.hpp"

#include <boost/json.hpp>

#include "reconcilers/model/clock.hpp"
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

std::expected<EcrImageAction, std::string> parse_ecr_image_action(std::string_view body) {
  auto doc = parse_json_text(body);
  if (!doc) {
    return std::unexpected("not JSON: " + doc.error().message + " at line " + std::to_string(doc.error().line) +
                           ", column " + std::to_string(doc.error().column));
  }
  const auto* ev = doc->if_object();
  if (!ev) return std::unexpected(std::string("not an EventBridge event: expected a JSON object"));
  if (str_at(*ev, "source") != "aws.ecr" || str_at(*ev, "detail-type") != "ECR Image Action") {
    return std::unexpected("not an ECR Image Action event: source \"" + str_at(*ev, "source") +
                           "\", detail-type \"" + str_at(*ev, "detail-type") + "\"");
  }
  const json::value* detail_v = ev->if_contains("detail");
  const auto* detail = detail_v ? detail_v->if_object() : nullptr;
  if (!detail) return std::unexpected(std::string("detail: required object"));
  EcrImageAction out;
  out.account = str_at(*ev, "account");
  out.region = str_at(*ev, "region");
  if (!is_valid_registry_id(out.account)) return std::unexpected("account: \"" + out.account + "\" is not 12 digits");
  if (out.region.empty()) return std::unexpected(std::string("region: required"));
  out.successful_push = str_at(*detail, "action-type") == "PUSH" && str_at(*detail, "result") == "SUCCESS";
  if (!out.successful_push) return out;
  PushEvent& p = out.push;
  p.id = str_at(*ev, "id");
  p.timestamp = str_at(*ev, "time");
  p.repository = str_at(*detail, "repository-name");
  p.digest = str_at(*detail, "image-digest");
  p.tag = str_at(*detail, "image-tag");
  p.media_type = str_at(*detail, "manifest-media-type");
  if (!is_valid_repository_name(p.repository)) {
    return std::unexpected("detail.repository-name: \"" + p.repository + "\" is not a repository name");
  }
  if (!is_valid_digest(p.digest)) return std::unexpected("detail.image-digest: \"" + p.digest + "\" is not a sha256 digest");
  if (!p.tag.empty() && !is_valid_tag(p.tag)) return std::unexpected("detail.image-tag: \"" + p.tag + "\" is not a tag");
  if (!p.timestamp.empty() && !parse_rfc3339(p.timestamp)) {
    return std::unexpected("time: \"" + p.timestamp + "\" is not an RFC 3339 time");
  }
  return out;
}

}  // namespace ferry::model
