// Loads Ferry resources from YAML/JSON files and directories, as `ferry validate` and `ferry run` read them.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/resources.hpp"

namespace ferry::store {

struct LoadedResource {
  model::Resource resource;
  std::string file;
};

// A problem with one object in one file, printed as `FILE: Kind/name: path: message`.
struct ObjectProblem {
  std::string file;
  std::string kind;
  std::string name;
  model::FieldError error;
  std::string to_string() const;
};

// A file that could not be read or parsed, printed as `FILE:LINE:COLUMN: message`.
struct FileProblem {
  std::string file;
  model::SyntaxError error;
  std::string to_string() const;
};

struct LoadedSet {
  std::vector<LoadedResource> resources;  // valid resources only
  std::vector<ObjectProblem> invalid;     // parse and validation problems, set problems included
  std::vector<FileProblem> unreadable;
  std::size_t skipped = 0;  // objects of other API groups (e.g. an Argo CD Application)
};

// Every *.yaml, *.yml and *.json file under the given files and directories (recursively,
// sorted); other files in directories are skipped, but a file named explicitly is read
// whatever its extension (.json by content type, anything else as YAML).
std::vector<std::filesystem::path> manifest_files(const std::vector<std::filesystem::path>& roots,
                                                  std::vector<FileProblem>& unreadable);

// Reads, parses and validates the whole set: each object on its own, then across the set
// (duplicates, one ReplicationConfig/RegistryPolicy/Registry per registry). Resources with
// problems are left out of `resources`.
LoadedSet load_manifests(const std::vector<std::filesystem::path>& roots);

}  // namespace ferry::store
