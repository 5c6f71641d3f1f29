// The registry layer talks HTTP through the one transport, net/http.hpp; these are its names here.
#pragma once

#include "net/http.hpp"
#include "registry/error.hpp"

namespace ferry::registry {

using net::Headers;
using net::HttpClient;
using net::HttpOptions;
using net::HttpRequest;
using net::RequestStream;
using net::ResponseStream;
using net::Task;
using net::TlsOptions;
using net::Url;

}  // namespace ferry::registry
