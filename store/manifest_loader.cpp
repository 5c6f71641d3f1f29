// Loading and validating a set of manifest files.
#include "store/manifest_loader.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "reconcilers/model/validate.hpp"

namespace ferry::store {
namespace fs = std::filesystem;

std::string ObjectProblem::to_string() const {
  return file + ": " + (kind.empty() ? "<no kind>" : kind) + "/" + (name.empty() ? "<no name>" : name) +
         ": " + model::to_string(error);
}

std::string FileProblem::to_string() const {
  std::string out = file;
  if (error.line > 0) out += ":" + std::to_string(error.line) + ":" + std::to_string(error.column);
  return out + ": " + error.message;
}

namespace {

bool is_manifest(const fs::path& p) {
  const auto ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

}  // namespace

std::vector<fs::path> manifest_files(const std::vector<fs::path>& roots,
                                     std::vector<FileProblem>& unreadable) {
  std::vector<fs::path> out;
  for (const auto& root : roots) {
    std::error_code ec;
    if (fs::is_directory(root, ec)) {
      std::vector<fs::path> found;
      for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
           it.increment(ec)) {
        if (it->is_regular_file() && is_manifest(it->path())) found.push_back(it->path());
      }
      if (ec) unreadable.push_back({root.string(), {"cannot read directory: " + ec.message()}});
      std::ranges::sort(found);
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::exists(root, ec)) {
      out.push_back(root);
    } else {
      unreadable.push_back({root.string(), {"no such file or directory"}});
    }
  }
  return out;
}

LoadedSet load_manifests(const std::vector<fs::path>& roots) {
  LoadedSet set;
  std::vector<LoadedResource> parsed;
  for (const auto& file : manifest_files(roots, set.unreadable)) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      set.unreadable.push_back({file.string(), {"cannot open file"}});
      continue;
    }
    std::stringstream buf;
    buf << in.rdbuf();
    const auto format = file.extension() == ".json" ? model::Format::Json : model::Format::Yaml;
    auto docs = model::load_documents(buf.str(), format);
    if (!docs) {
      set.unreadable.push_back({file.string(), docs.error()});
      continue;
    }
    for (const auto& doc : *docs) {
      auto result = model::parse_resource(doc);
      if (result.foreign) {
        ++set.skipped;
        continue;
      }
      for (auto& e : result.errors) {
        set.invalid.push_back({file.string(), result.kind, result.name, std::move(e)});
      }
      if (result.resource) parsed.push_back({std::move(*result.resource), file.string()});
    }
  }

  std::vector<model::Resource> all;
  all.reserve(parsed.size());
  for (const auto& p : parsed) all.push_back(p.resource);
  const model::RegistryCatalog catalog(all);
  std::set<std::size_t> rejected;
  for (std::size_t i = 0; i < parsed.size(); ++i) {
    const auto& md = model::metadata_of(parsed[i].resource);
    for (auto& e : model::validate(parsed[i].resource, catalog)) {
      set.invalid.push_back({parsed[i].file, std::string(model::kind_of(parsed[i].resource)), md.name, e});
      rejected.insert(i);
    }
  }
  for (auto& p : model::validate_set(all)) {
    const auto& md = model::metadata_of(all[p.index]);
    p.error.message += " (the other is in " + parsed[p.other].file + ")";
    set.invalid.push_back({parsed[p.index].file, std::string(model::kind_of(all[p.index])), md.name,
                           std::move(p.error)});
    rejected.insert(p.index);
  }
  for (std::size_t i = 0; i < parsed.size(); ++i) {
    if (!rejected.contains(i)) set.resources.push_back(std::move(parsed[i]));
  }
  return set;
}

}  // namespace ferry::store
