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

bool wildcard_match(std::string_view filter, std::string_view tag) {
  if (tag.empty()) return false;
  // Greedy match with backtracking to the last `*`: linear in practice, no regex.
  std::size_t f = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < tag.size()) {
    if (f < filter.size() && filter[f] == '*') {
      star = f++;
      mark = t;
    } else if (f < filter.size() && filter[f] == tag[t]) {
      ++f;
      ++t;
    } else if (star != std::string_view::npos) {
      f = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (f < filter.size() && filter[f] == '*') ++f;
  return f == filter.size();
}

bool rule_applies(const ReplicationRule& rule, std::string_view repository, std::string_view tag) {
  if (!rule_applies(rule, repository)) return false;
  if (rule.tag_filters.empty()) return true;
  return std::ranges::any_of(rule.tag_filters, [&](const TagFilter& f) {
    return f.filter_type == "WILDCARD" && wildcard_match(f.filter, tag);
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
                                          std::string_view repository, std::string_view tag) {
  std::vector<RegistryKey> out;
  for (const auto& rule : spec.rules) {
    if (rule_applies(rule, repository, tag)) add_unique(out, rule.destinations);
  }
  return out;
}

std::vector<RegistryKey> unique_destinations(const ReplicationConfigSpec& spec) {
  std::vector<RegistryKey> out;
  for (const auto& rule : spec.rules) add_unique(out, rule.destinations);
  return out;
}

}  // namespace ferry::model
