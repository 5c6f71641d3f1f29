// Which destinations a push to a source repository goes to (S5 prefix filters).
#pragma once

#include <string_view>
#include <vector>

#include "reconcilers/model/resources.hpp"

namespace ferry::model {

// Repository filters only (S5): a rule applies when any of its filters is a prefix of the repository name, or when it has
// no filters at all.
bool rule_applies(const ReplicationRule& rule, std::string_view repository);

// S18: whether `tag` matches a WILDCARD filter as a whole, case-sensitively; `*` matches any
// run of characters, including none. An empty tag (a push by digest only) matches nothing.
bool wildcard_match(std::string_view filter, std::string_view tag);

// A rule applies to a push when its repository filters match (S5) and, if it has tag filters,
// one of them matches the tag (S18); a push without a tag matches no tag filter.
bool rule_applies(const ReplicationRule& rule, std::string_view repository, std::string_view tag);

// Unique destinations over every rule that applies to a push of `tag` (empty: by digest only)
// into `repository`, in order of first appearance: written once if any rule reaching it applies.
std::vector<RegistryKey> destinations_for(const ReplicationConfigSpec& spec,
                                          std::string_view repository, std::string_view tag);

// Unique destinations over all rules (what S6's limit of 25 counts).
std::vector<RegistryKey> unique_destinations(const ReplicationConfigSpec& spec);

}  // namespace ferry::model
