// The `ferry` binary: one CLI11 app, one subcommand per mode; main parses, sets up logging, runs.
#include <algorithm>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "operator/commands.hpp"
#include "operator/logging.hpp"
#include "operator/version.hpp"

namespace {

using ferry::operator_::kVersion;

// "ferry: " or "ferry status: ", the prefix of every usage error.
std::string prefix(const CLI::App& app) {
  const auto subs = app.get_subcommands();
  return subs.empty() ? "ferry: " : "ferry " + subs.front()->get_name() + ": ";
}

int usage(const CLI::App& app, const std::string& message) {
  const auto subs = app.get_subcommands();
  std::cerr << prefix(app) << message << "\n"
            << "Run 'ferry " << (subs.empty() ? "" : subs.front()->get_name() + " ") << "--help' for usage.\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Replicates OCI images between registries the way Amazon ECR replication does.", "ferry"};
  app.allow_extras();  // inherited by the subcommands: unknown flags are reported in Ferry's words
  app.set_version_flag("--version", std::string(kVersion));
  app.require_subcommand(0, 1);
  app.footer("Run 'ferry COMMAND --help' (or 'ferry help COMMAND') for the flags of a command.");

  ferry::cli::Action action;
  ferry::cli::LogFlags log_flags;
  std::vector<CLI::App*> commands = {
      ferry::cli::add_validate(app, action), ferry::cli::add_copy(app, action), ferry::cli::add_run(app, action),
      ferry::cli::add_status(app, action), ferry::cli::add_retry(app, action), ferry::cli::add_operator(app, action)};
  // Before the command (`ferry --log-level debug run`) as after it (`ferry run --log-level debug`).
  ferry::cli::add_log_flags(app, log_flags);
  for (auto* cmd : commands) ferry::cli::add_log_flags(*cmd, log_flags);

  auto* version = app.add_subcommand("version", "Print the version");
  version->callback([&] {
    action = [] {
      std::cout << kVersion << "\n";
      return 0;
    };
  });
  std::string help_topic;
  auto* help = app.add_subcommand("help", "Print the usage of ferry or of one command");
  help->add_option("command", help_topic, "the command");
  help->callback([&] {
    action = [&] {
      if (help_topic.empty()) {
        // app.help() would describe the subcommand being run: this one.
        std::cout << app.get_formatter()->make_help(&app, "ferry", CLI::AppFormatMode::Normal);
        return 0;
      }
      for (auto* cmd : commands) {
        if (cmd->get_name() == help_topic) {
          std::cout << cmd->help("ferry");
          return 0;
        }
      }
      std::cerr << "ferry help: unknown command '" << help_topic << "'; run 'ferry --help' for the commands\n";
      return 2;
    };
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage(app, ferry::cli::usage_error(e));
  }
  if (auto extra = ferry::cli::unrecognised(app)) {
    const std::string first = app.remaining().front();
    return usage(app, first.starts_with("-") ? *extra : "unknown command '" + first + "'");
  }
  for (auto* cmd : app.get_subcommands()) {
    if (auto extra = ferry::cli::unrecognised(*cmd)) return usage(app, *extra);
  }
  if (!action) {
    std::cerr << app.help();
    return 2;
  }
  if (std::find(commands.begin(), commands.end(), app.get_subcommands().front()) != commands.end()) {
    if (auto error = ferry::operator_::configure_logging(log_flags.level, log_flags.format)) {
      return usage(app, *error);
    }
  }
  return action();
}
