// The validating admission webhook's decision (AdmissionReview v1) as a pure function, so that
// `kubectl apply` of an invalid resource is refused with the message `ferry validate` prints.
#pragma once

#include <string>
#include <string_view>

#include "reconcilers/model/validate.hpp"

namespace ferry::reconcilers {

struct AdmissionAnswer {
  unsigned http_status = 200;  // 400 for a malformed AdmissionReview
  std::string content_type = "application/json";
  std::string body;
  bool allowed = false;  // for logs and tests
  std::string message;   // denial reason, or why the request is malformed
};

// Reviews one AdmissionReview v1 request body. Ferry kinds are parsed and validated with the
// model (the Registry catalog supplies partition overrides, as `ferry validate` uses the
// Registries of its set); DELETE and objects of other kinds are allowed.
AdmissionAnswer review_admission(std::string_view body, const model::RegistryCatalog& catalog = {});

}  // namespace ferry::reconcilers
