// Fuzzes Go-style durations ("1m30s", "250ms"), as written in resources and command-line flags.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "reconcilers/model/parse.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto d = ferry::model::parse_duration(text);
  // Every unit is positive and no sign is accepted: a negative result is an overflow.
  if (d && d->count() < 0) std::abort();
  return 0;
}
