// spdlog set-up: one line per event on stderr, as key=value text or as a JSON object.
#include "operator/logging.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace ferry::operator_ {

namespace {

// Writes {"time":..., "level":..., "event":"msg=... key=value ..."} with proper escaping.
class JsonStderrSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t time;
    formatter_->format(msg, time);
    boost::json::object o{{"time", std::string(time.data(), time.size())},
                          {"level", std::string(spdlog::level::to_string_view(msg.level).data(),
                                                spdlog::level::to_string_view(msg.level).size())},
                          {"event", std::string(msg.payload.data(), msg.payload.size())}};
    std::string line = boost::json::serialize(o);
    line.push_back('\n');
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

}  // namespace

void setup_logging(const std::string& format) {
  std::shared_ptr<spdlog::logger> logger;
  if (format == "json") {
    auto sink = std::make_shared<JsonStderrSink>();
    sink->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ");
    logger = std::make_shared<spdlog::logger>("ferry", sink);
    spdlog::set_default_logger(logger);
  } else {
    logger = spdlog::stderr_logger_mt("ferry");
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc);
  }
  logger->flush_on(spdlog::level::info);
  const char* level = std::getenv("FERRY_LOG_LEVEL");
  spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::info);
}

}  // namespace ferry::operator_
