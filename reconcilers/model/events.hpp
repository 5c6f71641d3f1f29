// Docker distribution notification envelopes: which manifest pushes a registry reports.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::model {

// One manifest written into a repository, as a registry reported it (or polling found it).
struct PushEvent {
  std::string id;          // the registry's event id (may be empty)
  std::string repository;
  std::string digest;
  std::string tag;         // empty for a push by digest
  std::string media_type;
  std::string timestamp;   // when the registry saw it (RFC 3339), may be empty
  std::string user_agent;  // of the pushing client
};

// True for the manifest media types Ferry replicates (Docker schema 2 manifest and list, OCI
// manifest, index and artifact manifest).
bool is_manifest_media_type(std::string_view media_type);

// Parses an envelope {"events":[...]} of content type
// application/vnd.docker.distribution.events.v1+json or v2+json. Returns the manifest pushes
// it holds; blob events, pulls, deletes and mounts are skipped. Any malformed part makes the
// whole envelope an error (a reason fit for a 400 response), so nothing is half-applied.
std::expected<std::vector<PushEvent>, std::string> parse_notification(std::string_view body);

// An Amazon EventBridge "ECR Image Action" event (source aws.ecr), as an SQS message body carries
// it when an EventBridge rule sends ECR's events to a queue.
struct EcrImageAction {
  std::string account, region;  // of the registry the event is about
  bool successful_push = false;  // action-type PUSH and result SUCCESS; anything else is ignored
  PushEvent push;                // repository, digest, tag, media type, time (whole seconds)
};
// A malformed or foreign body is an error saying what and where (the message is dropped).
std::expected<EcrImageAction, std::string> parse_ecr_image_action(std::string_view body);

// Content types a notification may arrive with (parameters such as charset are ignored).
bool is_notification_content_type(std::string_view content_type);

}  // namespace ferry::model
