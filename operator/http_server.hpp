// A small HTTP/1.1 server, plain or TLS, for Ferry's endpoints (health, metrics, registry events, webhook).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace ferry::operator_ {

struct HttpRequest {
  std::string method;
  std::string target;  // path and query as sent
  std::string path;    // decoded path without the query
  std::map<std::string, std::string> query;
  std::string content_type;
  std::string authorization;
  std::string body;
};

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// A PEM certificate chain and key (the admission webhook). Read at start, which fails when they
// cannot be loaded; read again for the next connection whenever either file changes (cert-manager
// renewals, kubelet's Secret volume updates). A pair that does not load then is logged and the
// previous one stays in use.
struct TlsFiles {
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
};

// Serves requests on one io_context thread; the handler runs on that thread, so it may touch
// state owned by that thread without locks. Bodies over `max_body_bytes` get 413; a request
// that takes longer than 30 s to arrive is dropped. With `tls`, connections are TLS 1.2+.
//
// The header of a request is read first and given to `header_check` (the request without its
// body): an answer from it is sent before any byte of the body is read (e.g. 401 for a missing
// token, whatever the body's size), and so is 413 for a Content-Length over the limit; the
// connection then closes, after dropping what the client still sends for a moment (bounded), so
// that an ordinary client sees the answer rather than a reset. Otherwise the body is read (after
// "100 Continue" when the client asked with Expect: 100-continue) and `handler` answers.
class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  // A handler that awaits (a record written to the API server) without holding up the thread's
  // other connections; the request lives until it is answered.
  using AsyncHandler = std::function<boost::asio::awaitable<HttpResponse>(const HttpRequest&)>;
  using HeaderCheck = std::function<std::optional<HttpResponse>(const HttpRequest&)>;

  // `listen` is "HOST:PORT" (port 0 picks a free one). Throws std::runtime_error when the
  // address cannot be bound or the certificate or key cannot be loaded (start-up configuration).
  HttpServer(boost::asio::io_context& io, const std::string& listen, Handler handler,
             std::size_t max_body_bytes = 1 << 20, std::optional<TlsFiles> tls = std::nullopt,
             HeaderCheck header_check = {});
  HttpServer(boost::asio::io_context& io, const std::string& listen, AsyncHandler handler,
             std::size_t max_body_bytes = 1 << 20, std::optional<TlsFiles> tls = std::nullopt,
             HeaderCheck header_check = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  std::uint16_t port() const;
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ferry::operator_
