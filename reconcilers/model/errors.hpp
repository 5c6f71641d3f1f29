// Field-level errors shared by parsing and validation: what is wrong and where.
#pragma once

#include <string>
#include <vector>

namespace ferry::model {

// One problem with one field: `path` is the field path in the object ("spec.rules[0].repositoryFilters"),
// `message` says what is wrong and which limit applies.
struct FieldError {
  std::string path;
  std::string message;
  bool operator==(const FieldError&) const = default;
};

using FieldErrors = std::vector<FieldError>;

// "spec.rules[0].destinations: message"
std::string to_string(const FieldError& e);

}  // namespace ferry::model
