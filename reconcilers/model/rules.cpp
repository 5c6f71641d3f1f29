// Prefix-filter matching and destination sets.
#include "reconcilers/model/rules.hpp"

#include <algorithm>

namespace ferry::model {

bool rule_applies(const ReplicationRule& rule, std::string_view repository) {
  if (rule.repository_filters.empty()) return true;
  return std::ranges::any_of(rule.repository_filters, [&](const RepositoryFilter& f) {
    return f.filter_type == "PREFIX_MATCH" && repository.starts_with(f.filter);
  });
}

namespace {

void add_unique(std::vector<RegistryKey>& out, const std::vector<RegistryKey>& keys) {
  for (const auto& k : keys) {
    if (std::ranges::find(out, k) == out.end()) out.push_back(k);
  }
}

}  // namespace

std::vector<RegistryKey> destinations_for(const ReplicationConfigSpec& spec,
                                          std::string_view repository) {
  std::vector<RegistryKey> out;
  for (const auto& rule : spec.rules) {
    if (rule_applies(rule, repository)) add_unique(out, rule.destinations);
  }
  return out;
}

std::vector<RegistryKey> unique_destinations(const ReplicationConfigSpec& spec) {
  std::vector<RegistryKey> out;
  for (const auto& rule : spec.rules) add_unique(out, rule.destinations);
  return out;
}

}  // namespace ferry::model
