// Helpers for model tests: build resources from YAML text and read their errors.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/validate.hpp"

namespace ferry::model::testing {

// Parses exactly one resource from YAML; fails the test on a syntax error.
inline ParsedResource parse_one(const std::string& yaml) {
  auto docs = load_documents(yaml, Format::Yaml);
  EXPECT_TRUE(docs.has_value()) << (docs ? "" : docs.error().message);
  if (!docs || docs->size() != 1) {
    ADD_FAILURE() << "expected one document";
    return {};
  }
  return parse_resource(docs->front());
}

// Parse + validate errors of one resource, as "path: message" strings.
inline std::vector<std::string> errors_of(const std::string& yaml) {
  std::vector<std::string> out;
  auto parsed = parse_one(yaml);
  for (const auto& e : parsed.errors) out.push_back(to_string(e));
  if (parsed.resource) {
    for (const auto& e : validate(*parsed.resource)) out.push_back(to_string(e));
  }
  return out;
}

// Every resource of a YAML stream; fails the test on any parse error.
inline std::vector<Resource> load_all(const std::string& yaml) {
  std::vector<Resource> out;
  auto docs = load_documents(yaml, Format::Yaml);
  EXPECT_TRUE(docs);
  if (!docs) return out;
  for (const auto& d : *docs) {
    auto p = parse_resource(d);
    for (const auto& e : p.errors) ADD_FAILURE() << to_string(e);
    if (p.resource) out.push_back(*p.resource);
  }
  return out;
}

inline std::string join_lines(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

}  // namespace ferry::model::testing
