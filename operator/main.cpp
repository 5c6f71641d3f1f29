// The `ferry` binary: dispatches to a subcommand.
#include <cstring>
#include <iostream>
#include <string_view>

#include "operator/commands.hpp"

namespace {

constexpr std::string_view kUsage = R"(usage: ferry COMMAND [ARGS]

commands:
  validate -f FILE|DIR...   validate Ferry resources offline (exit 0 valid, 1 invalid, 2 unreadable)
  copy SRC DST              copy one image or index between registries
  run --manifests DIR       replicate without a cluster: resources from DIR, records in --state-dir
  status --repository R --image TAG|DIGEST
                            replication status of one image (DescribeImageReplicationStatus JSON)
  operator                  run the controllers against a Kubernetes API server (--kubeconfig or in-cluster)
  version                   print the version
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string_view cmd = argv[1];
  if (cmd == "validate") return ferry::cli::run_validate(argc - 2, argv + 2);
  if (cmd == "copy") return ferry::cli::run_copy(argc - 2, argv + 2);
  if (cmd == "run") return ferry::cli::run_run(argc - 2, argv + 2);
  if (cmd == "status") return ferry::cli::run_status(argc - 2, argv + 2);
  if (cmd == "operator") return ferry::cli::run_operator(argc - 2, argv + 2);
  if (cmd == "version" || cmd == "--version") {
    std::cout << "ferry 0.1.0\n";
    return 0;
  }
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    std::cout << kUsage;
    return 0;
  }
  std::cerr << "ferry: unknown command '" << cmd << "'\n" << kUsage;
  return 2;
}
