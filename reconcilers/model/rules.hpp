// Which destinations a push to a source repository goes to (S5 prefix filters).
#pragma once

#include <string_view>
#include <vector>

#include "reconcilers/model/resources.hpp"

namespace ferry::model {

// A rule applies when any of its filters is a prefix of the repository name, or when it has
// no filters at all.
bool rule_applies(const ReplicationRule& rule, std::string_view repository);

// Unique destinations over every rule that applies, in order of first appearance.
std::vector<RegistryKey> destinations_for(const ReplicationConfigSpec& spec,
                                          std::string_view repository);

// Unique destinations over all rules (what S6's limit of 25 counts).
std::vector<RegistryKey> unique_destinations(const ReplicationConfigSpec& spec);

}  // namespace ferry::model
