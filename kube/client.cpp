// The Kubernetes API client on the one HTTP transport (net::HttpClient): its coroutines run on a
// thread of the client's own, and each call from another thread waits for its answer there.
#include "kube/client.hpp"

#include <pthread.h>

#include <array>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "net/http.hpp"

namespace ferry::kube {

namespace asio = boost::asio;

namespace {

constexpr std::size_t kBodyLimit = 64 * 1024 * 1024;

ApiError transport(const Request& r, const std::string& server, const net::Error& e) {
  return ApiError{0, e.kind == net::ErrorKind::Timeout ? "Timeout" : "Transport",
                  r.method + " " + server + r.target + ": " + e.message};
}

// The transport's TLS settings for the cluster: its CA alone (as client-go trusts it), or the
// system's when the kubeconfig names none; the client certificate of the kubeconfig or of the
// exec plugin.
net::TlsOptions tls_options(const ClusterConfig& config, const std::string& cert_pem,
                            const std::string& key_pem) {
  net::TlsOptions tls;
  tls.verify = !config.insecure_skip_tls_verify;
  tls.system_cas = config.ca_pem.empty();
  if (!config.ca_pem.empty()) tls.ca_pems.push_back(config.ca_pem);
  tls.client_cert_pem = cert_pem;
  tls.client_key_pem = key_pem;
  return tls;
}

// What a call hands back to the thread waiting for it: lines of a stream as they arrive, then its
// end. Shared by that thread and the coroutine, which may outlive a caller that stopped waiting.
struct Pending {
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<std::string> lines;
  std::optional<std::expected<HttpResponse, ApiError>> result;
  bool streaming = false;  // lines go to `lines` rather than to the body
};

}  // namespace

struct Client::Impl {
  ClusterConfig config;
  ClientOptions options;
  ServerAddress address;
  TokenSource tokens;

  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};

  // The kubeconfig's TLS (and client certificate); an exec plugin's client certificate gets a
  // transport of its own, renewed with its generation: connections opened with an older
  // certificate are not reused.
  std::mutex http_mutex;
  std::shared_ptr<net::HttpClient> http;
  std::shared_ptr<net::HttpClient> exec_http;
  std::uint64_t exec_generation = 0;

  std::thread thread;  // last: it starts once everything above exists

  Impl(ClusterConfig c, ClientOptions o)
      : config(std::move(c)), options(std::move(o)), tokens(config) {
    auto a = parse_server(config.server);
    if (!a) throw std::runtime_error(a.error());
    address = *a;
    auto made = transport_for(config.client_cert_pem, config.client_key_pem);
    if (!made) throw std::runtime_error(made.error());
    http = std::move(*made);
    thread = std::thread([this] {
      pthread_setname_np(pthread_self(), "kube-http");
      io.run();
    });
  }

  ~Impl() {
    work.reset();
    io.stop();
    thread.join();
  }

  std::expected<std::shared_ptr<net::HttpClient>, std::string> transport_for(
      const std::string& cert_pem, const std::string& key_pem) {
    net::HttpOptions opts;
    opts.connect_timeout = options.connect_timeout;
    opts.io_timeout = options.request_timeout;
    opts.max_idle_per_host = 8;
    auto client = std::make_shared<net::HttpClient>(io.get_executor(),
                                                    tls_options(config, cert_pem, key_pem), opts);
    if (address.tls) {
      if (auto loaded = client->load_tls(); !loaded) return std::unexpected(loaded.error().message);
    }
    return client;
  }

  // The transport to send `cred` with.
  std::expected<std::shared_ptr<net::HttpClient>, std::string> http_for(const Credential& cred) {
    std::lock_guard lock(http_mutex);
    if (!address.tls || cred.client_cert_pem.empty()) return http;
    if (exec_http && exec_generation == cred.generation) return exec_http;
    auto made = transport_for(cred.client_cert_pem, cred.client_key_pem);
    if (!made) return std::unexpected("the exec plugin's credential: " + made.error());
    exec_http = std::move(*made);
    exec_generation = cred.generation;
    return exec_http;
  }

  net::HttpRequest build(const Request& r, const std::string& token) const {
    net::HttpRequest req;
    req.method = r.method;
    req.url.tls = address.tls;
    req.url.host = address.host;
    req.url.port = address.port;
    req.url.target = address.base_path + r.target;
    req.headers = {{"User-Agent", options.user_agent}, {"Accept", r.accept}};
    if (!r.authorization.empty()) {
      req.headers.emplace_back("Authorization", r.authorization);
    } else if (!token.empty()) {
      req.headers.emplace_back("Authorization", "Bearer " + token);
    }
    if (!r.content_type.empty()) req.headers.emplace_back("Content-Type", r.content_type);
    req.body = r.body;
    return req;
  }

  // One exchange on the transport's thread. A stream's lines go to `pending` as they arrive; an
  // answer other than 200 is read whole, as any other.
  asio::awaitable<std::expected<HttpResponse, ApiError>> exchange(
      std::shared_ptr<net::HttpClient> transport_client, net::HttpRequest req, Request r,
      std::chrono::milliseconds idle_timeout, std::shared_ptr<Pending> pending) {
    auto opened = co_await transport_client->open(std::move(req));
    if (!opened) co_return std::unexpected(transport(r, config.server, opened.error()));
    auto& resp = *opened;
    HttpResponse out;
    out.status = static_cast<unsigned>(resp.status());
    out.www_authenticate = resp.header("WWW-Authenticate");
    out.retry_after = resp.header("Retry-After");
    if (!pending->streaming || out.status != 200) {
      auto body = co_await resp.read_all(kBodyLimit);
      if (!body) co_return std::unexpected(transport(r, config.server, body.error()));
      out.body = std::move(*body);
      co_return out;
    }
    LineSplitter splitter;
    std::array<std::byte, 16384> chunk{};
    for (;;) {
      auto n = co_await resp.read_some(chunk, idle_timeout);
      if (!n) co_return std::unexpected(transport(r, config.server, n.error()));
      if (*n == 0) break;
      auto lines = splitter.feed(std::string_view(reinterpret_cast<const char*>(chunk.data()), *n));
      if (lines.empty()) continue;
      std::lock_guard lock(pending->mutex);
      for (auto& line : lines) pending->lines.push_back(std::move(line));
      pending->changed.notify_all();
    }
    co_return out;
  }

  // Runs one exchange and waits for it on the calling thread, which also delivers a stream's
  // lines to `on_line`. A stop cancels the exchange (its socket operations end at once) and the
  // call returns status 0.
  std::expected<HttpResponse, ApiError> call_with(
      const Request& r, const std::function<void(std::string_view)>* on_line,
      std::chrono::milliseconds idle_timeout, const std::stop_token& stop, const std::string& token,
      std::shared_ptr<net::HttpClient> transport_client) {
    auto pending = std::make_shared<Pending>();
    pending->streaming = on_line != nullptr;
    auto cancel = std::make_shared<asio::cancellation_signal>();
    asio::co_spawn(
        io, exchange(std::move(transport_client), build(r, token), r, idle_timeout, pending),
        asio::bind_cancellation_slot(
            cancel->slot(), [pending, cancel](std::exception_ptr e,
                                              std::expected<HttpResponse, ApiError> v) {
              if (e) {
                try {
                  std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                  v = std::unexpected(ApiError{0, "Transport", ex.what()});
                }
              }
              std::lock_guard lock(pending->mutex);
              pending->result = std::move(v);
              pending->changed.notify_all();
            }));
    bool cancelled = false;
    std::stop_callback on_stop(stop, [&] {
      std::lock_guard lock(pending->mutex);
      pending->changed.notify_all();
    });
    std::unique_lock lock(pending->mutex);
    for (;;) {
      pending->changed.wait(lock, [&] {
        return pending->result || !pending->lines.empty() || (stop.stop_requested() && !cancelled);
      });
      if (stop.stop_requested() && !cancelled) {
        cancelled = true;
        asio::post(io, [cancel] { cancel->emit(asio::cancellation_type::terminal); });
        continue;
      }
      if (!pending->lines.empty()) {
        auto lines = std::move(pending->lines);
        pending->lines.clear();
        lock.unlock();
        if (!stop.stop_requested())
          for (const auto& line : lines) (*on_line)(line);
        lock.lock();
        continue;
      }
      break;  // the result, with every line before it delivered
    }
    if (stop.stop_requested()) return HttpResponse{};  // stopped: status 0
    return std::move(*pending->result);
  }

  // With the credentials of the moment; a 401 to an exec plugin's credential makes the plugin
  // run again (client-go refreshes on 401 too) and the request go once more with the new one.
  std::expected<HttpResponse, ApiError> call(const Request& r,
                                             const std::function<void(std::string_view)>* on_line,
                                             std::chrono::milliseconds idle_timeout,
                                             std::stop_token stop) {
    if (!r.authorization.empty()) {
      std::shared_ptr<net::HttpClient> plain;
      {
        std::lock_guard lock(http_mutex);
        plain = http;
      }
      return call_with(r, on_line, idle_timeout, stop, {}, std::move(plain));
    }
    for (int auth = 0;; ++auth) {
      auto cred = tokens.credential();
      if (!cred) return std::unexpected(ApiError{0, "Credentials", cred.error()});
      auto transport_client = http_for(*cred);
      if (!transport_client)
        return std::unexpected(ApiError{0, "Credentials", transport_client.error()});
      auto result = call_with(r, on_line, idle_timeout, stop, cred->token, *transport_client);
      if (auth == 0 && result && result->status == 401 && tokens.invalidate(cred->generation))
        continue;
      return result;
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
