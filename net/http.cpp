// Beast/Asio implementation of the HTTP client: connections, pool, TLS, timeouts.
#include "net/http.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <limits>
#include <map>
#include <strings.h>

namespace ferry::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// ---------------------------------------------------------------------------- Url

std::string Url::host_header() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + host + "]" : host;
  const bool default_port = (tls && port == "443") || (!tls && port == "80");
  return default_port ? h : h + ":" + port;
}

std::string Url::origin() const { return std::string(tls ? "https://" : "http://") + host_header(); }

Result<Url> Url::parse(std::string_view text) {
  auto u = boost::urls::parse_absolute_uri(text);
  if (!u) return fail(ErrorKind::Protocol, "invalid URL '" + std::string(text) + "'");
  Url out;
  const auto scheme = u->scheme();
  if (scheme == "https") {
    out.tls = true;
  } else if (scheme == "http") {
    out.tls = false;
  } else {
    return fail(ErrorKind::Protocol, "unsupported URL scheme '" + std::string(scheme) + "'");
  }
  out.host = std::string(u->host_name().empty() ? u->encoded_host_address() : u->encoded_host());
  if (u->host_type() == boost::urls::host_type::ipv6) out.host = std::string(u->host_address());
  out.port = u->has_port() ? std::string(u->port()) : (out.tls ? "443" : "80");
  out.target = std::string(u->encoded_path());
  if (out.target.empty()) out.target = "/";
  if (u->has_query()) out.target += "?" + std::string(u->encoded_query());
  return out;
}

Result<Url> Url::resolve(std::string_view location) const {
  if (location.find("://") != std::string_view::npos) return parse(location);
  const std::string self = to_string();  // the views below point into it
  auto base = boost::urls::parse_uri(self);
  auto ref = boost::urls::parse_uri_reference(location);
  if (!base || !ref) return fail(ErrorKind::Protocol, "invalid Location '" + std::string(location) + "'");
  boost::urls::url dest;
  if (auto r = boost::urls::resolve(*base, *ref, dest); !r) {
    return fail(ErrorKind::Protocol, "cannot resolve Location '" + std::string(location) + "'");
  }
  return parse(dest.buffer());
}

// ---------------------------------------------------------------------------- connections

namespace {

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

struct Connection {
  std::string key;  // origin
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<TlsStream> tls;
  beast::flat_buffer buffer;  // reserved below: Beast reads at most its free capacity at once
  bool reused = false;

  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

template <class F>
auto with_stream(Connection& c, F&& f) {
  return c.tls ? f(*c.tls) : f(*c.plain);
}

Error net_error(const beast::error_code& ec, std::string_view what, const Url& url) {
  ErrorKind kind = ErrorKind::Network;
  if (ec == beast::error::timeout) kind = ErrorKind::Timeout;
  else if (ec.category() == asio::error::get_ssl_category() || ec == asio::ssl::error::stream_truncated)
    kind = ErrorKind::Tls;
  return Error{.kind = kind,
               .message = std::string(what) + " " + url.host_header() + ": " + ec.message(),
               .operation = {},
               .registry = url.host_header()};
}


Result<ssl::context> make_context(const TlsOptions& tls) {
  ssl::context ctx(ssl::context::tls_client);
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  if (tls.system_cas) ctx.set_default_verify_paths(ec);
  for (const auto& f : tls.ca_files) {
    ctx.load_verify_file(f, ec);
    if (ec) return fail(ErrorKind::Config, "cannot load CA file " + f + ": " + ec.message());
  }
  for (const auto& pem : tls.ca_pems) {
    ctx.add_certificate_authority(boost::asio::buffer(pem), ec);
    if (ec) return fail(ErrorKind::Config, "cannot load CA certificates: " + ec.message());
  }
  if (!tls.client_cert_pem.empty()) {
    ctx.use_certificate_chain(boost::asio::buffer(tls.client_cert_pem), ec);
    if (ec) return fail(ErrorKind::Config, "cannot load the client certificate: " + ec.message());
    ctx.use_private_key(boost::asio::buffer(tls.client_key_pem), ssl::context::pem, ec);
    if (ec) return fail(ErrorKind::Config, "cannot load the client key: " + ec.message());
  }
  return ctx;
}

}  // namespace

struct HttpClient::State {
  asio::any_io_executor ex;
  // Created on the first TLS connection: SSL_CTX_new costs tens of milliseconds with
  // OpenSSL 3, which plain-HTTP registries should not pay.
  std::optional<ssl::context> ctx;
  TlsOptions tls;
  HttpOptions opts;
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle;
  std::map<std::string, std::vector<tcp::endpoint>> resolved;

  void release(std::unique_ptr<Connection> c) {
    auto& v = idle[c->key];
    if (v.size() < opts.max_idle_per_host) {
      c->reused = true;
      v.push_back(std::move(c));
    }
  }

  Result<void> load_tls() {
    if (ctx) return {};
    auto made = make_context(tls);
    if (!made) return std::unexpected(made.error());
    ctx.emplace(std::move(*made));
    return {};
  }

  std::unique_ptr<Connection> take_idle(const std::string& key) {
    auto it = idle.find(key);
    if (it == idle.end() || it->second.empty()) return nullptr;
    auto c = std::move(it->second.back());
    it->second.pop_back();
    return c;
  }

  // An idle pooled connection to the URL's origin when `reuse` allows one, else a new one.
  Task<Result<std::unique_ptr<Connection>>> acquire(const Url& url, bool reuse) {
    if (reuse) {
      if (auto idle_conn = take_idle(url.origin())) co_return idle_conn;
    }
    co_return co_await connect(url);
  }

  Task<Result<std::unique_ptr<Connection>>> connect(const Url& url) {
    auto c = std::make_unique<Connection>();
    c->key = url.origin();
    c->buffer.reserve(64 * 1024);
    // IP literals skip the resolver (and its helper thread); names resolve once per host.
    boost::system::error_code aec;
    const auto literal = asio::ip::make_address(url.host, aec);
    std::vector<tcp::endpoint> endpoints;
    if (!aec) {
      endpoints.emplace_back(literal, static_cast<unsigned short>(std::stoi(url.port)));
    } else if (auto it = resolved.find(url.origin()); it != resolved.end()) {
      endpoints = it->second;
    } else {
      tcp::resolver resolver(ex);
      auto [rec, results] = co_await resolver.async_resolve(url.host, url.port, use_tuple);
      if (rec) co_return std::unexpected(net_error(rec, "resolving", url));
      for (const auto& r : results) endpoints.push_back(r.endpoint());
      resolved[url.origin()] = endpoints;
    }
    if (url.tls) {
      if (auto loaded = load_tls(); !loaded) co_return std::unexpected(loaded.error());
      c->tls = std::make_unique<TlsStream>(ex, *ctx);
    } else {
      c->plain = std::make_unique<beast::tcp_stream>(ex);
    }
    c->lowest().expires_after(opts.connect_timeout);
    auto [cec, ep] = co_await c->lowest().async_connect(endpoints, use_tuple);
    if (cec) co_return std::unexpected(net_error(cec, "connecting to", url));
    c->lowest().socket().set_option(tcp::no_delay(true));
    if (url.tls) {
      if (aec && !SSL_set_tlsext_host_name(c->tls->native_handle(), url.host.c_str())) {
        co_return fail(ErrorKind::Tls, "cannot set SNI host name " + url.host);
      }
      if (tls.verify) {
        c->tls->set_verify_mode(ssl::verify_peer);
        c->tls->set_verify_callback(ssl::host_name_verification(url.host));
      } else {
        c->tls->set_verify_mode(ssl::verify_none);
      }
      c->lowest().expires_after(opts.connect_timeout);
      auto [hec] = co_await c->tls->async_handshake(ssl::stream_base::client, use_tuple);
      if (hec) {
        auto e = net_error(hec, "TLS handshake with", url);
        e.kind = hec == beast::error::timeout ? ErrorKind::Timeout : ErrorKind::Tls;
        // What OpenSSL says when the first bytes back are "HTTP/1.1 400 ...", not a TLS record.
        if (hec.category() == asio::error::get_ssl_category() && ERR_GET_REASON(hec.value()) == SSL_R_WRONG_VERSION_NUMBER) {
          e.message += " (the server answered plain HTTP, not TLS)";
        }
        co_return std::unexpected(e);
      }
    }
    co_return c;
  }
};

// ---------------------------------------------------------------------------- responses

struct ResponseStream::Impl {
  std::shared_ptr<HttpClient::State> state;
  std::unique_ptr<Connection> conn;
  http::response_parser<http::buffer_body> parser;
  Headers headers;
  Url url;
  bool keep_alive = false;

  void finish_if_done() {
    if (conn && parser.is_done()) {
      if (keep_alive) state->release(std::move(conn));
      conn.reset();
    }
  }
};

ResponseStream::ResponseStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ResponseStream::ResponseStream(ResponseStream&&) noexcept = default;
ResponseStream& ResponseStream::operator=(ResponseStream&&) noexcept = default;
ResponseStream::~ResponseStream() = default;

int ResponseStream::status() const { return static_cast<int>(impl_->parser.get().result_int()); }
const Headers& ResponseStream::headers() const { return impl_->headers; }
std::string ResponseStream::header(std::string_view name) const {
  for (const auto& [k, v] : impl_->headers)
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
  return {};
}
std::optional<std::uint64_t> ResponseStream::content_length() const {
  auto cl = impl_->parser.content_length();
  if (cl) return *cl;
  return std::nullopt;
}

Task<Result<std::size_t>> ResponseStream::read(std::span<std::byte> out) {
  auto& im = *impl_;
  if (im.parser.is_done() || !im.conn || out.empty()) co_return std::size_t{0};
  auto& body = im.parser.get().body();
  body.data = out.data();
  body.size = out.size();
  im.conn->lowest().expires_after(im.state->opts.io_timeout);
  auto [ec, n] = co_await with_stream(*im.conn, [&](auto& s) {
    return http::async_read(s, im.conn->buffer, im.parser, use_tuple);
  });
  if (ec == http::error::need_buffer) ec = {};
  if (ec) {
    im.conn.reset();
    co_return std::unexpected(net_error(ec, "reading body from", im.url));
  }
  const std::size_t got = out.size() - body.size;
  im.finish_if_done();
  co_return got;
}

Task<Result<std::size_t>> ResponseStream::read_some(std::span<std::byte> out,
                                                    std::chrono::milliseconds idle_timeout) {
  auto& im = *impl_;
  auto& body = im.parser.get().body();
  while (!im.parser.is_done() && im.conn && !out.empty()) {
    body.data = out.data();
    body.size = out.size();
    im.conn->lowest().expires_after(idle_timeout);
    auto [ec, n] = co_await with_stream(*im.conn, [&](auto& s) {
      return http::async_read_some(s, im.conn->buffer, im.parser, use_tuple);
    });
    if (ec == http::error::need_buffer) ec = {};
    const std::size_t got = out.size() - body.size;
    if (ec && !(got > 0 && im.parser.is_done())) {
      im.conn.reset();
      co_return std::unexpected(net_error(ec, "reading body from", im.url));
    }
    im.finish_if_done();
    if (got > 0) co_return got;
  }
  co_return std::size_t{0};
}

Task<Result<std::string>> ResponseStream::read_all(std::size_t limit) {
  std::string out;
  if (auto cl = content_length(); cl && *cl > limit) {
    co_return fail(ErrorKind::TooLarge, "body of " + std::to_string(*cl) + " bytes exceeds the limit of " +
                                             std::to_string(limit));
  }
  std::vector<std::byte> buf(64 * 1024);
  while (true) {
    auto n = co_await read(buf);
    if (!n) co_return std::unexpected(n.error());
    if (*n == 0) break;
    if (out.size() + *n > limit) {
      impl_->conn.reset();
      co_return fail(ErrorKind::TooLarge, "body exceeds the limit of " + std::to_string(limit) + " bytes");
    }
    out.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  co_return out;
}

// ---------------------------------------------------------------------------- requests

namespace {

template <class Body>
void fill_request(http::request<Body>& r, const HttpRequest& req) {
  r.method(http::string_to_verb(req.method));
  if (r.method() == http::verb::unknown) r.method_string(req.method);
  r.target(req.url.target);
  r.version(11);
  r.set(http::field::host, req.url.host_header());
  for (const auto& [k, v] : req.headers) r.set(k, v);
}

// `nothing_received`, when given, tells whether a failed read got not a byte back: a kept
// connection the server had closed, so that the request may go again on a new one.
Task<Result<ResponseStream>> read_response(std::shared_ptr<HttpClient::State> state, std::unique_ptr<Connection> conn,
                                           Url url, bool head, bool* nothing_received = nullptr) {
  auto impl = std::make_unique<ResponseStream::Impl>();
  impl->state = state;
  impl->url = url;
  impl->parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  if (head) impl->parser.skip(true);
  conn->lowest().expires_after(state->opts.io_timeout);
  auto [ec, n] = co_await with_stream(*conn, [&](auto& s) {
    return http::async_read_header(s, conn->buffer, impl->parser, use_tuple);
  });
  if (ec) {
    if (nothing_received) *nothing_received = n == 0 && !impl->parser.got_some();
    co_return std::unexpected(net_error(ec, "reading response from", url));
  }
  for (const auto& f : impl->parser.get()) impl->headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  impl->keep_alive = impl->parser.get().keep_alive();
  impl->conn = std::move(conn);
  impl->finish_if_done();
  co_return ResponseStream(std::move(impl));
}

}  // namespace

struct RequestStream::Impl {
  std::shared_ptr<HttpClient::State> state;
  std::unique_ptr<Connection> conn;
  Url url;
  std::uint64_t remaining = 0;
};

RequestStream::RequestStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RequestStream::RequestStream(RequestStream&&) noexcept = default;
RequestStream& RequestStream::operator=(RequestStream&&) noexcept = default;
RequestStream::~RequestStream() = default;

Task<Result<void>> RequestStream::write(std::span<const std::byte> data) {
  auto& im = *impl_;
  if (!im.conn) co_return fail(ErrorKind::Network, "upload connection already failed");
  if (data.size() > im.remaining) co_return fail(ErrorKind::Protocol, "upload body longer than its Content-Length");
  im.conn->lowest().expires_after(im.state->opts.io_timeout);
  auto [ec, n] = co_await with_stream(*im.conn, [&](auto& s) {
    return asio::async_write(s, asio::buffer(data.data(), data.size()), use_tuple);
  });
  if (ec) {
    im.conn.reset();
    co_return std::unexpected(net_error(ec, "writing body to", im.url));
  }
  im.remaining -= data.size();
  co_return Result<void>{};
}

Task<Result<ResponseStream>> RequestStream::finish() {
  auto& im = *impl_;
  if (!im.conn) co_return fail(ErrorKind::Network, "upload connection already failed");
  if (im.remaining != 0) co_return fail(ErrorKind::Protocol, "upload body shorter than its Content-Length");
  co_return co_await read_response(im.state, std::move(im.conn), im.url, false);
}

// ---------------------------------------------------------------------------- client

HttpClient::HttpClient(asio::any_io_executor ex, TlsOptions tls, HttpOptions opts) : state_(std::make_shared<State>()) {
  state_->ex = ex;
  state_->tls = std::move(tls);
  state_->opts = opts;
}

HttpClient::~HttpClient() = default;

Result<void> HttpClient::load_tls() { return state_->load_tls(); }

Task<Result<ResponseStream>> HttpClient::open(HttpRequest req) {
  auto state = state_;
  http::request<http::string_body> r;
  fill_request(r, req);
  r.body() = req.body;
  r.prepare_payload();
  const bool head = r.method() == http::verb::head;
  // A pooled connection may have been closed by the server meanwhile: retry once on a fresh one.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto acquired = co_await state->acquire(req.url, attempt == 0);
    if (!acquired) co_return std::unexpected(acquired.error());
    auto conn = std::move(*acquired);
    const bool reused = conn->reused;
    conn->lowest().expires_after(state->opts.io_timeout);
    auto [ec, n] = co_await with_stream(*conn, [&](auto& s) { return http::async_write(s, r, use_tuple); });
    if (ec) {
      if (reused) continue;
      co_return std::unexpected(net_error(ec, "sending request to", req.url));
    }
    bool nothing_received = false;
    auto resp = co_await read_response(state, std::move(conn), req.url, head, &nothing_received);
    if (!resp && reused && nothing_received) continue;
    co_return resp;
  }
  co_return fail(ErrorKind::Network, "connection to " + req.url.host_header() + " closed twice");
}

Task<Result<RequestStream>> HttpClient::open_upload(HttpRequest req, std::uint64_t content_length) {
  auto state = state_;
  http::request<http::empty_body> r;
  fill_request(r, req);
  r.content_length(content_length);
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto acquired = co_await state->acquire(req.url, attempt == 0);
    if (!acquired) co_return std::unexpected(acquired.error());
    auto conn = std::move(*acquired);
    const bool reused = conn->reused;
    http::request_serializer<http::empty_body> sr(r);
    conn->lowest().expires_after(state->opts.io_timeout);
    auto [ec, n] = co_await with_stream(*conn, [&](auto& s) { return http::async_write_header(s, sr, use_tuple); });
    if (ec) {
      if (reused) continue;
      co_return std::unexpected(net_error(ec, "sending request to", req.url));
    }
    auto impl = std::make_unique<RequestStream::Impl>();
    impl->state = state;
    impl->conn = std::move(conn);
    impl->url = req.url;
    impl->remaining = content_length;
    co_return RequestStream(std::move(impl));
  }
  co_return fail(ErrorKind::Network, "connection to " + req.url.host_header() + " closed twice");
}

}  // namespace ferry::net
