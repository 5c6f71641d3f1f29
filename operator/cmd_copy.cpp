// `ferry copy SRC DST`: placeholder until the registry data plane lands (issue 3).
#include <iostream>

#include "operator/commands.hpp"

namespace ferry::cli {

int run_copy(int, char**) {
  std::cerr << "ferry copy: not implemented yet\n";
  return 2;
}

}  // namespace ferry::cli
