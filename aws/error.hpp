// Typed errors of the AWS clients: which service and operation, AWS's error code, and whether a
// retry can help. Secrets never appear here: messages are built from codes and server text only.
#pragma once

#include <expected>
#include <string>
#include <string_view>

#include "registry/error.hpp"

namespace ferry::aws {

enum class ErrorKind {
  Transport,    // connect, TLS, timeout, reset: registry::Error underneath
  Service,      // AWS answered with an error (code, message, status)
  Protocol,     // AWS answered something we cannot read
  Credentials,  // no credentials configured, or a provider could not produce them
  Config,       // bad endpoint, region, Secret
};

struct Error {
  ErrorKind kind = ErrorKind::Protocol;
  std::string service;    // "ecr", "sqs", "sts", "container credentials"
  std::string operation;  // "CreateRepository"
  std::string code;       // "RepositoryNotFoundException", "ThrottlingException", ...
  std::string message;
  int http_status = 0;
  bool retryable = false;  // throttling, 5xx, transport failures

  bool is(std::string_view c) const { return code == c; }
  // "ecr CreateRepository: RepositoryAlreadyExistsException (400): The repository ... already exists"
  std::string to_string() const;
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(ErrorKind kind, std::string service, std::string operation, std::string message) {
  return std::unexpected(
      Error{.kind = kind, .service = std::move(service), .operation = std::move(operation), .message = std::move(message)});
}

// A transport failure (registry::Error from HttpClient) as an AWS error; retryable when the
// transport says so.
Error from_transport(const registry::Error& e, std::string service, std::string operation);

// Error codes AWS documents as throttling; retried with backoff.
bool is_throttling(std::string_view code);

// "https://api.ecr.us-east-1.amazonaws.com": https://<prefix>.<region>.amazonaws.com, with
// amazonaws.com.cn for the China regions (cn-north-1, cn-northwest-1).
std::string default_endpoint(std::string_view prefix, std::string_view region);

}  // namespace ferry::aws
