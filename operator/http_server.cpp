// Beast coroutine HTTP server: one coroutine per connection, keep-alive, per-request timeout.
#include "operator/http_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <set>
#include <spdlog/spdlog.h>
#include <stdexcept>

namespace ferry::operator_ {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(asio::io_context& io, Handler h, std::size_t max_body)
      : acceptor(io), handler(std::move(h)), max_body_bytes(max_body) {}

  tcp::acceptor acceptor;
  Handler handler;
  std::size_t max_body_bytes;
  std::set<std::shared_ptr<beast::tcp_stream>> connections;
  bool stopped = false;

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    while (!stopped) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (stopped || ec == asio::error::operation_aborted) co_return;
        spdlog::warn("msg=\"accept failed\" error=\"{}\"", ec.message());
        continue;
      }
      auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
      connections.insert(stream);
      asio::co_spawn(acceptor.get_executor(), session(stream), asio::detached);
    }
  }

  asio::awaitable<void> session(std::shared_ptr<beast::tcp_stream> stream) {
    auto self = shared_from_this();
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(max_body_bytes);
      stream->expires_after(std::chrono::seconds(30));
      auto [ec, n] = co_await http::async_read(*stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
      (void)n;
      if (ec) {
        if (ec == http::error::body_limit) {
          http::response<http::string_body> res{http::status::payload_too_large, 11};
          res.set(http::field::content_type, "text/plain; charset=utf-8");
          res.body() = "request body exceeds " + std::to_string(max_body_bytes) + " bytes\n";
          res.prepare_payload();
          res.keep_alive(false);
          co_await http::async_write(*stream, res, asio::as_tuple(asio::use_awaitable));
        }
        break;
      }
      auto& req = parser.get();
      HttpRequest in;
      in.method = std::string(req.method_string());
      in.target = std::string(req.target());
      in.content_type = std::string(req[http::field::content_type]);
      in.authorization = std::string(req[http::field::authorization]);
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
        spdlog::error("msg=\"handler failed\" path={} error=\"{}\"", in.path, e.what());
        out = {500, "text/plain; charset=utf-8", "internal error\n"};
      }
      http::response<http::string_body> res{static_cast<http::status>(out.status), req.version()};
      res.set(http::field::server, "ferry");
      res.set(http::field::content_type, out.content_type);
      res.keep_alive(req.keep_alive());
      res.body() = std::move(out.body);
      res.prepare_payload();
      stream->expires_after(std::chrono::seconds(30));
      auto [wec, wn] = co_await http::async_write(*stream, res, asio::as_tuple(asio::use_awaitable));
      (void)wn;
      if (wec || !res.keep_alive() || stopped) break;
    }
    beast::error_code ignored;
    stream->socket().shutdown(tcp::socket::shutdown_send, ignored);
    connections.erase(stream);
  }
};

HttpServer::HttpServer(asio::io_context& io, const std::string& listen, Handler handler,
                       std::size_t max_body_bytes)
    : impl_(std::make_shared<Impl>(io, std::move(handler), max_body_bytes)) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("--listen " + listen + ": expected HOST:PORT");
  std::string host = listen.substr(0, colon);
  if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) throw std::runtime_error("--listen " + listen + ": " + host + " is not an IP address");
  unsigned long port = 0;
  try {
    port = std::stoul(listen.substr(colon + 1));
  } catch (...) {
    throw std::runtime_error("--listen " + listen + ": port is not a number");
  }
  if (port > 65535) throw std::runtime_error("--listen " + listen + ": port out of range");
  tcp::endpoint ep(address, static_cast<unsigned short>(port));
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep, ec);
  if (ec) throw std::runtime_error("cannot listen on " + listen + ": " + ec.message());
  impl_->acceptor.listen();
  asio::co_spawn(io, impl_->accept_loop(), asio::detached);
}

HttpServer::~HttpServer() { stop(); }

std::uint16_t HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  for (auto& c : impl_->connections) c->socket().close(ec);
}

}  // namespace ferry::operator_
