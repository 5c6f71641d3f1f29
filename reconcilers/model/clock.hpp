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
// Kubernetes MicroTime ("2026-11-28T14:00:00.123456Z", exactly six digits), the format the API
// server requires for Event eventTime and Lease acquireTime/renewTime.
std::string format_micro_time(Timestamp t);
// Accepts fractional seconds of any precision and Z or ±hh:mm offsets.
std::optional<Timestamp> parse_rfc3339(std::string_view s);

}  // namespace ferry::model
