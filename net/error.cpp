// Names of error kinds, which ones a retry may cure, and the one-line form users read.
#include "net/error.hpp"

namespace ferry::net {

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidReference: return "invalid reference";
    case ErrorKind::Network: return "network error";
    case ErrorKind::Timeout: return "timed out";
    case ErrorKind::Tls: return "TLS error";
    case ErrorKind::Unauthorized: return "unauthorized";
    case ErrorKind::Denied: return "denied";
    case ErrorKind::NotFound: return "not found";
    case ErrorKind::Http: return "HTTP error";
    case ErrorKind::DigestMismatch: return "digest mismatch";
    case ErrorKind::TooLarge: return "too large";
    case ErrorKind::Protocol: return "protocol error";
    case ErrorKind::Unsupported: return "unsupported";
    case ErrorKind::Config: return "configuration error";
  }
  return "error";
}

bool Error::retryable() const {
  switch (kind) {
    case ErrorKind::Network:
    case ErrorKind::Timeout: return true;
    case ErrorKind::Http: return http_status == 408 || http_status == 429 || (http_status >= 500 && http_status != 501 && http_status != 505);
    default: return false;
  }
}

std::string Error::to_string() const {
  std::string out = operation;
  std::string where = registry;
  if (!repository.empty()) where += (where.empty() ? "" : "/") + repository;
  if (!digest.empty()) where += "@" + digest;
  if (!where.empty()) out += (out.empty() ? "" : " ") + where;
  if (!out.empty()) out += ": ";
  out += std::string(net::to_string(kind));
  if (http_status != 0 || !code.empty()) {
    out += " (";
    if (http_status != 0) out += std::to_string(http_status);
    if (!code.empty()) out += (http_status != 0 ? " " : "") + code;
    out += ")";
  }
  if (!message.empty()) out += ": " + message;
  return out;
}

}  // namespace ferry::net
