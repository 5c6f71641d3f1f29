// The registry layer's errors are the transport's (net/error.hpp): what failed, where
// (registry, repository, digest) and why.
#pragma once

#include "net/error.hpp"

namespace ferry::registry {

using net::Error;
using net::ErrorKind;
using net::fail;
using net::Result;
using net::to_string;

}  // namespace ferry::registry
