// The one HTTP/1.1 client (registries, the Kubernetes API, AWS): keep-alive pool per origin, TLS, a timeout on every
// operation, streaming request and response bodies. Beast lives only in http.cpp.
// Not thread-safe: one HttpClient serves coroutines on a single-threaded executor. An operation
// ends early, with a Network error, when its coroutine's cancellation slot is emitted.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net/error.hpp"

// GCC 12 misreports Asio's coroutine frame allocator (aligned_new / sized delete) as a
// mismatched new/delete in every awaitable function (GCC bug 109224); silence only that.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace ferry::net {

template <class T>
using Task = boost::asio::awaitable<T>;

struct TlsOptions {
  bool verify = true;                  // certificate chain and host name; off only by explicit opt-in
  std::vector<std::string> ca_files;   // PEM bundles trusted in addition to the system CAs
  std::vector<std::string> ca_pems;    // the same, given as PEM text (e.g. from a Secret)
  bool system_cas = true;              // false: only ca_files and ca_pems (a kubeconfig's CA)
  std::string client_cert_pem;         // a client certificate chain and its key, for mutual TLS
  std::string client_key_pem;
  bool operator==(const TlsOptions&) const = default;
};

struct HttpOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds io_timeout{60'000};  // per read/write operation
  std::size_t max_idle_per_host = 32;
  bool operator==(const HttpOptions&) const = default;
};

struct Url {
  bool tls = true;
  std::string host;    // without brackets for IPv6
  std::string port;
  std::string target;  // path and query
  std::string origin() const;        // scheme://host:port
  std::string host_header() const;   // host[:port]
  std::string to_string() const { return origin() + target; }
  static Result<Url> parse(std::string_view text);
  // Resolves a Location header (absolute or relative) against this URL.
  Result<Url> resolve(std::string_view location) const;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";
  Url url;
  Headers headers;
  std::string body;
};

// A response whose headers have been read; the body is read on demand.
class ResponseStream {
 public:
  struct Impl;
  explicit ResponseStream(std::unique_ptr<Impl> impl);
  ResponseStream(ResponseStream&&) noexcept;
  ResponseStream& operator=(ResponseStream&&) noexcept;
  ~ResponseStream();

  int status() const;
  const Headers& headers() const;
  std::string header(std::string_view name) const;  // case-insensitive, "" when absent
  std::optional<std::uint64_t> content_length() const;
  // Reads up to out.size() body bytes; 0 means the body is complete.
  Task<Result<std::size_t>> read(std::span<std::byte> out);
  // Returns as soon as some body bytes have arrived (a stream of events, e.g. a watch), waiting
  // at most `idle_timeout` for them; 0 means the body is complete.
  Task<Result<std::size_t>> read_some(std::span<std::byte> out, std::chrono::milliseconds idle_timeout);
  // Reads the rest of the body; TooLarge when it exceeds limit.
  Task<Result<std::string>> read_all(std::size_t limit);

 private:
  std::unique_ptr<Impl> impl_;
};

// A request whose headers have been sent; the body (of the declared length) is written on demand.
class RequestStream {
 public:
  struct Impl;
  explicit RequestStream(std::unique_ptr<Impl> impl);
  RequestStream(RequestStream&&) noexcept;
  RequestStream& operator=(RequestStream&&) noexcept;
  ~RequestStream();

  Task<Result<void>> write(std::span<const std::byte> data);
  // After exactly content_length bytes: reads the response headers.
  Task<Result<ResponseStream>> finish();

 private:
  std::unique_ptr<Impl> impl_;
};

class HttpClient {
 public:
  HttpClient(boost::asio::any_io_executor ex, TlsOptions tls, HttpOptions opts = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Loads the TLS context now rather than at the first TLS connection, so that a bad CA or client
  // certificate is a start-up error (Config) instead of every request's.
  Result<void> load_tls();

  // Sends req (with its string body) and reads the response headers.
  Task<Result<ResponseStream>> open(HttpRequest req);
  // Sends req's headers with Content-Length: content_length; the body follows through the stream.
  Task<Result<RequestStream>> open_upload(HttpRequest req, std::uint64_t content_length);

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace ferry::net
