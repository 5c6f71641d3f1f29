// spdlog set-up: one line per event on stderr, as key=value text or as a JSON object
// {"ts":"2026-12-01T21:00:00.123Z","level":"info","msg":"...","key":"value",...}.
#include "operator/logging.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <mutex>

namespace ferry::operator_ {

namespace {

constexpr std::string_view kLevels = "trace, debug, info, warn, error";
constexpr std::string_view kFormats = "text, json";

std::optional<spdlog::level::level_enum> parse_level(std::string_view s) {
  if (s == "trace") return spdlog::level::trace;
  if (s == "debug") return spdlog::level::debug;
  if (s == "info") return spdlog::level::info;
  if (s == "warn" || s == "warning") return spdlog::level::warn;
  if (s == "error") return spdlog::level::err;
  return std::nullopt;
}

std::string_view level_name(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

std::string rfc3339_utc(long long millis) {
  const std::time_t secs = static_cast<std::time_t>(millis >= 0 ? millis / 1000 : (millis - 999) / 1000);
  const int ms = static_cast<int>(millis - static_cast<long long>(secs) * 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

bool key_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool key_char(char c) { return key_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-'; }

// Length of `key=` at `pos` (0 if there is none).
std::size_t key_at(std::string_view s, std::size_t pos) {
  if (pos >= s.size() || !key_start(s[pos])) return 0;
  std::size_t i = pos + 1;
  while (i < s.size() && key_char(s[i])) ++i;
  return i < s.size() && s[i] == '=' ? i + 1 - pos : 0;
}

// A value ends at the end of the text or before ` key=`.
bool boundary(std::string_view s, std::size_t pos) {
  return pos == s.size() || (s[pos] == ' ' && key_at(s, pos + 1) > 0);
}

// logfmt quoting for the text format: `"` and `\` escaped, newlines as \n.
std::string quote(std::string_view v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

class StderrSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit StderrSink(bool json) : json_(json) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const long long millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
    std::string line = format_line(json_, millis, level_name(msg.level),
                                   std::string_view(msg.payload.data(), msg.payload.size()));
    line.push_back('\n');
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }

 private:
  bool json_;
};

}  // namespace

std::optional<std::vector<std::pair<std::string, std::string>>> parse_fields(std::string_view s) {
  std::vector<std::pair<std::string, std::string>> fields;
  bool has_msg = false;
  std::size_t i = 0;
  if (key_at(s, 0) == 0) {
    // `words key=value ...`: the words are the message.
    while (i < s.size() && !(s[i] == ' ' && key_at(s, i + 1) > 0)) ++i;
    if (i == s.size()) return std::nullopt;
    fields.emplace_back("msg", std::string(s.substr(0, i)));
    has_msg = true;
  }
  while (i < s.size()) {
    if (s[i] == ' ') {
      ++i;
      continue;
    }
    const std::size_t klen = key_at(s, i);
    if (klen == 0) return std::nullopt;
    std::string key(s.substr(i, klen - 1));
    i += klen;
    std::string value;
    if (i < s.size() && s[i] == '"') {
      // The closing quote is the first `"` followed by the end or by ` key=`: values are logged
      // verbatim, so a quote inside a value does not end it.
      std::size_t j = i + 1;
      while (j < s.size() && !(s[j] == '"' && boundary(s, j + 1))) ++j;
      if (j >= s.size()) return std::nullopt;
      value = std::string(s.substr(i + 1, j - i - 1));
      i = j + 1;
    } else {
      std::size_t j = i;
      while (!boundary(s, j)) ++j;
      value = std::string(s.substr(i, j - i));
      i = j;
    }
    if (key == "msg") {
      if (has_msg) return std::nullopt;
      has_msg = true;
    }
    fields.emplace_back(std::move(key), std::move(value));
  }
  if (!has_msg) return std::nullopt;
  return fields;
}

std::string format_line(bool json, long long millis, std::string_view level, std::string_view text) {
  const auto fields = parse_fields(text);
  if (!json) {
    std::string line = "ts=" + rfc3339_utc(millis) + " level=" + std::string(level) + " ";
    if (fields && key_at(text, 0) > 0) {
      line += text;
    } else if (fields) {
      line += "msg=" + quote(fields->front().second) + std::string(text.substr(fields->front().second.size()));
    } else {
      line += "msg=" + quote(text);
    }
    return line;
  }
  boost::json::object o;
  o["ts"] = rfc3339_utc(millis);
  o["level"] = level;
  if (!fields) {
    o["msg"] = text;
  } else {
    o["msg"] = "";
    for (const auto& [k, v] : *fields) {
      // A field may not overwrite ts or level.
      const std::string key = (k == "ts" || k == "level") ? "field." + k : k;
      o[key] = v;
    }
  }
  return boost::json::serialize(o);
}

std::optional<std::string> setup_logging(std::string_view level, std::string_view format) {
  const auto l = parse_level(level);
  if (!l) {
    return "--log-level " + std::string(level) + ": unknown level; use one of " + std::string(kLevels);
  }
  if (format != "text" && format != "json") {
    return "--log-format " + std::string(format) + ": unknown format; use one of " + std::string(kFormats);
  }
  auto logger = std::make_shared<spdlog::logger>("ferry", std::make_shared<StderrSink>(format == "json"));
  logger->set_level(*l);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  spdlog::set_level(*l);
  return std::nullopt;
}

std::optional<std::string> configure_logging(const std::optional<std::string>& level_flag,
                                             const std::optional<std::string>& format_flag) {
  // Where each value came from, for the message: "--log-level bogus" or "FERRY_LOG_LEVEL=bogus".
  auto pick = [](const std::optional<std::string>& flag, std::string_view flag_name, const char* env,
                 std::string fallback) -> std::pair<std::string, std::string> {
    if (flag) return {*flag, std::string(flag_name) + " " + *flag};
    if (const char* e = std::getenv(env); e && *e) return {e, std::string(env) + "=" + e};
    return {fallback, std::string(flag_name) + " " + fallback};
  };
  const auto [level, level_from] = pick(level_flag, "--log-level", "FERRY_LOG_LEVEL", "info");
  const auto [format, format_from] = pick(format_flag, "--log-format", "FERRY_LOG_FORMAT", "text");
  if (!parse_level(level)) return level_from + ": unknown level; use one of " + std::string(kLevels);
  if (format != "text" && format != "json") {
    return format_from + ": unknown format; use one of " + std::string(kFormats);
  }
  return setup_logging(level, format);
}

}  // namespace ferry::operator_
