// Runs the real `ferry` binary (FERRY_BINARY) with a shell-quoted argument string, as a user would.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace ferry::cli_test {

struct Run {
  int exit_code;
  std::string out;  // stdout, then stderr when `merge` (2>&1)
};

inline Run ferry(const std::string& args, bool merge = true) {
  const std::string cmd = std::string(FERRY_BINARY) + " " + args + (merge ? " 2>&1" : " 2>/dev/null");
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::string out;
  std::array<char, 4096> buf{};
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace ferry::cli_test
