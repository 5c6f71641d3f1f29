// Log set-up shared by the long-running commands: key=value text or JSON lines on stderr.
#pragma once

#include <string>

namespace ferry::operator_ {

// `format` is "text" (default) or "json". Level from FERRY_LOG_LEVEL (info by default).
void setup_logging(const std::string& format);

}  // namespace ferry::operator_
