// Log set-up shared by every subcommand: key=value text or JSON lines on stderr.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::operator_ {

// Installs the stderr logger from the values of --log-level and --log-format (nullopt when not
// given), with FERRY_LOG_LEVEL / FERRY_LOG_FORMAT as defaults, then info / text. Levels: trace,
// debug, info, warn (or warning), error; formats: text, json. Returns an error message (the caller
// exits 2) for an unknown value, naming where it came from; never falls back silently.
std::optional<std::string> configure_logging(const std::optional<std::string>& level_flag,
                                             const std::optional<std::string>& format_flag);

// Installs the logger directly; `level` and `format` as above. Returns an error message if unknown.
std::optional<std::string> setup_logging(std::string_view level, std::string_view format);

// The key=value fields of a message in the code's form `msg="..." key=value key="quoted value"`
// (or `words key=value ...`, the words being msg)
// (values kept verbatim, as strings); nullopt when the text is not in that form or has no msg.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_fields(std::string_view text);

// One log line (without the newline) as `format` writes it; `millis` since the Unix epoch.
std::string format_line(bool json, long long millis, std::string_view level, std::string_view text);

}  // namespace ferry::operator_
