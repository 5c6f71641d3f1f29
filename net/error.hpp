// Typed errors of the transport and the clients on it: what failed, where (registry or server,
// repository, digest) and why. The registry layer speaks these as registry::Error.
#pragma once

#include <expected>
#include <string>

namespace ferry::net {

enum class ErrorKind {
  InvalidReference,  // bad name, tag or digest; nothing was sent
  Network,           // connect, reset, EOF
  Timeout,
  Tls,
  Unauthorized,      // 401 after authenticating
  Denied,            // 403
  NotFound,          // 404 / *_UNKNOWN
  Http,              // other HTTP status
  DigestMismatch,    // bytes do not match their digest
  TooLarge,          // manifest over the limit
  Protocol,          // malformed response
  Unsupported,       // unknown media type, digest algorithm
  Config,            // bad credentials file, CA file
};

std::string_view to_string(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::Protocol;
  std::string message;      // why
  std::string operation;    // what, e.g. "GET manifest"
  std::string registry;     // where
  std::string repository;
  std::string digest;
  int http_status = 0;
  std::string code;         // registry error code, e.g. MANIFEST_UNKNOWN
  int retry_after_ms = -1;  // from Retry-After, when the server sent one
  // Set by the copier when the failure is the source's: a request to the source registry, or
  // bytes it served. A source NotFound (MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN) is
  // permanent for the copy, while the same codes from a destination (an expired upload) may pass.
  bool at_source = false;

  bool retryable() const;
  // One line for users: "GET manifest 127.0.0.1:5000/app@sha256:..: not found (404 MANIFEST_UNKNOWN): ..."
  std::string to_string() const;
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(ErrorKind kind, std::string message) {
  return std::unexpected(Error{.kind = kind, .message = std::move(message)});
}

}  // namespace ferry::net
