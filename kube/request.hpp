// Kubernetes API requests as plain values (method, target, headers, body), built without I/O,
// as kube-rs builds them in kube-core; and the parsing of what comes back.
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::kube {

// One REST resource: where it is served and how it is named.
struct ResourceType {
  std::string group;    // "" for the core group
  std::string version;  // "v1alpha1"
  std::string plural;   // "replicationconfigs"
  std::string kind;     // "ReplicationConfig"
  bool namespaced = false;
  std::string api_version() const { return group.empty() ? version : group + "/" + version; }
};

// Ferry's kinds and the built-ins it uses.
ResourceType registries();
ResourceType replication_configs();
ResourceType registry_policies();
ResourceType repositories();
ResourceType repository_creation_templates();
ResourceType replication_backfills();
ResourceType image_replications();
ResourceType secrets();
ResourceType events();
ResourceType leases();
ResourceType config_maps();

struct Request {
  std::string method;  // GET POST PUT PATCH DELETE
  std::string target;  // path and query, percent-encoded
  std::string accept = "application/json";
  std::string content_type;  // empty without a body
  std::string body;
  std::string authorization;  // overrides the client's bearer token when set (registry probes)
  bool operator==(const Request&) const = default;
};

struct ListParams {
  std::uint32_t limit = 0;  // 0: no limit
  std::string continue_token;
  std::string label_selector;
  std::string field_selector;
};

struct WatchParams {
  std::string resource_version;  // resume point; empty: start with synthetic ADDED events
  bool allow_bookmarks = true;
  std::uint32_t timeout_seconds = 300;  // the server ends the watch after this
  std::string label_selector;
  std::string field_selector;
};

// `/apis/ferry.dev/v1alpha1/replicationconfigs[/name][/sub]` or
// `/api/v1/namespaces/ns/secrets/...`. `ns` is ignored for cluster-scoped types; empty `ns` on a
// namespaced type means all namespaces.
std::string resource_path(const ResourceType& t, std::string_view ns, std::string_view name = {},
                          std::string_view subresource = {});

Request get_request(const ResourceType& t, std::string_view ns, std::string_view name);
Request list_request(const ResourceType& t, std::string_view ns, const ListParams& p = {});
Request watch_request(const ResourceType& t, std::string_view ns, const WatchParams& p);
Request create_request(const ResourceType& t, std::string_view ns,
                       const boost::json::value& object);
// PUT: `object` carries metadata.resourceVersion for optimistic concurrency.
Request replace_request(const ResourceType& t, std::string_view ns, std::string_view name,
                        const boost::json::value& object, std::string_view subresource = {});
// application/merge-patch+json (RFC 7386).
Request merge_patch_request(const ResourceType& t, std::string_view ns, std::string_view name,
                            const boost::json::value& patch, std::string_view subresource = {});
// DELETE of one object, with foreground-free (background) propagation. Used only for Ferry's
// own records (ImageReplication), never for anything in a registry.
Request delete_request(const ResourceType& t, std::string_view ns, std::string_view name);

// A failed call as the API server explains it (a metav1.Status), or a transport failure
// (code 0).
struct ApiError {
  unsigned code = 0;
  std::string reason;  // NotFound, Conflict, AlreadyExists, Expired, Gone, Invalid...
  std::string message;
  std::string to_string() const;
  bool not_found() const { return code == 404; }
  bool conflict() const { return code == 409 && reason != "AlreadyExists"; }
  bool already_exists() const { return code == 409 && reason == "AlreadyExists"; }
  bool gone() const { return code == 410; }
};
// Builds the error from an HTTP status and body (a Status object when the server sent one).
ApiError api_error(unsigned http_status, std::string_view body);

// One line of a watch stream.
struct WatchEvent {
  std::string type;  // ADDED MODIFIED DELETED BOOKMARK ERROR
  boost::json::value object;
  std::string resource_version() const;  // object.metadata.resourceVersion
};
// nullopt with `error` set when the line is not a watch event.
std::optional<WatchEvent> parse_watch_event(std::string_view line, std::string* error = nullptr);

// Splits a byte stream into newline-terminated lines, across arbitrary chunk boundaries.
class LineSplitter {
 public:
  // Appends `chunk`; returns the complete lines it finished (without the newline).
  std::vector<std::string> feed(std::string_view chunk);
  std::size_t pending() const { return buffer_.size(); }

 private:
  std::string buffer_;
};

// metadata.name / namespace / resourceVersion / uid / generation of an object (empty or 0 when absent).
std::string name_of(const boost::json::value& object);
std::string namespace_of(const boost::json::value& object);
std::string resource_version_of(const boost::json::value& object);
std::string uid_of(const boost::json::value& object);
std::int64_t generation_of(const boost::json::value& object);

}  // namespace ferry::kube
