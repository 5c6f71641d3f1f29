// The release this binary is: `ferry --version` and ferry_build_info.
#pragma once

#include <string_view>

namespace ferry::operator_ {
inline constexpr std::string_view kVersionNumber = "0.1.0";
inline constexpr std::string_view kVersion = "ferry 0.1.0";
}  // namespace ferry::operator_
