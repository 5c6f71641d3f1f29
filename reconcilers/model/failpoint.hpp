// Named crash points for the failpoint sweep (tests/e2e/test_failpoints.py, docs/reliability.md).
// In a build with FERRY_FAILPOINTS defined (CMake option FERRY_FAILPOINTS, on in test builds, off
// in the image's Release build), FERRY_FAILPOINT("name") ends the process at once with _exit(86)
// when the environment holds FERRY_FAILPOINT=name (the first pass) or name:N (the N-th pass):
// no destructor runs and nothing is flushed, as when the machine dies at that instant. Elsewhere
// the macro is nothing.
#pragma once

#ifdef FERRY_FAILPOINTS
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace ferry::failpoint {

struct Armed {
  explicit Armed(const char* env) {
    std::string spec = env ? env : "";
    if (auto colon = spec.rfind(':'); colon != std::string::npos) {
      nth = std::strtol(spec.c_str() + colon + 1, nullptr, 10);
      spec.resize(colon);
    }
    name = spec;
  }
  std::string name;
  long nth = 1;
  std::atomic<long> passes{0};
};

inline Armed& armed() {
  static Armed a(std::getenv("FERRY_FAILPOINT"));
  return a;
}

inline void hit(std::string_view name) {
  auto& a = armed();
  if (a.name.empty() || a.name != name) return;
  if (a.passes.fetch_add(1) + 1 != a.nth) return;
  std::fprintf(stderr, "failpoint %s reached (pass %ld): exiting 86\n", a.name.c_str(), a.nth);
  _exit(86);
}

}  // namespace ferry::failpoint

#define FERRY_FAILPOINT(name) ::ferry::failpoint::hit(name)
#else
#define FERRY_FAILPOINT(name) ((void)0)
#endif
