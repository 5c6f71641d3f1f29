// RFC 3339 timestamps as Kubernetes and Docker distribution write them.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::model {

using Timestamp = std::chrono::system_clock::time_point;

// "2026-11-28T14:00:00Z" (seconds) or with milliseconds when `millis` is set.
std::string format_rfc3339(Timestamp t, bool millis = false);
// Accepts fractional seconds of any precision and Z or ±hh:mm offsets.
std::optional<Timestamp> parse_rfc3339(std::string_view s);

}  // namespace ferry::model
