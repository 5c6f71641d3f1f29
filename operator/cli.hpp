// The `ferry` command line on CLI11: what every subcommand shares (log flags, durations, usage errors).
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "engine/replication_engine.hpp"

namespace ferry::cli {

// What a parsed subcommand does; returns the process exit code.
using Action = std::function<int()>;

// --log-level and --log-format, taken by every subcommand; unset means $FERRY_LOG_LEVEL /
// $FERRY_LOG_FORMAT, else info / text (operator/logging.hpp).
struct LogFlags {
  std::optional<std::string> level;
  std::optional<std::string> format;
};
void add_log_flags(CLI::App& cmd, LogFlags& flags);

// `value` as a duration: "30s", "5m", "24h", "1h30m", "250ms" (model::parse_duration); a bare
// number is seconds, as these flags took before. Throws CLI::ValidationError naming `flag`.
std::chrono::milliseconds duration_flag(const std::string& flag, const std::string& value);

// An option taking a duration into `out`.
template <class Rep, class Period>
CLI::Option* add_duration(CLI::App& cmd, const std::string& name, std::chrono::duration<Rep, Period>& out,
                          const std::string& description) {
  const std::string flag = name.substr(0, name.find(','));
  return cmd
      .add_option_function<std::string>(
          name,
          [&out, flag](const std::string& v) {
            out = std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(duration_flag(flag, v));
          },
          description)
      ->type_name("DURATION");
}

// The replication engine's flags, the same for `run` and `operator`: --completed-ttl,
// --failed-ttl, --retry-pause-max (durations) and --max-parallel.
void add_engine_flags(CLI::App& cmd, engine::EngineOptions& options);

// The one-line message of a usage error, in Ferry's words ("--image needs a value").
std::string usage_error(const CLI::ParseError& e);

// The first argument `cmd` did not recognise ("unknown flag --bogus" or "unexpected argument x"),
// or nullopt when it took them all.
std::optional<std::string> unrecognised(const CLI::App& cmd);

}  // namespace ferry::cli
