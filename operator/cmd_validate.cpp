// `ferry validate -f FILE|DIR...`: offline validation for CI and pre-commit hooks in GitOps repos.
#include <iostream>
#include <string_view>
#include <vector>

#include "operator/commands.hpp"
#include "store/manifest_loader.hpp"

namespace ferry::cli {

int run_validate(int argc, char** argv) {
  std::vector<std::filesystem::path> paths;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-f" || arg == "--filename") continue;
    if (arg.starts_with("--filename=")) {
      paths.emplace_back(arg.substr(11));
    } else if (arg == "-h" || arg == "--help") {
      std::cout << "usage: ferry validate -f FILE|DIR [-f FILE|DIR ...]\n"
                   "Validates Ferry resources (and v1 Secrets) as one set.\n"
                   "exit 0: all valid; 1: invalid resources (one line each: FILE: Kind/name: "
                   "field.path: message); 2: unreadable or unparsable files\n";
      return 0;
    } else if (arg.starts_with("-")) {
      std::cerr << "ferry validate: unknown flag " << arg << "\n";
      return 2;
    } else {
      paths.emplace_back(arg);
    }
  }
  if (paths.empty()) {
    std::cerr << "ferry validate: no files given; usage: ferry validate -f FILE|DIR...\n";
    return 2;
  }
  const auto set = store::load_manifests(paths);
  for (const auto& p : set.unreadable) std::cout << p.to_string() << "\n";
  for (const auto& p : set.invalid) std::cout << p.to_string() << "\n";
  if (!set.unreadable.empty()) return 2;
  if (!set.invalid.empty()) return 1;
  std::cerr << set.resources.size() << " resources valid";
  if (set.skipped > 0) std::cerr << ", " << set.skipped << " objects of other API groups skipped";
  std::cerr << "\n";
  return 0;
}

}  // namespace ferry::cli
