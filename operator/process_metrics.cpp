#include "operator/process_metrics.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include "operator/version.hpp"

namespace ferry::operator_ {

namespace {

prometheus::MetricFamily one(std::string name, std::string help, prometheus::MetricType type,
                             double value, std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return {std::move(name), std::move(help), type, {std::move(m)}};
}

// Fields of /proc/self/stat after the command name (which may hold spaces): index 0 is field 3.
std::vector<std::string> stat_fields() {
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  std::vector<std::string> out;
  if (close == std::string::npos) return out;
  std::istringstream rest(text.substr(close + 1));
  for (std::string f; rest >> f;) out.push_back(f);
  return out;
}

double boot_time() {
  std::ifstream in("/proc/stat");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("btime ")) return std::stod(line.substr(6));
  }
  return 0;
}

}  // namespace

std::string process_metrics_text() {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> families;
  const auto f = stat_fields();
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // Fields (1-based, proc(5)): 14 utime, 15 stime, 22 starttime, 23 vsize, 24 rss.
  auto field = [&](std::size_t n) { return n - 3 < f.size() ? std::stod(f[n - 3]) : 0.0; };
  if (f.size() >= 22 && ticks > 0) {
    families.push_back(one("process_cpu_seconds_total", "User and system CPU time spent in seconds",
                           MetricType::Counter, (field(14) + field(15)) / ticks));
    families.push_back(one("process_start_time_seconds",
                           "Start time of the process since the Unix epoch in seconds",
                           MetricType::Gauge, boot_time() + field(22) / ticks));
    families.push_back(one("process_virtual_memory_bytes", "Virtual memory size in bytes",
                           MetricType::Gauge, field(23)));
    families.push_back(one("process_resident_memory_bytes", "Resident memory size in bytes",
                           MetricType::Gauge, field(24) * page));
  }
  std::error_code ec;
  std::size_t fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  families.push_back(one("process_open_fds", "Number of open file descriptors", MetricType::Gauge,
                         static_cast<double>(fds)));
  if (rlimit lim{}; getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    families.push_back(one("process_max_fds", "Maximum number of open file descriptors",
                           MetricType::Gauge, static_cast<double>(lim.rlim_cur)));
  }
  families.push_back(one("ferry_build_info", "Always 1; the version of this Ferry binary",
                         MetricType::Gauge, 1, {{"version", std::string(kVersionNumber)}}));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace ferry::operator_
