// Reading Ferry resources from YAML (multi-document) and JSON, rejecting unknown fields by path.
#pragma once

#include <boost/json/value.hpp>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reconcilers/model/errors.hpp"
#include "reconcilers/model/resources.hpp"

namespace ferry::model {

// A document that cannot be read at all; line and column are 1-based (0 when unknown).
struct SyntaxError {
  std::string message;
  int line = 0;
  int column = 0;
};

enum class Format { Yaml, Json };

// Splits a file's text into its documents as JSON values. YAML plain scalars follow the
// YAML 1.2 core schema (true/false, null, integers, floats); quoted scalars stay strings.
// Empty YAML documents are skipped. `kind: List` documents are expanded into their items.
std::expected<std::vector<boost::json::value>, SyntaxError> load_documents(std::string_view text,
                                                                           Format format);

// Parses JSON text, reporting the line and column of the first error.
std::expected<boost::json::value, SyntaxError> parse_json_text(std::string_view text);

// The outcome of reading one Kubernetes object.
struct ParsedResource {
  std::string kind;  // as written, or empty
  std::string name;  // metadata.name as written, or empty
  std::optional<Resource> resource;  // set when `errors` is empty and the object is Ferry's
  FieldErrors errors;
  bool foreign = false;  // another API group (or a core kind other than Secret): skipped
};

// Reads one object: apiVersion/kind dispatch (objects of other API groups are marked `foreign`
// and not read), unknown fields rejected with their path,
// wrong types named, required fields checked, defaults applied. Status is read when present.
ParsedResource parse_resource(const boost::json::value& object);

// Parses a Go-style duration ("30s", "1m30s", "250ms", "0"); nullopt when malformed.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s);

// Parses a byte count as a Kubernetes quantity without fractions: digits with an optional
// suffix k M G T (powers of 1000) or Ki Mi Gi Ti (powers of 1024), e.g. "10Mi"; nullopt when
// malformed or over 2^63.
std::optional<std::uint64_t> parse_byte_quantity(std::string_view s);

}  // namespace ferry::model
