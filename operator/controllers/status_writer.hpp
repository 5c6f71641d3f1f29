// Writes a reconciler's status: only when it changed, never over a newer generation, retried on
// a conflict; an Event when the Ready condition changes.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <string>

#include "kube/api.hpp"
#include "operator/runtime/controller.hpp"
#include "reconcilers/model/validate.hpp"

namespace ferry::operator_ {

// Now, as status times are written (RFC 3339).
std::string now_string();

struct StatusWriter {
  kube::Api& api;
  std::string instance;  // reportingInstance of the Events

  // Writes `compute(current)` as the status of `name` when it differs from what is stored and
  // `seen`'s generation is still the object's; a failed write is a retry.
  runtime::Outcome write(const kube::ResourceType& type, const boost::json::value& seen,
                         const std::string& name,
                         const std::function<boost::json::object(const boost::json::value&)>& compute);

  // An invalid object: Stalled with the validation message (what `ferry validate` prints).
  runtime::Outcome write_invalid(const kube::ResourceType& type, const boost::json::value& obj,
                                 const std::string& kind, const std::string& name,
                                 const model::FieldErrors& errors);
};

}  // namespace ferry::operator_
