// Typed Kubernetes API calls on top of Client: JSON objects in and out, errors as ApiError.
#pragma once

#include <boost/json/value.hpp>
#include <expected>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "kube/client.hpp"
#include "kube/request.hpp"

namespace ferry::kube {

struct ListResult {
  std::vector<boost::json::value> items;
  std::string resource_version;  // of the list: where a watch resumes
};

// How a watch ended: the server closed it (resume from the last version seen), it was too old
// (re-list), or a stop was requested.
enum class WatchEnd { Closed, Gone, Stopped };

class Api {
 public:
  explicit Api(Client& client) : client_(client) {}

  Client& client() { return client_; }

  std::expected<boost::json::value, ApiError> get(const ResourceType& t, std::string_view ns,
                                                  std::string_view name);
  // Every page (limit/continue) of a consistent list; a stop request abandons it (an error).
  std::expected<ListResult, ApiError> list(const ResourceType& t, std::string_view ns,
                                           std::uint32_t page_size = 500,
                                           std::stop_token stop = {});
  // The same, each page's items handed to `on_page` as it arrives and then dropped, so that a
  // list of many objects never sits in memory whole; returns the list's resourceVersion. After
  // an error, the pages before it have been handed over. A label selector lists only the
  // objects it matches (the API server filters).
  std::expected<std::string, ApiError> list_pages(
      const ResourceType& t, std::string_view ns, std::uint32_t page_size,
      const std::function<void(std::vector<boost::json::value>&& items)>& on_page,
      std::stop_token stop = {}, std::string_view label_selector = {});
  // Streams events to `on_event` until the server ends the watch; an ERROR event with code 410
  // (or HTTP 410) ends it as Gone.
  std::expected<WatchEnd, ApiError> watch(const ResourceType& t, std::string_view ns,
                                          const WatchParams& params,
                                          const std::function<void(const WatchEvent&)>& on_event,
                                          std::stop_token stop);
  std::expected<boost::json::value, ApiError> create(const ResourceType& t, std::string_view ns,
                                                     const boost::json::value& object);
  std::expected<boost::json::value, ApiError> replace(const ResourceType& t, std::string_view ns,
                                                      std::string_view name,
                                                      const boost::json::value& object,
                                                      std::string_view subresource = {});
  std::expected<boost::json::value, ApiError> merge_patch(const ResourceType& t,
                                                          std::string_view ns,
                                                          std::string_view name,
                                                          const boost::json::value& patch,
                                                          std::string_view subresource = {});

  // Deletes one object; a missing object is success (it is gone either way).
  std::expected<void, ApiError> remove(const ResourceType& t, std::string_view ns, std::string_view name);

  // Writes `.status` through the status subresource with optimistic concurrency: `compute`
  // gets the current object and returns the status to write, or nullopt when nothing needs
  // writing; on 409 Conflict the object is read again and `compute` runs again (up to
  // `attempts` times), as client-go's RetryOnConflict. Returns whether a write happened.
  std::expected<bool, ApiError> update_status(
      const ResourceType& t, std::string_view ns, std::string_view name,
      const std::function<std::optional<boost::json::value>(const boost::json::value&)>& compute,
      int attempts = 5);

 private:
  std::expected<boost::json::value, ApiError> object_call(const Request& r,
                                                          std::stop_token stop = {});
  Client& client_;
};

// An events.k8s.io/v1 Event about `regarding` (an object as read from the API).
struct EventSpec {
  std::string type = "Normal";  // Normal | Warning
  std::string reason;           // CamelCase
  std::string action;           // what the controller did, e.g. "Reconcile"
  std::string note;             // human-readable, ≤ 1024 bytes (truncated)
};
boost::json::value make_event(const boost::json::value& regarding, const EventSpec& spec,
                              std::string_view reporting_instance, std::string_view event_time);

}  // namespace ferry::kube
