// Process metrics as Prometheus client libraries name them (process_cpu_seconds_total,
// process_resident_memory_bytes, …, read from /proc/self at scrape time) and ferry_build_info.
#pragma once

#include <string>

namespace ferry::operator_ {

// The Prometheus text exposition of the process metrics and ferry_build_info{version}.
std::string process_metrics_text();

}  // namespace ferry::operator_
