// Beast coroutine HTTPS server (the webhook): TLS handshake, one request per read, timeouts.
#include "operator/https_server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <set>
#include <stdexcept>

namespace ferry::operator_ {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

struct HttpsServer::Impl : std::enable_shared_from_this<HttpsServer::Impl> {
  Impl(asio::io_context& io, HttpServer::Handler h, std::size_t max_body)
      : acceptor(io),
        tls(ssl::context::tls_server),
        handler(std::move(h)),
        max_body_bytes(max_body) {}

  tcp::acceptor acceptor;
  ssl::context tls;
  HttpServer::Handler handler;
  std::size_t max_body_bytes;
  std::set<std::shared_ptr<beast::ssl_stream<beast::tcp_stream>>> connections;
  bool stopped = false;

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    while (!stopped) {
      auto [ec, socket] = co_await acceptor.async_accept(tuple_awaitable);
      if (ec) {
        if (stopped || ec == asio::error::operation_aborted) co_return;
        continue;
      }
      auto stream = std::make_shared<beast::ssl_stream<beast::tcp_stream>>(std::move(socket), tls);
      connections.insert(stream);
      asio::co_spawn(acceptor.get_executor(), session(stream), asio::detached);
    }
  }

  asio::awaitable<void> session(std::shared_ptr<beast::ssl_stream<beast::tcp_stream>> stream) {
    auto self = shared_from_this();
    auto& lowest = beast::get_lowest_layer(*stream);
    lowest.expires_after(std::chrono::seconds(10));
    auto [hec] = co_await stream->async_handshake(ssl::stream_base::server, tuple_awaitable);
    if (hec) {
      spdlog::debug("msg=\"webhook TLS handshake failed\" error=\"{}\"", hec.message());
      connections.erase(stream);
      co_return;
    }
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(max_body_bytes);
      lowest.expires_after(std::chrono::seconds(30));
      auto [ec, n] = co_await http::async_read(*stream, buffer, parser, tuple_awaitable);
      (void)n;
      if (ec) {
        if (ec == http::error::body_limit) {
          http::response<http::string_body> res{http::status::payload_too_large, 11};
          res.body() = "request body too large\n";
          res.prepare_payload();
          res.keep_alive(false);
          co_await http::async_write(*stream, res, tuple_awaitable);
        }
        break;
      }
      auto& req = parser.get();
      HttpRequest in;
      in.method = std::string(req.method_string());
      in.target = std::string(req.target());
      in.content_type = std::string(req[http::field::content_type]);
      in.body = std::move(req.body());
      if (auto url = boost::urls::parse_origin_form(in.target)) {
        in.path = url->path();
        for (auto param : url->params()) in.query[param.key] = param.value;
      } else {
        in.path = in.target;
      }
      HttpResponse out;
      try {
        out = handler(in);
      } catch (const std::exception& e) {
        spdlog::error("msg=\"webhook handler failed\" path={} error=\"{}\"", in.path, e.what());
        out = {500, "text/plain; charset=utf-8", "internal error\n"};
      }
      http::response<http::string_body> res{static_cast<http::status>(out.status), req.version()};
      res.set(http::field::server, "ferry");
      res.set(http::field::content_type, out.content_type);
      res.keep_alive(req.keep_alive());
      res.body() = std::move(out.body);
      res.prepare_payload();
      lowest.expires_after(std::chrono::seconds(30));
      auto [wec, wn] = co_await http::async_write(*stream, res, tuple_awaitable);
      (void)wn;
      if (wec || !res.keep_alive() || stopped) break;
    }
    lowest.expires_after(std::chrono::seconds(2));
    co_await stream->async_shutdown(tuple_awaitable);
    connections.erase(stream);
  }
};

HttpsServer::HttpsServer(asio::io_context& io, const std::string& listen,
                         const std::filesystem::path& cert_file,
                         const std::filesystem::path& key_file, HttpServer::Handler handler,
                         std::size_t max_body_bytes)
    : impl_(std::make_shared<Impl>(io, std::move(handler), max_body_bytes)) {
  boost::system::error_code ec;
  impl_->tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                         ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                         ssl::context::no_tlsv1_1);
  impl_->tls.use_certificate_chain_file(cert_file.string(), ec);
  if (ec)
    throw std::runtime_error("webhook certificate " + cert_file.string() + ": " + ec.message());
  impl_->tls.use_private_key_file(key_file.string(), ssl::context::pem, ec);
  if (ec) throw std::runtime_error("webhook key " + key_file.string() + ": " + ec.message());
  auto colon = listen.rfind(':');
  if (colon == std::string::npos)
    throw std::runtime_error("webhook address " + listen + ": expected HOST:PORT");
  std::string host = listen.substr(0, colon);
  if (host.empty()) host = "0.0.0.0";
  auto address = asio::ip::make_address(host, ec);
  if (ec)
    throw std::runtime_error("webhook address " + listen + ": " + host + " is not an IP address");
  unsigned long port = 0;
  try {
    port = std::stoul(listen.substr(colon + 1));
  } catch (...) {
    throw std::runtime_error("webhook address " + listen + ": port is not a number");
  }
  tcp::endpoint ep(address, static_cast<unsigned short>(port));
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep, ec);
  if (ec) throw std::runtime_error("cannot listen on " + listen + ": " + ec.message());
  impl_->acceptor.listen();
  asio::co_spawn(io, impl_->accept_loop(), asio::detached);
}

HttpsServer::~HttpsServer() { stop(); }

std::uint16_t HttpsServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpsServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  for (auto& c : impl_->connections) beast::get_lowest_layer(*c).socket().close(ec);
}

}  // namespace ferry::operator_
