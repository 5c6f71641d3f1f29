// Reads from the informers' caches that more than one reconciler makes.
#include "operator/controllers/context.hpp"

#include <algorithm>

#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/validate.hpp"

namespace ferry::operator_ {

namespace json = boost::json;

Checked check(const json::value& obj, const model::RegistryCatalog& catalog) {
  auto parsed = model::parse_resource(obj);
  Checked out{std::nullopt, std::move(parsed.errors)};
  if (out.errors.empty() && parsed.resource) out.errors = model::validate(*parsed.resource, catalog);
  if (out.errors.empty() && parsed.resource) out.resource = std::move(parsed.resource);
  return out;
}

std::vector<model::Resource> Context::valid_catalog_resources(bool with_policies) const {
  std::vector<model::Resource> out;
  auto add_valid = [&](const std::vector<json::value>& items) {
    for (const auto& item : items) {
      if (auto c = check(item); c.resource) out.push_back(std::move(*c.resource));
    }
  };
  add_valid(registries.items());
  if (with_policies) add_valid(policies.items());
  return out;
}

std::optional<json::value> Context::secret_object(const std::string& ns,
                                                  const std::string& name) const {
  for (const auto& inf : secrets) {
    if (auto obj = inf->get(ns + "/" + name)) return obj;
  }
  return std::nullopt;
}

std::string Context::secret_missing(const model::SecretRef& ref) const {
  const auto& watched = opts.secret_namespaces;
  if (watched.empty() || std::ranges::find(watched, ref.namespace_) != watched.end())
    return " not found";
  std::string list;
  for (const auto& ns : watched) list += (list.empty() ? "" : ", ") + ns;
  return " is outside the namespaces whose Secrets Ferry reads (--secret-namespaces " + list + ")";
}

std::optional<model::Secret> Context::secret(const model::SecretRef& ref) const {
  auto obj = secret_object(ref.namespace_, ref.name);
  if (!obj) return std::nullopt;
  auto p = model::parse_resource(*obj);
  if (!p.resource) return std::nullopt;
  if (auto* s = std::get_if<model::Secret>(&*p.resource)) return *s;
  return std::nullopt;
}

}  // namespace ferry::operator_
