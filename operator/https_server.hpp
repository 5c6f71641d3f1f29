// An HTTPS/1.1 server for the admission webhook: the same handler shape as HttpServer, TLS
// with a certificate and key read from files at start.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "operator/http_server.hpp"

namespace ferry::operator_ {

class HttpsServer {
 public:
  // Throws std::runtime_error when the address cannot be bound or the certificate or key cannot
  // be loaded (start-up configuration).
  HttpsServer(boost::asio::io_context& io, const std::string& listen,
              const std::filesystem::path& cert_file, const std::filesystem::path& key_file,
              HttpServer::Handler handler, std::size_t max_body_bytes = 3 << 20);
  ~HttpsServer();
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  std::uint16_t port() const;
  void stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ferry::operator_
