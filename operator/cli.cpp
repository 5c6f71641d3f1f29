// CLI11 pieces shared by the subcommands of `ferry` (operator/cli.hpp).
#include "operator/cli.hpp"

#include <algorithm>

#include "reconcilers/model/parse.hpp"

namespace ferry::cli {

void add_log_flags(CLI::App& cmd, LogFlags& flags) {
  cmd.add_option("--log-level", flags.level, "trace|debug|info|warn|error (default info, or $FERRY_LOG_LEVEL)")
      ->type_name("LEVEL");
  cmd.add_option("--log-format", flags.format,
                 "text (key=value lines) or json (one object per line) on stderr (default text, or $FERRY_LOG_FORMAT)")
      ->type_name("FORMAT");
}

std::chrono::milliseconds duration_flag(const std::string& flag, const std::string& value) {
  const bool bare = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  auto d = model::parse_duration(bare ? value + "s" : value);
  if (!d) throw CLI::ValidationError(flag, "\"" + value + "\" is not a duration (e.g. 30s, 5m, 24h, 1h30m)");
  return *d;
}

std::string usage_error(const CLI::ParseError& e) {
  std::string msg = e.what();
  // CLI11: "--image: 1 required TEXT missing".
  if (e.get_name() == "ArgumentMismatch" && msg.ends_with(" missing") && msg.find(": ") != std::string::npos) {
    return msg.substr(0, msg.find(": ")) + " needs a value";
  }
  return msg;
}

std::optional<std::string> unrecognised(const CLI::App& cmd) {
  const auto rest = cmd.remaining();
  if (rest.empty()) return std::nullopt;
  const std::string& a = rest.front();
  if (a.size() > 1 && a.starts_with("-")) return "unknown flag " + a.substr(0, a.find('='));
  return "unexpected argument " + a;
}

void add_engine_flags(CLI::App& cmd, engine::EngineOptions& options) {
  add_duration(cmd, "--completed-ttl", options.completed_ttl,
               "records whose destinations are all COMPLETE are removed after (default 24h)");
  add_duration(cmd, "--failed-ttl", options.failed_ttl,
               "a destination failing for a cause that can pass is retried until its record is this old; "
               "records with a FAILED destination are removed this long after they finished (default 24h)");
  add_duration(cmd, "--retry-pause-max", options.retry_pause_max,
               "longest pause between two attempts at one destination (default 10m)");
  cmd.add_option_function<std::size_t>(
         "--max-parallel", [&options](std::size_t n) { options.max_parallel = std::max<std::size_t>(1, n); },
         "destination copies in flight (default 16)")
      ->type_name("N");
}

}  // namespace ferry::cli
