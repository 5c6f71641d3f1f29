// The one translation unit of the Kubernetes client that uses Beast and Asio.
#include "operator/kube/client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>
#include <optional>
#include <stdexcept>

namespace ferry::kube {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::use_awaitable;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

ApiError transport(std::string what, const boost::system::error_code& ec) {
  return ApiError{0, "Transport", what + ": " + ec.message()};
}

bool is_ip_address(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

struct Client::Impl {
  ClusterConfig config;
  ClientOptions options;
  ServerAddress address;
  TokenSource tokens;
  std::optional<ssl::context> tls;

  Impl(ClusterConfig c, ClientOptions o)
      : config(std::move(c)), options(std::move(o)), tokens(config) {
    auto a = parse_server(config.server);
    if (!a) throw std::runtime_error(a.error());
    address = *a;
    if (!address.tls) return;
    tls.emplace(ssl::context::tls_client);
    tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    if (config.ca_pem.empty()) {
      tls->set_default_verify_paths(ec);
    } else {
      tls->add_certificate_authority(asio::buffer(config.ca_pem), ec);
      if (ec) throw std::runtime_error("cannot load the certificate authority: " + ec.message());
    }
    if (!config.client_cert_pem.empty()) {
      tls->use_certificate_chain(asio::buffer(config.client_cert_pem), ec);
      if (ec) throw std::runtime_error("cannot load the client certificate: " + ec.message());
      tls->use_private_key(asio::buffer(config.client_key_pem), ssl::context::pem, ec);
      if (ec) throw std::runtime_error("cannot load the client key: " + ec.message());
    }
    tls->set_verify_mode(config.insecure_skip_tls_verify ? ssl::verify_none : ssl::verify_peer);
  }

  http::request<http::string_body> build(const Request& r) {
    http::request<http::string_body> req{http::string_to_verb(r.method),
                                         address.base_path + r.target, 11};
    const bool default_port =
        (address.tls && address.port == "443") || (!address.tls && address.port == "80");
    const std::string host_header =
        (address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host);
    req.set(http::field::host, default_port ? host_header : host_header + ":" + address.port);
    req.set(http::field::user_agent, options.user_agent);
    req.set(http::field::accept, r.accept);
    if (!r.authorization.empty()) {
      req.set(http::field::authorization, r.authorization);
    } else if (auto t = tokens.token(); !t.empty()) {
      req.set(http::field::authorization, "Bearer " + t);
    }
    if (!r.content_type.empty()) req.set(http::field::content_type, r.content_type);
    req.body() = r.body;
    req.prepare_payload();
    req.keep_alive(false);
    return req;
  }

  static HttpResponse header_fields(const http::response_header<>& h) {
    HttpResponse out;
    out.status = h.result_int();
    out.www_authenticate = std::string(h[http::field::www_authenticate]);
    out.retry_after = std::string(h[http::field::retry_after]);
    return out;
  }

  // Sends `r` on `stream` and reads the answer; with `on_line` the body is delivered line by line.
  template <class Stream>
  asio::awaitable<std::expected<HttpResponse, ApiError>> exchange(
      Stream& stream, const Request& r, const std::function<void(std::string_view)>* on_line,
      std::chrono::milliseconds idle_timeout) {
    auto& lowest = beast::get_lowest_layer(stream);
    auto req = build(r);
    lowest.expires_after(options.request_timeout);
    auto [wec, wn] = co_await http::async_write(stream, req, tuple_awaitable);
    (void)wn;
    if (wec) co_return std::unexpected(transport("sending " + r.method + " " + r.target, wec));
    beast::flat_buffer buffer;
    if (!on_line) {
      http::response_parser<http::string_body> parser;
      parser.body_limit(64 * 1024 * 1024);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
      (void)n;
      if (ec)
        co_return std::unexpected(
            transport("reading the answer to " + r.method + " " + r.target, ec));
      auto out = header_fields(parser.get().base());
      out.body = std::move(parser.get().body());
      co_return out;
    }
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, tuple_awaitable);
    (void)hn;
    if (hec)
      co_return std::unexpected(
          transport("reading the answer to " + r.method + " " + r.target, hec));
    auto out = header_fields(parser.get().base());
    const bool ok = out.status == 200;
    LineSplitter lines;
    char chunk[16384];
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      lowest.expires_after(ok ? idle_timeout : options.request_timeout);
      auto [ec, n] = co_await http::async_read_some(stream, buffer, parser, tuple_awaitable);
      (void)n;
      if (ec == http::error::need_buffer) ec = {};
      const std::size_t got = sizeof chunk - parser.get().body().size;
      if (ok) {
        for (const auto& line : lines.feed(std::string_view(chunk, got))) (*on_line)(line);
      } else {
        out.body.append(chunk, got);
      }
      if (ec == http::error::end_of_stream || ec == asio::error::eof) break;
      if (ec) co_return std::unexpected(transport("reading the stream of " + r.target, ec));
    }
    co_return out;
  }

  asio::awaitable<std::expected<HttpResponse, ApiError>> run(
      const Request& r, const std::function<void(std::string_view)>* on_line,
      std::chrono::milliseconds idle_timeout) {
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    auto [rec, endpoints] =
        co_await resolver.async_resolve(address.host, address.port, tuple_awaitable);
    if (rec) co_return std::unexpected(transport("resolving " + address.host, rec));
    beast::tcp_stream tcp_stream(ex);
    tcp_stream.expires_after(options.connect_timeout);
    auto [cec, ep] = co_await tcp_stream.async_connect(endpoints, tuple_awaitable);
    (void)ep;
    if (cec) co_return std::unexpected(transport("connecting to " + config.server, cec));
    if (!tls) {
      auto result = co_await exchange(tcp_stream, r, on_line, idle_timeout);
      boost::system::error_code ignored;
      tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      co_return result;
    }
    beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), *tls);
    if (!is_ip_address(address.host)) {
      if (!SSL_set_tlsext_host_name(stream.native_handle(), address.host.c_str())) {
        co_return std::unexpected(
            ApiError{0, "Transport", "cannot set TLS SNI for " + address.host});
      }
    }
    if (!config.insecure_skip_tls_verify)
      stream.set_verify_callback(ssl::host_name_verification(address.host));
    beast::get_lowest_layer(stream).expires_after(options.connect_timeout);
    auto [sec] = co_await stream.async_handshake(ssl::stream_base::client, tuple_awaitable);
    if (sec) co_return std::unexpected(transport("TLS handshake with " + config.server, sec));
    auto result = co_await exchange(stream, r, on_line, idle_timeout);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(tuple_awaitable);
    co_return result;
  }

  std::expected<HttpResponse, ApiError> call(const Request& r,
                                             const std::function<void(std::string_view)>* on_line,
                                             std::chrono::milliseconds idle_timeout,
                                             std::stop_token stop) {
    asio::io_context io;
    std::optional<std::expected<HttpResponse, ApiError>> result;
    asio::co_spawn(io, run(r, on_line, idle_timeout),
                   [&](std::exception_ptr e, std::expected<HttpResponse, ApiError> v) {
                     if (e) {
                       try {
                         std::rethrow_exception(e);
                       } catch (const std::exception& x) {
                         result = std::unexpected(ApiError{0, "Transport", x.what()});
                       }
                       return;
                     }
                     result = std::move(v);
                   });
    std::stop_callback on_stop(stop, [&io] { io.stop(); });
    if (on_line) {
      io.run();  // bounded by the idle timeout of each read
    } else {
      // Bounds the whole call, name resolution included.
      io.run_for(options.connect_timeout + options.request_timeout);
    }
    if (!result) {
      if (stop.stop_requested()) return HttpResponse{};  // stopped: status 0
      return std::unexpected(
          ApiError{0, "Timeout", r.method + " " + config.server + r.target + ": timed out"});
    }
    return std::move(*result);
  }
};

Client::Client(ClusterConfig config, ClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(options))) {}
Client::~Client() = default;

const ClusterConfig& Client::config() const { return impl_->config; }

std::expected<HttpResponse, ApiError> Client::send(const Request& request, std::stop_token stop) {
  return impl_->call(request, nullptr, impl_->options.request_timeout, std::move(stop));
}

std::expected<HttpResponse, ApiError> Client::stream(
    const Request& request, const std::function<void(std::string_view)>& on_line,
    std::stop_token stop, std::chrono::milliseconds idle_timeout) {
  if (stop.stop_requested()) return HttpResponse{};
  return impl_->call(request, &on_line, idle_timeout, std::move(stop));
}

}  // namespace ferry::kube
