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
#include <array>
#include <set>
#include <type_traits>
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
// After a refusal sent before the body was read: how long, and how much, of what the client
// still sends is read and dropped before the connection closes.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr std::size_t kLingerBytes = 16 << 20;

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
  Impl(asio::io_context& io, AsyncHandler h, std::size_t max_body, HeaderCheck check)
      : acceptor(io), handler(std::move(h)), header_check(std::move(check)), max_body_bytes(max_body) {}

  tcp::acceptor acceptor;
  std::optional<TlsFiles> tls_files;
  std::shared_ptr<ssl::context> tls;  // the pair in use; sessions keep theirs
  std::string tls_stamp;              // size and mtime of both files when `tls` was loaded
  AsyncHandler handler;
  HeaderCheck header_check;
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

  // size:mtime of the certificate and key; empty when either cannot be read.
  static std::string stamp_of(const TlsFiles& f) {
    std::string out;
    for (const auto& p : {f.cert_file, f.key_file}) {
      std::error_code ec;
      auto size = std::filesystem::file_size(p, ec);
      if (ec) return {};
      auto mtime = std::filesystem::last_write_time(p, ec);
      if (ec) return {};
      out += std::to_string(size) + ":" + std::to_string(mtime.time_since_epoch().count()) + ";";
    }
    return out;
  }

  static std::shared_ptr<ssl::context> load_tls(const TlsFiles& f) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    ctx->use_certificate_chain_file(f.cert_file.string(), ec);
    if (ec) throw std::runtime_error("certificate " + f.cert_file.string() + ": " + ec.message());
    ctx->use_private_key_file(f.key_file.string(), ssl::context::pem, ec);
    if (ec) throw std::runtime_error("key " + f.key_file.string() + ": " + ec.message());
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
      throw std::runtime_error("key " + f.key_file.string() + " does not match certificate " + f.cert_file.string());
    }
    return ctx;
  }

  // The certificate for a new connection: reloaded when the files changed since the last load.
  std::shared_ptr<ssl::context> current_tls() {
    if (!tls_files) return nullptr;
    const auto now = stamp_of(*tls_files);
    if (!now.empty() && now != tls_stamp) {
      try {
        tls = load_tls(*tls_files);
        tls_stamp = now;
        spdlog::info("msg=\"TLS certificate reloaded\" cert={}", tls_files->cert_file.string());
      } catch (const std::exception& e) {
        tls_stamp = now;  // not retried until the files change again
        spdlog::warn("msg=\"TLS certificate not reloaded; the previous one stays in use\" error=\"{}\"", e.what());
      }
    }
    return tls;
  }

  asio::awaitable<void> session(std::shared_ptr<beast::tcp_stream> lowest) {
    auto self = shared_from_this();
    if (auto ctx = current_tls()) {
      beast::ssl_stream<beast::tcp_stream&> stream(*lowest, *ctx);
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

  // An answer decided before the body was read: sent with Connection: close, then what the client
  // still sends of its body is dropped (bounded in time and bytes) so that it reads the answer
  // instead of a connection reset.
  template <typename Stream>
  asio::awaitable<void> refuse(Stream& stream, beast::tcp_stream& lowest, const HttpResponse& out,
                               unsigned version) {
    http::response<http::string_body> res{static_cast<http::status>(out.status), version};
    res.set(http::field::server, "ferry");
    res.set(http::field::content_type, out.content_type);
    res.body() = out.body;
    res.keep_alive(false);
    res.prepare_payload();
    lowest.expires_after(kRequestTimeout);
    auto [wec, wn] = co_await http::async_write(stream, res, tuple_awaitable);
    (void)wn;
    if (wec) co_return;
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      beast::error_code ignored;
      lowest.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    lowest.expires_after(kLingerTime);
    std::array<char, 16384> sink;
    for (std::size_t dropped = 0; dropped < kLingerBytes && !stopped;) {
      auto [rec, k] = co_await stream.async_read_some(asio::buffer(sink), tuple_awaitable);
      if (rec) break;
      dropped += k;
    }
  }

  static HttpResponse too_large(std::size_t max_body_bytes) {
    return {413, "text/plain; charset=utf-8", "request body exceeds " + std::to_string(max_body_bytes) + " bytes\n"};
  }

  // Read a request's header, let header_check refuse it, read the bounded body, call the
  // handler, write the answer; while kept alive.
  template <typename Stream>
  asio::awaitable<void> serve_requests(Stream& stream, beast::tcp_stream& lowest) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(boost::none);  // checked below, once the header was looked at
      lowest.expires_after(kRequestTimeout);
      auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, tuple_awaitable);
      (void)hn;
      if (hec) co_return;
      const unsigned version = parser.get().version();
      std::optional<HttpResponse> early;
      if (header_check) {
        HttpRequest head = to_request(parser.get());
        try {
          early = header_check(head);
        } catch (const std::exception& e) {
          spdlog::error("msg=\"header check failed\" path={} error=\"{}\"", head.path, e.what());
          early = HttpResponse{500, "text/plain; charset=utf-8", "internal error\n"};
        }
      }
      if (!early && parser.content_length() && *parser.content_length() > max_body_bytes) {
        early = too_large(max_body_bytes);
      }
      if (early) {
        co_await refuse(stream, lowest, *early, version);
        co_return;
      }
      parser.body_limit(max_body_bytes);  // chunked bodies: enforced as they arrive
      if (!parser.is_done()) {
        if (version >= 11 && beast::iequals(parser.get()[http::field::expect], "100-continue")) {
          http::response<http::empty_body> cont{http::status::continue_, version};
          auto [cec, cn] = co_await http::async_write(stream, cont, tuple_awaitable);
          (void)cn;
          if (cec) co_return;
        }
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
        (void)n;
        if (ec) {
          if (ec == http::error::body_limit) co_await refuse(stream, lowest, too_large(max_body_bytes), version);
          co_return;
        }
      }
      auto& req = parser.get();
      HttpRequest in = to_request(req);
      HttpResponse out;
      try {
        out = co_await handler(in);
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
                       std::size_t max_body_bytes, std::optional<TlsFiles> tls, HeaderCheck header_check)
    : HttpServer(
          io, listen,
          AsyncHandler([h = std::move(handler)](const HttpRequest& r) -> asio::awaitable<HttpResponse> {
            co_return h(r);
          }),
          max_body_bytes, std::move(tls), std::move(header_check)) {}

HttpServer::HttpServer(asio::io_context& io, const std::string& listen, AsyncHandler handler,
                       std::size_t max_body_bytes, std::optional<TlsFiles> tls, HeaderCheck header_check)
    : impl_(std::make_shared<Impl>(io, std::move(handler), max_body_bytes, std::move(header_check))) {
  boost::system::error_code ec;
  if (tls) {
    impl_->tls_stamp = Impl::stamp_of(*tls);
    impl_->tls = Impl::load_tls(*tls);
    impl_->tls_files = std::move(tls);
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
