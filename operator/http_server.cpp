// Beast coroutine HTTP server: one coroutine per connection, optional TLS, keep-alive, timeouts.
#include "operator/http_server.hpp"

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
#include <spdlog/spdlog.h>
#include <stdexcept>

namespace ferry::operator_ {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);
constexpr auto kRequestTimeout = std::chrono::seconds(30);

namespace {

HttpRequest to_request(http::request<http::string_body>& req) {
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
  return in;
}

}  // namespace

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(asio::io_context& io, Handler h, std::size_t max_body)
      : acceptor(io), handler(std::move(h)), max_body_bytes(max_body) {}

  tcp::acceptor acceptor;
  std::optional<ssl::context> tls;
  Handler handler;
  std::size_t max_body_bytes;
  std::set<std::shared_ptr<beast::tcp_stream>> connections;  // the TCP layer of each connection
  bool stopped = false;

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    while (!stopped) {
      auto [ec, socket] = co_await acceptor.async_accept(tuple_awaitable);
      if (ec) {
        if (stopped || ec == asio::error::operation_aborted) co_return;
        spdlog::warn("msg=\"accept failed\" error=\"{}\"", ec.message());
        continue;
      }
      auto tcp_stream = std::make_shared<beast::tcp_stream>(std::move(socket));
      connections.insert(tcp_stream);
      asio::co_spawn(acceptor.get_executor(), session(tcp_stream), asio::detached);
    }
  }

  asio::awaitable<void> session(std::shared_ptr<beast::tcp_stream> lowest) {
    auto self = shared_from_this();
    if (tls) {
      beast::ssl_stream<beast::tcp_stream&> stream(*lowest, *tls);
      lowest->expires_after(kRequestTimeout);
      auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, tuple_awaitable);
      if (!hec) {
        co_await serve_requests(stream, *lowest);
        lowest->expires_after(std::chrono::seconds(2));
        co_await stream.async_shutdown(tuple_awaitable);
      } else {
        spdlog::debug("msg=\"TLS handshake failed\" error=\"{}\"", hec.message());
      }
    } else {
      co_await serve_requests(*lowest, *lowest);
      beast::error_code ignored;
      lowest->socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    connections.erase(lowest);
  }

  // Read a request (bounded body), call the handler, write the answer; while kept alive.
  template <typename Stream>
  asio::awaitable<void> serve_requests(Stream& stream, beast::tcp_stream& lowest) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(max_body_bytes);
      lowest.expires_after(kRequestTimeout);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
      (void)n;
      if (ec) {
        if (ec == http::error::body_limit) {
          http::response<http::string_body> res{http::status::payload_too_large, 11};
          res.set(http::field::content_type, "text/plain; charset=utf-8");
          res.body() = "request body exceeds " + std::to_string(max_body_bytes) + " bytes\n";
          res.prepare_payload();
          res.keep_alive(false);
          co_await http::async_write(stream, res, tuple_awaitable);
        }
        co_return;
      }
      auto& req = parser.get();
      HttpRequest in = to_request(req);
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
      lowest.expires_after(kRequestTimeout);
      auto [wec, wn] = co_await http::async_write(stream, res, tuple_awaitable);
      (void)wn;
      if (wec || !res.keep_alive() || stopped) co_return;
    }
  }
};

HttpServer::HttpServer(asio::io_context& io, const std::string& listen, Handler handler,
                       std::size_t max_body_bytes, std::optional<TlsFiles> tls)
    : impl_(std::make_shared<Impl>(io, std::move(handler), max_body_bytes)) {
  boost::system::error_code ec;
  if (tls) {
    auto& ctx = impl_->tls.emplace(ssl::context::tls_server);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                    ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ctx.use_certificate_chain_file(tls->cert_file.string(), ec);
    if (ec) throw std::runtime_error("certificate " + tls->cert_file.string() + ": " + ec.message());
    ctx.use_private_key_file(tls->key_file.string(), ssl::context::pem, ec);
    if (ec) throw std::runtime_error("key " + tls->key_file.string() + ": " + ec.message());
  }
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("address " + listen + ": expected HOST:PORT");
  std::string host = listen.substr(0, colon);
  if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  auto address = asio::ip::make_address(host, ec);
  if (ec) throw std::runtime_error("address " + listen + ": " + host + " is not an IP address");
  unsigned long port = 0;
  try {
    port = std::stoul(listen.substr(colon + 1));
  } catch (...) {
    throw std::runtime_error("address " + listen + ": port is not a number");
  }
  if (port > 65535) throw std::runtime_error("address " + listen + ": port out of range");
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
