// The `ferry` subcommands: each adds itself, its flags and its --help to the CLI11 app of main.cpp.
#pragma once

#include "operator/cli.hpp"

namespace ferry::cli {

// Each adds one subcommand to `app` and returns it; when that subcommand is the one parsed, it
// sets `action` to what runs it (after logging is set up).
CLI::App* add_validate(CLI::App& app, Action& action);
CLI::App* add_copy(CLI::App& app, Action& action);
CLI::App* add_run(CLI::App& app, Action& action);
CLI::App* add_status(CLI::App& app, Action& action);
CLI::App* add_retry(CLI::App& app, Action& action);
CLI::App* add_operator(CLI::App& app, Action& action);

}  // namespace ferry::cli
