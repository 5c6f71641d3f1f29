// `ferry validate -f FILE|DIR...`: offline validation for CI and pre-commit hooks in GitOps repos.
#include <iostream>
#include <memory>
#include <vector>

#include "operator/commands.hpp"
#include "store/manifest_loader.hpp"

namespace ferry::cli {

namespace {

int validate(const std::vector<std::filesystem::path>& paths) {
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

}  // namespace

CLI::App* add_validate(CLI::App& app, Action& action) {
  struct Flags {
    std::vector<std::string> files, positional;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("validate", "Validate Ferry resources offline (for CI and pre-commit hooks)");
  cmd->footer(
      "Validates Ferry resources (and v1 Secrets) as one set, as `ferry run --manifests` reads them.\n"
      "Exit codes: 0 all valid; 1 invalid resources (one line each: FILE: Kind/name: field.path: message);\n"
      "2 unreadable or unparsable files, or a usage error.");
  cmd->add_option("-f,--filename", f->files, "a YAML file, or a directory of them (repeatable)")->type_name("FILE|DIR")
      ->allow_extra_args(false);
  cmd->add_option("paths", f->positional, "more files or directories")->type_name("FILE|DIR");
  cmd->callback([f, &action] {
    action = [f] {
      std::vector<std::filesystem::path> paths(f->files.begin(), f->files.end());
      paths.insert(paths.end(), f->positional.begin(), f->positional.end());
      if (paths.empty()) {
        std::cerr << "ferry validate: no files given; usage: ferry validate -f FILE|DIR...\n";
        return 2;
      }
      return validate(paths);
    };
  });
  return cmd;
}

}  // namespace ferry::cli
