// The one translation unit of the Kubernetes client that uses Beast and Asio.
#include "kube/client.hpp"

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
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <vector>

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

// A TLS client context: the CA (or the system's), and a client certificate when one is given.
std::expected<std::shared_ptr<ssl::context>, std::string> make_tls(const ClusterConfig& config,
                                                                   const std::string& cert_pem,
                                                                   const std::string& key_pem) {
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_client);
  tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  if (config.ca_pem.empty()) {
    tls->set_default_verify_paths(ec);
  } else {
    tls->add_certificate_authority(asio::buffer(config.ca_pem), ec);
    if (ec) return std::unexpected("cannot load the certificate authority: " + ec.message());
  }
  if (!cert_pem.empty()) {
    tls->use_certificate_chain(asio::buffer(cert_pem), ec);
    if (ec) return std::unexpected("cannot load the client certificate: " + ec.message());
    tls->use_private_key(asio::buffer(key_pem), ssl::context::pem, ec);
    if (ec) return std::unexpected("cannot load the client key: " + ec.message());
  }
  tls->set_verify_mode(config.insecure_skip_tls_verify ? ssl::verify_none : ssl::verify_peer);
  return tls;
}

}  // namespace

// One connection and the io_context it runs on (a socket cannot move between io_contexts), kept
// for the next request after a keep-alive answer. It holds the TLS context it was opened with: a
// client certificate from an exec plugin is renewed in a new context, and connections opened with
// the old one are not reused.
struct Connection {
  asio::io_context io;
  std::shared_ptr<ssl::context> tls;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  bool open() const { return plain.has_value() || secure.has_value(); }
};

// What one exchange gave: the answer, or an error; whether the connection may carry another
// request; and whether it failed before the server sent a byte (a reused connection the server
// had closed: the request may be sent again on a new one).
struct Exchange {
  std::expected<HttpResponse, ApiError> result = std::unexpected(ApiError{});
  bool keep_alive = false;
  bool nothing_received = false;
};

struct Client::Impl {
  ClusterConfig config;
  ClientOptions options;
  ServerAddress address;
  TokenSource tokens;
  std::shared_ptr<ssl::context> tls;  // the kubeconfig's client certificate, if any

  // The context for the exec plugin's client certificate of `exec_tls_generation`.
  std::mutex exec_tls_mutex;
  std::shared_ptr<ssl::context> exec_tls;
  std::uint64_t exec_tls_generation = 0;

  static constexpr std::size_t kMaxIdle = 8;
  std::mutex idle_mutex;
  std::vector<std::unique_ptr<Connection>> idle;

  Impl(ClusterConfig c, ClientOptions o)
      : config(std::move(c)), options(std::move(o)), tokens(config) {
    auto a = parse_server(config.server);
    if (!a) throw std::runtime_error(a.error());
    address = *a;
    if (!address.tls) return;
    auto made = make_tls(config, config.client_cert_pem, config.client_key_pem);
    if (!made) throw std::runtime_error(made.error());
    tls = std::move(*made);
  }

  // The TLS context to open connections with for `cred` (null for plain HTTP).
  std::expected<std::shared_ptr<ssl::context>, std::string> tls_for(const Credential& cred) {
    if (!address.tls || cred.client_cert_pem.empty()) return tls;
    std::lock_guard lock(exec_tls_mutex);
    if (exec_tls && exec_tls_generation == cred.generation) return exec_tls;
    auto made = make_tls(config, cred.client_cert_pem, cred.client_key_pem);
    if (!made) return std::unexpected("the exec plugin's credential: " + made.error());
    exec_tls = std::move(*made);
    exec_tls_generation = cred.generation;
    return exec_tls;
  }

  http::request<http::string_body> build(const Request& r, bool keep_alive,
                                         const std::string& token) {
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
    } else if (!token.empty()) {
      req.set(http::field::authorization, "Bearer " + token);
    }
    if (!r.content_type.empty()) req.set(http::field::content_type, r.content_type);
    req.body() = r.body;
    req.prepare_payload();
    req.keep_alive(keep_alive);
    return req;
  }

  static HttpResponse header_fields(const http::response_header<>& h) {
    HttpResponse out;
    out.status = h.result_int();
    out.www_authenticate = std::string(h[http::field::www_authenticate]);
    out.retry_after = std::string(h[http::field::retry_after]);
    return out;
  }

  static bool closed_by_peer(const boost::system::error_code& ec) {
    return ec == http::error::end_of_stream || ec == asio::error::eof ||
           ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
           ec == ssl::error::stream_truncated;
  }

  // Sends `r` on `stream` and reads the answer; with `on_line` the body is delivered line by line.
  template <class Stream>
  asio::awaitable<Exchange> exchange(Stream& stream, const Request& r,
                                     const std::function<void(std::string_view)>* on_line,
                                     std::chrono::milliseconds idle_timeout,
                                     const std::string& token) {
    Exchange x;
    auto& lowest = beast::get_lowest_layer(stream);
    auto req = build(r, on_line == nullptr, token);
    lowest.expires_after(options.request_timeout);
    auto [wec, wn] = co_await http::async_write(stream, req, tuple_awaitable);
    (void)wn;
    if (wec) {
      x.nothing_received = true;
      x.result = std::unexpected(transport("sending " + r.method + " " + r.target, wec));
      co_return x;
    }
    beast::flat_buffer buffer;
    if (!on_line) {
      http::response_parser<http::string_body> parser;
      parser.body_limit(64 * 1024 * 1024);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
      if (ec) {
        x.nothing_received = n == 0 && buffer.size() == 0 && !parser.got_some() && closed_by_peer(ec);
        x.result = std::unexpected(transport("reading the answer to " + r.method + " " + r.target, ec));
        co_return x;
      }
      auto out = header_fields(parser.get().base());
      x.keep_alive = parser.get().keep_alive();
      out.body = std::move(parser.get().body());
      x.result = std::move(out);
      co_return x;
    }
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, tuple_awaitable);
    (void)hn;
    if (hec) {
      x.result = std::unexpected(transport("reading the answer to " + r.method + " " + r.target, hec));
      co_return x;
    }
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
      if (ec) {
        x.result = std::unexpected(transport("reading the stream of " + r.target, ec));
        co_return x;
      }
    }
    x.result = std::move(out);
    co_return x;
  }

  // Opens `c` (TCP, then TLS with SNI and host name verification) on its own io_context.
  asio::awaitable<std::optional<ApiError>> connect(Connection& c) {
    auto ex = c.io.get_executor();
    tcp::resolver resolver(ex);
    auto [rec, endpoints] =
        co_await resolver.async_resolve(address.host, address.port, tuple_awaitable);
    if (rec) co_return transport("resolving " + address.host, rec);
    beast::tcp_stream tcp_stream(ex);
    tcp_stream.expires_after(options.connect_timeout);
    auto [cec, ep] = co_await tcp_stream.async_connect(endpoints, tuple_awaitable);
    (void)ep;
    if (cec) co_return transport("connecting to " + config.server, cec);
    boost::system::error_code ignored;
    tcp_stream.socket().set_option(tcp::no_delay(true), ignored);  // small requests, kept alive
    if (!c.tls) {
      c.plain.emplace(std::move(tcp_stream));
      co_return std::nullopt;
    }
    auto& stream = c.secure.emplace(std::move(tcp_stream), *c.tls);
    if (!is_ip_address(address.host)) {
      if (!SSL_set_tlsext_host_name(stream.native_handle(), address.host.c_str())) {
        c.secure.reset();
        co_return ApiError{0, "Transport", "cannot set TLS SNI for " + address.host};
      }
    }
    if (!config.insecure_skip_tls_verify)
      stream.set_verify_callback(ssl::host_name_verification(address.host));
    beast::get_lowest_layer(stream).expires_after(options.connect_timeout);
    auto [sec] = co_await stream.async_handshake(ssl::stream_base::client, tuple_awaitable);
    if (sec) {
      c.secure.reset();
      co_return transport("TLS handshake with " + config.server, sec);
    }
    co_return std::nullopt;
  }

  asio::awaitable<Exchange> run(Connection& c, const Request& r,
                                const std::function<void(std::string_view)>* on_line,
                                std::chrono::milliseconds idle_timeout, const std::string& token) {
    if (!c.open()) {
      if (auto err = co_await connect(c)) {
        Exchange x;
        x.result = std::unexpected(std::move(*err));
        co_return x;
      }
    }
    if (c.plain) co_return co_await exchange(*c.plain, r, on_line, idle_timeout, token);
    co_return co_await exchange(*c.secure, r, on_line, idle_timeout, token);
  }

  static std::unique_ptr<Connection> fresh(const std::shared_ptr<ssl::context>& tls_context) {
    auto c = std::make_unique<Connection>();
    c->tls = tls_context;
    return c;
  }

  // An idle connection opened with `tls_context`; those opened with an older client certificate
  // are closed.
  std::unique_ptr<Connection> take_idle(const std::shared_ptr<ssl::context>& tls_context) {
    std::unique_ptr<Connection> found;
    std::vector<std::unique_ptr<Connection>> stale;
    {
      std::lock_guard lock(idle_mutex);
      while (!idle.empty() && !found) {
        auto c = std::move(idle.back());
        idle.pop_back();
        if (c->tls == tls_context) {
          found = std::move(c);
        } else {
          stale.push_back(std::move(c));  // closed below, outside the lock
        }
      }
    }
    return found ? std::move(found) : fresh(tls_context);
  }

  void give_back(std::unique_ptr<Connection> c) {
    std::lock_guard lock(idle_mutex);
    if (idle.size() < kMaxIdle) idle.push_back(std::move(c));
  }

  // With the credentials of the moment; a 401 to an exec plugin's credential makes the plugin
  // run again (client-go refreshes on 401 too) and the request go once more with the new one.
  std::expected<HttpResponse, ApiError> call(const Request& r,
                                             const std::function<void(std::string_view)>* on_line,
                                             std::chrono::milliseconds idle_timeout,
                                             std::stop_token stop) {
    if (!r.authorization.empty()) return call_with(r, on_line, idle_timeout, stop, {}, tls);
    for (int auth = 0;; ++auth) {
      auto cred = tokens.credential();
      if (!cred) return std::unexpected(ApiError{0, "Credentials", cred.error()});
      auto tls_context = tls_for(*cred);
      if (!tls_context) return std::unexpected(ApiError{0, "Credentials", tls_context.error()});
      auto result = call_with(r, on_line, idle_timeout, stop, cred->token, *tls_context);
      if (auth == 0 && result && result->status == 401 && tokens.invalidate(cred->generation))
        continue;
      return result;
    }
  }

  // One request on an idle kept-alive connection, or a new one; streams always get a new one and
  // are never kept. A kept connection the server has closed meanwhile fails before any answer:
  // the request then goes once more on a new connection (as Go's net/http does).
  std::expected<HttpResponse, ApiError> call_with(
      const Request& r, const std::function<void(std::string_view)>* on_line,
      std::chrono::milliseconds idle_timeout, const std::stop_token& stop, const std::string& token,
      const std::shared_ptr<ssl::context>& tls_context) {
    for (int attempt = 0;; ++attempt) {
      auto conn = (on_line || attempt > 0) ? fresh(tls_context) : take_idle(tls_context);
      const bool reused = conn->open();
      conn->io.restart();
      std::optional<Exchange> x;
      asio::co_spawn(conn->io, run(*conn, r, on_line, idle_timeout, token),
                     [&](std::exception_ptr e, Exchange v) {
                       if (e) {
                         try {
                           std::rethrow_exception(e);
                         } catch (const std::exception& ex) {
                           v = Exchange{};
                           v.result = std::unexpected(ApiError{0, "Transport", ex.what()});
                         }
                       }
                       x = std::move(v);
                     });
      {
        std::stop_callback on_stop(stop, [io = &conn->io] { io->stop(); });
        if (on_line) {
          conn->io.run();  // bounded by the idle timeout of each read
        } else {
          // Bounds the whole call, name resolution included.
          conn->io.run_for(options.connect_timeout + options.request_timeout);
        }
      }
      if (!x) {
        if (stop.stop_requested()) return HttpResponse{};  // stopped: status 0
        return std::unexpected(
            ApiError{0, "Timeout", r.method + " " + config.server + r.target + ": timed out"});
      }
      if (!x->result && reused && x->nothing_received && attempt == 0) continue;
      if (x->result && x->keep_alive && !on_line && !stop.stop_requested()) give_back(std::move(conn));
      return std::move(x->result);
    }
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
