// The `ferry` binary: dispatches to a subcommand.
#include <cstring>
#include <iostream>
#include <string_view>
#include <vector>

#include "operator/commands.hpp"
#include "operator/logging.hpp"

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

flags of every command:
  --log-level trace|debug|info|warn|error   (default info, or $FERRY_LOG_LEVEL)
  --log-format text|json                    key=value lines or one JSON object per line on stderr
                                            (default text, or $FERRY_LOG_FORMAT)
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string_view cmd = argv[1];
  if (cmd == "validate" || cmd == "copy" || cmd == "run" || cmd == "status" || cmd == "operator") {
    // --log-level and --log-format are taken out here, for every command alike.
    std::vector<char*> args(argv + 2, argv + argc);
    if (auto error = ferry::operator_::configure_logging(args)) {
      std::cerr << "ferry " << cmd << ": " << *error << "\n";
      return 2;
    }
    const int n = static_cast<int>(args.size());
    args.push_back(nullptr);
    char** a = args.data();
    if (cmd == "validate") return ferry::cli::run_validate(n, a);
    if (cmd == "copy") return ferry::cli::run_copy(n, a);
    if (cmd == "run") return ferry::cli::run_run(n, a);
    if (cmd == "status") return ferry::cli::run_status(n, a);
    return ferry::cli::run_operator(n, a);
  }
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
