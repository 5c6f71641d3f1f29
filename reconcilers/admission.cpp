// AdmissionReview v1 handling for Ferry's validating webhook.
#include "reconcilers/admission.hpp"

#include <boost/json.hpp>

#include "reconcilers/model/parse.hpp"
#include "reconcilers/status.hpp"

namespace ferry::reconcilers {

namespace json = boost::json;

namespace {

AdmissionAnswer malformed(std::string why) {
  AdmissionAnswer a;
  a.http_status = 400;
  a.content_type = "text/plain; charset=utf-8";
  a.message = "malformed AdmissionReview: " + why;
  a.body = a.message + "\n";
  return a;
}

}  // namespace

AdmissionAnswer review_admission(std::string_view body, const model::RegistryCatalog& catalog) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec) return malformed("body is not JSON: " + ec.message());
  const auto* top = v.if_object();
  if (!top) return malformed("body is not a JSON object");
  const auto* api_version = top->if_contains("apiVersion");
  const auto* kind = top->if_contains("kind");
  if (!api_version || !api_version->is_string() ||
      api_version->as_string() != "admission.k8s.io/v1") {
    return malformed("apiVersion must be admission.k8s.io/v1");
  }
  if (!kind || !kind->is_string() || kind->as_string() != "AdmissionReview") {
    return malformed("kind must be AdmissionReview");
  }
  const auto* request = top->if_contains("request");
  if (!request || !request->is_object()) return malformed("request is missing");
  const auto& req = request->as_object();
  const auto* uid = req.if_contains("uid");
  if (!uid || !uid->is_string() || uid->as_string().empty())
    return malformed("request.uid is missing");
  const auto* operation = req.if_contains("operation");
  const auto* object = req.if_contains("object");

  AdmissionAnswer a;
  a.allowed = true;
  const bool deleting = operation && operation->is_string() && operation->as_string() == "DELETE";
  if (!deleting && object && object->is_object()) {
    auto parsed = model::parse_resource(*object);
    model::FieldErrors errors = parsed.errors;
    if (errors.empty() && parsed.resource && !parsed.foreign)
      errors = model::validate(*parsed.resource, catalog);
    if (!parsed.foreign && !errors.empty()) {
      a.allowed = false;
      a.message = validation_message(parsed.kind, parsed.name, errors);
    }
  } else if (!deleting && (!object || !object->is_object())) {
    return malformed("request.object is missing");
  }
  json::object response{{"uid", uid->as_string()}, {"allowed", a.allowed}};
  if (!a.allowed) {
    response["status"] = json::object{{"code", 422}, {"reason", "Invalid"}, {"message", a.message}};
  }
  a.body = json::serialize(json::object{{"apiVersion", "admission.k8s.io/v1"},
                                        {"kind", "AdmissionReview"},
                                        {"response", std::move(response)}});
  return a;
}

}  // namespace ferry::reconcilers
