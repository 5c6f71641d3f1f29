// The command line every subcommand shares (CLI11): --help per command, `ferry help CMD`, the
// version, unknown flags and missing values (exit 2, named), and durations such as 30s.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "tests/cli/run_ferry.hpp"

namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ferry::cli_test::ferry;

struct CommandFlags {
  std::string command;
  std::vector<std::string> flags;
};

TEST(CliHelp, EachCommandListsItsOwnFlagsAndTheLogFlags) {
  const std::vector<CommandFlags> cases = {
      {"validate", {"--filename"}},
      {"copy", {"--src-authfile", "--dest-tls-verify", "--jobs", "--from-file", "--quiet"}},
      {"run", {"--manifests", "--state-dir", "--listen", "--completed-ttl", "--max-parallel"}},
      {"status", {"--repository", "--image", "--output", "--wait", "--timeout", "--kubeconfig", "--backfill"}},
      {"operator", {"--kubeconfig", "--leader-elect", "--metrics-bind-address", "--graceful-shutdown-timeout",
                    "--webhook-port", "--secret-namespaces"}},
  };
  for (const auto& c : cases) {
    auto r = ferry(c.command + " --help");
    EXPECT_EQ(r.exit_code, 0) << c.command << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr("Usage: ferry " + c.command)) << c.command;
    for (const auto& f : c.flags) EXPECT_THAT(r.out, HasSubstr(f)) << c.command << " --help lacks " << f;
    EXPECT_THAT(r.out, AllOf(HasSubstr("--log-level"), HasSubstr("--log-format"))) << c.command;
    // `ferry help CMD` prints the same.
    auto h = ferry("help " + c.command);
    EXPECT_EQ(h.exit_code, 0);
    EXPECT_EQ(h.out, r.out) << c.command;
  }
  // A command's help shows its flags only.
  EXPECT_THAT(ferry("run --help").out, Not(HasSubstr("--leader-elect")));
}

TEST(CliHelp, StatusHelpDocumentsTheExitCodes) {
  auto r = ferry("status --help");
  EXPECT_THAT(r.out, AllOf(HasSubstr("0 every destination COMPLETE"), HasSubstr("1 a destination FAILED"),
                           HasSubstr("3 a destination still")));
}

TEST(CliHelp, TopLevelHelpListsTheCommandsAndUnknownHelpTopicIsExitTwo) {
  auto r = ferry("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* c : {"validate", "copy", "run", "status", "operator", "version"}) EXPECT_THAT(r.out, HasSubstr(c));
  EXPECT_EQ(ferry("help").out, r.out);
  auto bad = ferry("help frobnicate");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.out, HasSubstr("unknown command 'frobnicate'"));
  EXPECT_EQ(ferry("").exit_code, 2);  // no command is a usage error
}

TEST(CliVersion, FlagAndCommandPrintTheVersion) {
  auto flag = ferry("--version");
  auto cmd = ferry("version");
  EXPECT_EQ(flag.exit_code, 0);
  EXPECT_EQ(cmd.exit_code, 0);
  EXPECT_THAT(flag.out, HasSubstr("ferry 0."));
  EXPECT_EQ(flag.out, cmd.out);
}

TEST(CliErrors, UnknownFlagIsExitTwoAndNamed) {
  for (const char* c : {"validate", "copy", "run", "status", "operator"}) {
    auto r = ferry(std::string(c) + " --frobnicate=3");
    EXPECT_EQ(r.exit_code, 2) << c;
    EXPECT_THAT(r.out, HasSubstr(std::string("ferry ") + c + ": unknown flag --frobnicate")) << c << ": " << r.out;
  }
  auto top = ferry("--frobnicate");
  EXPECT_EQ(top.exit_code, 2);
  EXPECT_THAT(top.out, HasSubstr("ferry: unknown flag --frobnicate"));
}

TEST(CliErrors, MissingValueAndBadNumbersAreExitTwo) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"status --repository r --image", "ferry status: --image needs a value"},
      {"operator --workers many", "--workers"},
      {"copy --jobs 0 a b", "--jobs"},
      {"status --repository r -o xml", "--output"},
      {"run", "ferry run: --manifests DIR is required"},
  };
  for (const auto& [args, message] : cases) {
    auto r = ferry(args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_THAT(r.out, HasSubstr(message)) << args;
  }
}

// Durations: 30s, 5m, 24h, 1h30m everywhere a time is taken; a bad one is exit 2 naming the flag.
// The run stops right after parsing (no such directory / kubeconfig), which shows the value passed.
TEST(CliDurations, EveryTimeFlagTakesUnits) {
  auto grace = ferry("operator --graceful-shutdown-timeout=30s --kubeconfig /nonexistent/kubeconfig");
  EXPECT_EQ(grace.exit_code, 1) << grace.out;  // past the flags: the kubeconfig is what fails
  EXPECT_THAT(grace.out, HasSubstr("cannot read /nonexistent/kubeconfig"));
  auto bare = ferry("operator --graceful-shutdown-timeout 10 --kubeconfig /nonexistent/kubeconfig");
  EXPECT_EQ(bare.exit_code, 1) << bare.out;  // a bare number stays seconds
  auto ttl = ferry("operator --completed-ttl 1h30m --kubeconfig /nonexistent/kubeconfig");
  EXPECT_EQ(ttl.exit_code, 1) << ttl.out;
  auto run = ferry("run --completed-ttl 24h --manifests /nonexistent/manifests");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.out, HasSubstr("--manifests /nonexistent/manifests: not a directory"));
  auto wait = ferry("status --state-dir /nonexistent/state --repository r --wait --timeout 5m");
  EXPECT_EQ(wait.exit_code, 2);
  EXPECT_THAT(wait.out, HasSubstr("not a Ferry state directory"));
  for (const char* bad : {"operator --graceful-shutdown-timeout=30x", "operator --completed-ttl soon",
                          "run --manifests /tmp --completed-ttl 1d", "status --repository r --timeout=-5s"}) {
    auto r = ferry(bad);
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_THAT(r.out, HasSubstr("is not a duration")) << bad << ": " << r.out;
  }
}

}  // namespace
