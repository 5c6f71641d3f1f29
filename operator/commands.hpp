// Entry points of the `ferry` subcommands; main.cpp dispatches on argv[1].
#pragma once

namespace ferry::cli {

// Each takes the arguments after the subcommand name and returns the process exit code.
int run_validate(int argc, char** argv);
int run_copy(int argc, char** argv);
int run_run(int argc, char** argv);
int run_status(int argc, char** argv);
int run_operator(int argc, char** argv);

}  // namespace ferry::cli
