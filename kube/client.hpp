// HTTP(S) client for the Kubernetes API (and plain registry probes) on the one transport,
// net::HttpClient, behind a small blocking interface, so that callers need not include Asio.
#pragma once

#include <chrono>
#include <expected>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>

#include "kube/config.hpp"
#include "kube/request.hpp"

namespace ferry::kube {

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds request_timeout{std::chrono::seconds(30)};  // whole request/response
  std::string user_agent = "ferry-operator/0.1.0";
};

struct HttpResponse {
  unsigned status = 0;
  std::string body;
  std::string www_authenticate;
  std::string retry_after;
};

// Thread-safe: the exchanges run on a thread of the client's own ("kube-http"), on kept-alive
// connections (up to 8 idle ones), and each call waits for its answer on the calling thread, where
// a stream's lines are delivered too. Every read and write has a timeout; a stop request cancels
// the exchange at once. TLS verifies the server's certificate and host name unless the config says
// insecure-skip-tls-verify; a kubeconfig's CA is the only one trusted, as client-go does.
// Credentials come from a TokenSource: with an exec plugin, a 401 answer runs the plugin again and
// the request goes once more (streams too: a watch refused with 401 is retried before any line is
// delivered); a plugin that fails is an ApiError with code 0, reason "Credentials", naming the
// kubeconfig user and the command.
class Client {
 public:
  // Throws std::runtime_error when the CA or client certificate cannot be loaded (start-up
  // configuration).
  explicit Client(ClusterConfig config, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClusterConfig& config() const;

  // One request; transport failures (connect, TLS, timeout) are ApiError with code 0. A stop
  // request abandons it (status 0, empty body).
  std::expected<HttpResponse, ApiError> send(const Request& request, std::stop_token stop = {});

  // A streaming request (watch): `on_line` gets each newline-terminated line of the body as it
  // arrives. Returns the response (body empty when streamed) when the server ends the stream,
  // when `stop` is requested (status 0, empty body), or an error; `idle_timeout` bounds the
  // silence between two reads.
  std::expected<HttpResponse, ApiError> stream(const Request& request,
                                               const std::function<void(std::string_view)>& on_line,
                                               std::stop_token stop,
                                               std::chrono::milliseconds idle_timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::kube
