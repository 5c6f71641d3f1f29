// Registry API on top of HttpClient: auth challenges, token cache, retries, typed errors.
#include "registry/client.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <ctime>

#include "registry/reference.hpp"
#include "registry/wire.hpp"

namespace ferry::registry {

namespace asio = boost::asio;

std::string pull_scope(const std::string& repository) { return "repository:" + repository + ":pull"; }
std::string push_scope(const std::string& repository) { return "repository:" + repository + ":pull,push"; }

namespace {

constexpr std::size_t kErrorBodyLimit = 64 * 1024;

std::string pct_digest(const std::string& digest) {
  std::string out;
  for (char c : digest) out += c == ':' ? std::string("%3A") : std::string(1, c);
  return out;
}

}  // namespace

bool RegistryClient::same_connection(const RegistryConfig& a, const RegistryConfig& b) {
  return a.host == b.host && a.plain_http == b.plain_http && a.tls == b.tls && a.credentials == b.credentials &&
         a.retry == b.retry && a.http == b.http && a.user_agent == b.user_agent && a.limiter == b.limiter;
}

RegistryClient::RegistryClient(asio::any_io_executor ex, RegistryConfig config)
    : ex_(ex), config_(std::move(config)), http_(ex, config_.tls, config_.http) {}

RegistryClient::~RegistryClient() = default;

Url RegistryClient::url(std::string target) const {
  auto u = Url::parse(std::string(config_.plain_http ? "http://" : "https://") + api_host(config_.host) + "/");
  // The host was validated when the reference was parsed; a failure here is a programming error.
  if (!u) throw std::invalid_argument("invalid registry host " + config_.host);
  u->target = std::move(target);
  return *u;
}

Task<void> RegistryClient::sleep(std::chrono::milliseconds d) {
  asio::steady_timer t(ex_, d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

std::optional<std::string> RegistryClient::authorization(const std::string& scope) {
  if (!challenge_) return std::nullopt;
  if (challenge_->scheme == "basic") {
    if (config_.credentials.username.empty()) return std::nullopt;
    return basic_authorization(config_.credentials);
  }
  auto it = tokens_.find(scope);
  if (it == tokens_.end() || it->second.expires <= std::chrono::steady_clock::now()) return std::nullopt;
  return "Bearer " + it->second.value;
}

Task<Result<void>> RegistryClient::authenticate(const std::vector<Challenge>& challenges, const std::string& scope) {
  const Challenge* chosen = nullptr;
  for (const auto& c : challenges)
    if (c.scheme == "bearer") chosen = &c;
  if (!chosen)
    for (const auto& c : challenges)
      if (c.scheme == "basic") chosen = &c;
  if (!chosen) co_return fail(ErrorKind::Unauthorized, "no supported authentication scheme offered (Basic or Bearer)");
  challenge_ = *chosen;
  if (chosen->scheme == "basic") {
    if (config_.credentials.username.empty()) co_return fail(ErrorKind::Unauthorized, "registry requires credentials");
    co_return Result<void>{};
  }
  const auto realm_it = chosen->params.find("realm");
  if (realm_it == chosen->params.end()) co_return fail(ErrorKind::Protocol, "Bearer challenge without realm");
  auto parsed = boost::urls::parse_absolute_uri(realm_it->second);
  if (!parsed) co_return fail(ErrorKind::Protocol, "Bearer realm is not a URL");
  boost::urls::url token_url(*parsed);
  std::string form;
  auto add = [&](std::string_view k, std::string_view v) {
    if (config_.credentials.identity_token.empty()) {
      token_url.params().append({k, v});
    } else {
      boost::urls::url tmp;
      tmp.params().append({k, v});
      form += (form.empty() ? "" : "&") + std::string(tmp.encoded_query());
    }
  };
  if (auto s = chosen->params.find("service"); s != chosen->params.end()) add("service", s->second);
  for (std::size_t start = 0; start < scope.size();) {
    auto sp = scope.find(' ', start);
    auto one = scope.substr(start, sp == std::string::npos ? std::string::npos : sp - start);
    if (!one.empty()) add("scope", one);
    if (sp == std::string::npos) break;
    start = sp + 1;
  }
  auto u = Url::parse(token_url.buffer());
  if (!u) co_return std::unexpected(u.error());
  HttpRequest req{.method = "GET", .url = *u, .headers = {{"User-Agent", config_.user_agent}}, .body = {}};
  if (!config_.credentials.identity_token.empty()) {
    req.method = "POST";
    add("grant_type", "refresh_token");
    add("refresh_token", config_.credentials.identity_token);
    add("client_id", "ferry");
    req.body = form;
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  } else if (!config_.credentials.username.empty()) {
    req.headers.emplace_back("Authorization", basic_authorization(config_.credentials));
  }
  auto resp = co_await http_.open(req);
  if (!resp) co_return std::unexpected(resp.error());
  auto body = co_await resp->read_all(kErrorBodyLimit);
  if (!body) co_return std::unexpected(body.error());
  if (resp->status() != 200) {
    Error e{.kind = ErrorKind::Unauthorized, .message = "token service at " + u->host_header() + " refused: HTTP " +
                                                         std::to_string(resp->status())};
    if (resp->status() >= 500 || resp->status() == 429) {
      e.kind = ErrorKind::Http;
      e.http_status = resp->status();
    }
    co_return std::unexpected(e);
  }
  boost::system::error_code ec;
  auto doc = boost::json::parse(*body, ec);
  if (ec || !doc.is_object()) co_return fail(ErrorKind::Protocol, "token response is not JSON");
  const auto& o = doc.as_object();
  std::string token;
  for (const char* k : {"token", "access_token"})
    if (const auto* v = o.if_contains(k); v && v->is_string() && token.empty()) token = std::string(v->as_string());
  if (token.empty()) co_return fail(ErrorKind::Protocol, "token response without a token");
  long long expires_in = 60;
  if (const auto* v = o.if_contains("expires_in"); v && v->is_number()) expires_in = v->to_number<long long>();
  if (expires_in < 10) expires_in = 10;
  // Refresh a little before the token service's deadline.
  tokens_[scope] = Token{token, std::chrono::steady_clock::now() + std::chrono::seconds(expires_in * 9 / 10)};
  co_return Result<void>{};
}

Task<Error> RegistryClient::error_from(ResponseStream& resp, std::string operation, std::string repository,
                                       std::string digest) {
  Error err{.kind = ErrorKind::Http, .message = {}, .operation = std::move(operation), .registry = config_.host,
            .repository = std::move(repository), .digest = std::move(digest)};
  auto body = co_await resp.read_all(kErrorBodyLimit);
  apply_error_body(err, resp.status(), body ? *body : std::string());
  if (auto ra = parse_retry_after(resp.header("Retry-After"), static_cast<long long>(std::time(nullptr)))) {
    err.retry_after_ms = static_cast<int>(ra->count());
  }
  if (err.message.empty()) err.message = "HTTP " + std::to_string(resp.status());
  co_return err;
}

Task<Result<ResponseStream>> RegistryClient::send(std::string operation, HttpRequest req, std::string scope,
                                                  std::string repository, std::string digest) {
  auto where = [&](Error e) {
    e.operation = operation;
    e.registry = config_.host;
    if (e.repository.empty()) e.repository = repository;
    if (e.digest.empty()) e.digest = digest;
    return e;
  };
  std::chrono::milliseconds waited{0};
  bool reauthenticated = false;
  std::uniform_real_distribution<double> jitter(0.0, 1.0);
  for (int attempt = 1;; ++attempt) {
    Error err;
    if (challenge_ && challenge_->scheme == "bearer" && !authorization(scope)) {
      const std::vector<Challenge> known{*challenge_};
      auto a = co_await authenticate(known, scope);
      if (!a) err = where(a.error());
    }
    if (err.message.empty()) {
      HttpRequest r = req;
      r.headers.emplace_back("User-Agent", config_.user_agent);
      if (auto a = authorization(scope)) r.headers.emplace_back("Authorization", *a);
      if (config_.limiter) co_await config_.limiter->request();
      auto resp = co_await http_.open(std::move(r));
      if (config_.on_response) config_.on_response(resp ? resp->status() : 0);
      if (!resp) {
        err = where(resp.error());
      } else if (resp->status() == 401 && !reauthenticated) {
        auto challenges = parse_www_authenticate(resp->header("WWW-Authenticate"));
        (void)co_await resp->read_all(kErrorBodyLimit);
        reauthenticated = true;
        tokens_.erase(scope);
        auto a = co_await authenticate(challenges, scope);
        if (!a) {
          err = where(a.error());
          if (!err.retryable()) co_return std::unexpected(err);
        } else {
          --attempt;  // authenticating is not a retry
          continue;
        }
      } else if (retryable_status(resp->status())) {
        err = co_await error_from(*resp, operation, repository, digest);
      } else {
        co_return std::move(*resp);
      }
    }
    if (!err.retryable() || attempt >= config_.retry.max_attempts || waited >= config_.retry.max_total) {
      co_return std::unexpected(err);
    }
    std::optional<std::chrono::milliseconds> ra;
    if (err.retry_after_ms >= 0) ra = std::chrono::milliseconds(err.retry_after_ms);
    const auto d = retry_delay(config_.retry, attempt, jitter(rng_), ra);
    spdlog::debug("retrying op=\"{}\" registry={} repository={} attempt={} delay_ms={} cause=\"{}\"", operation,
                  config_.host, repository, attempt, d.count(), err.to_string());
    co_await sleep(d);
    waited += d;
  }
}

Task<Result<void>> RegistryClient::ping() {
  HttpRequest req{.method = "GET", .url = url("/v2/"), .headers = {}, .body = {}};
  auto resp = co_await send("ping", req, "");
  if (!resp) co_return std::unexpected(resp.error());
  if (resp->status() != 200) co_return std::unexpected(co_await error_from(*resp, "ping", "", ""));
  (void)co_await resp->read_all(kErrorBodyLimit);
  co_return Result<void>{};
}

Task<Result<std::vector<std::string>>> RegistryClient::list(std::string operation, std::string target,
                                                            std::string field, std::string scope,
                                                            std::string repository) {
  std::vector<std::string> out;
  for (int page = 0; page < 100000; ++page) {
    HttpRequest req{.method = "GET", .url = url(target), .headers = {{"Accept", "application/json"}}, .body = {}};
    auto resp = co_await send(operation, req, scope, repository);
    if (!resp) co_return std::unexpected(resp.error());
    if (resp->status() != 200) co_return std::unexpected(co_await error_from(*resp, operation, repository, ""));
    const auto link = resp->header("Link");
    auto body = co_await resp->read_all(16 * 1024 * 1024);
    if (!body) co_return std::unexpected(body.error());
    boost::system::error_code ec;
    auto doc = boost::json::parse(*body, ec);
    if (ec || !doc.is_object()) co_return fail(ErrorKind::Protocol, operation + ": response is not a JSON object");
    if (const auto* arr = doc.as_object().if_contains(field); arr && arr->is_array()) {
      for (const auto& v : arr->as_array())
        if (v.is_string()) out.emplace_back(v.as_string());
    }
    auto next = parse_next_link(link);
    if (!next) co_return out;
    auto resolved = url(target).resolve(*next);
    if (!resolved) co_return std::unexpected(resolved.error());
    target = resolved->target;
  }
  co_return fail(ErrorKind::Protocol, operation + ": too many pages");
}

Task<Result<std::vector<std::string>>> RegistryClient::catalog(int page_size) {
  co_return co_await list("list repositories", "/v2/_catalog?n=" + std::to_string(page_size), "repositories",
                          "registry:catalog:*", "");
}

Task<Result<std::vector<std::string>>> RegistryClient::tags(std::string repository, int page_size) {
  if (!valid_repository_name(repository)) co_return fail(ErrorKind::InvalidReference, "invalid repository name '" + repository + "'");
  co_return co_await list("list tags", "/v2/" + repository + "/tags/list?n=" + std::to_string(page_size), "tags",
                          pull_scope(repository), repository);
}

Task<Result<std::optional<ManifestHead>>> RegistryClient::head_manifest(std::string repository, std::string reference) {
  if (!valid_repository_name(repository)) co_return fail(ErrorKind::InvalidReference, "invalid repository name '" + repository + "'");
  HttpRequest req{.method = "HEAD", .url = url("/v2/" + repository + "/manifests/" + reference),
                  .headers = {{"Accept", std::string(media::manifest_accept)}}, .body = {}};
  auto resp = co_await send("HEAD manifest", req, pull_scope(repository), repository, reference);
  if (!resp) co_return std::unexpected(resp.error());
  if (resp->status() == 404) co_return std::optional<ManifestHead>{};
  if (resp->status() != 200) co_return std::unexpected(co_await error_from(*resp, "HEAD manifest", repository, reference));
  ManifestHead h{.media_type = resp->header("Content-Type"), .digest = resp->header("Docker-Content-Digest"),
                 .size = resp->content_length().value_or(0)};
  co_return std::optional<ManifestHead>(h);
}

Task<Result<Manifest>> RegistryClient::get_manifest(std::string repository, std::string reference) {
  const std::string op = "GET manifest";
  if (!valid_repository_name(repository)) co_return fail(ErrorKind::InvalidReference, "invalid repository name '" + repository + "'");
  HttpRequest req{.method = "GET", .url = url("/v2/" + repository + "/manifests/" + reference),
                  .headers = {{"Accept", std::string(media::manifest_accept)}}, .body = {}};
  auto resp = co_await send(op, req, pull_scope(repository), repository, reference);
  if (!resp) co_return std::unexpected(resp.error());
  if (resp->status() != 200) co_return std::unexpected(co_await error_from(*resp, op, repository, reference));
  auto where = [&](ErrorKind k, std::string msg) {
    return std::unexpected(Error{.kind = k, .message = std::move(msg), .operation = op, .registry = config_.host,
                                 .repository = repository, .digest = reference});
  };
  auto body = co_await resp->read_all(kMaxManifestBytes);
  if (!body) {
    if (body.error().kind == ErrorKind::TooLarge) co_return where(ErrorKind::TooLarge, "manifest larger than 4 MiB refused");
    co_return where(body.error().kind, body.error().message);
  }
  Manifest m{.bytes = std::move(*body), .media_type = resp->header("Content-Type"), .digest = {}};
  m.digest = Sha256::of(m.bytes);
  if (valid_digest(reference) && m.digest != reference) {
    co_return where(ErrorKind::DigestMismatch, "served manifest bytes hash to " + m.digest);
  }
  if (auto claimed = resp->header("Docker-Content-Digest"); valid_digest(claimed) && claimed != m.digest) {
    co_return where(ErrorKind::DigestMismatch, "Docker-Content-Digest " + claimed + " but bytes hash to " + m.digest);
  }
  co_return m;
}

Task<Result<Referrers>> RegistryClient::referrers(std::string repository, std::string digest) {
  const std::string op = "GET referrers";
  if (!valid_repository_name(repository)) co_return fail(ErrorKind::InvalidReference, "invalid repository name '" + repository + "'");
  if (!valid_digest(digest)) co_return fail(ErrorKind::InvalidReference, "referrers of '" + digest + "': not a sha256 digest");
  HttpRequest req{.method = "GET", .url = url("/v2/" + repository + "/referrers/" + digest),
                  .headers = {{"Accept", std::string(media::oci_index)}}, .body = {}};
  auto resp = co_await send(op, req, pull_scope(repository), repository, digest);
  if (!resp) co_return std::unexpected(resp.error());
  Referrers out;
  if (resp->status() == 200) {
    auto body = co_await resp->read_all(kMaxManifestBytes);
    if (!body) co_return std::unexpected(body.error());
    auto info = inspect_manifest(*body, resp->header("Content-Type"));
    if (!info || !info->is_index) {
      co_return fail(ErrorKind::Protocol, op + " " + repository + "@" + digest + ": the answer is not an image index");
    }
    out.manifests = std::move(info->children);
    out.api = true;
    co_return out;
  }
  if (resp->status() != 404) co_return std::unexpected(co_await error_from(*resp, op, repository, digest));
  // No referrers API: the tag schema (distribution-spec 1.1), an index tagged sha256-<hex>.
  const std::string tag = "sha256-" + digest.substr(std::string_view("sha256:").size());
  auto index = co_await get_manifest(repository, tag);
  if (!index) {
    if (index.error().kind == ErrorKind::NotFound) co_return out;
    co_return std::unexpected(index.error());
  }
  auto info = inspect_manifest(index->bytes, index->media_type);
  if (!info || !info->is_index) co_return out;  // a tag of that name that is not the schema's index
  out.manifests = std::move(info->children);
  out.fallback_tag = tag;
  out.fallback_index = index->digest;
  co_return out;
}

Task<Result<std::string>> RegistryClient::put_manifest(std::string repository, std::string reference,
                                                       std::string media_type, std::string bytes) {
  const std::string op = "PUT manifest";
  if (!valid_repository_name(repository)) co_return fail(ErrorKind::InvalidReference, "invalid repository name '" + repository + "'");
  if (bytes.size() > kMaxManifestBytes) co_return fail(ErrorKind::TooLarge, "manifest larger than 4 MiB refused");
  const auto digest = Sha256::of(bytes);
  HttpRequest req{.method = "PUT", .url = url("/v2/" + repository + "/manifests/" + reference),
                  .headers = {{"Content-Type", media_type}}, .body = std::move(bytes)};
  auto resp = co_await send(op, std::move(req), push_scope(repository), repository, reference);
  if (!resp) co_return std::unexpected(resp.error());
  if (resp->status() != 201 && resp->status() != 200) {
    co_return std::unexpected(co_await error_from(*resp, op, repository, reference));
  }
  auto reported = resp->header("Docker-Content-Digest");
  (void)co_await resp->read_all(kErrorBodyLimit);
  if (valid_digest(reported) && reported != digest) {
    co_return std::unexpected(Error{.kind = ErrorKind::DigestMismatch,
                                    .message = "registry stored the manifest as " + reported + ", expected " + digest,
                                    .operation = op, .registry = config_.host, .repository = repository,
                                    .digest = reference});
  }
  co_return digest;
}

Task<Result<std::optional<std::uint64_t>>> RegistryClient::head_blob(std::string repository, std::string digest) {
  HttpRequest req{.method = "HEAD", .url = url("/v2/" + repository + "/blobs/" + digest), .headers = {}, .body = {}};
  auto resp = co_await send("HEAD blob", req, pull_scope(repository), repository, digest);
  if (!resp) co_return std::unexpected(resp.error());
  if (resp->status() == 404) co_return std::optional<std::uint64_t>{};
  if (resp->status() != 200) co_return std::unexpected(co_await error_from(*resp, "HEAD blob", repository, digest));
  co_return std::optional<std::uint64_t>(resp->content_length().value_or(0));
}

Task<Result<ResponseStream>> RegistryClient::get_blob(std::string repository, std::string digest) {
  const std::string op = "GET blob";
  HttpRequest req{.method = "GET", .url = url("/v2/" + repository + "/blobs/" + digest), .headers = {}, .body = {}};
  auto resp = co_await send(op, req, pull_scope(repository), repository, digest);
  for (int hop = 0; hop < 6; ++hop) {
    if (!resp) co_return std::unexpected(resp.error());
    const int st = resp->status();
    if (st == 200) co_return std::move(*resp);
    if (st != 301 && st != 302 && st != 303 && st != 307 && st != 308) break;
    auto next = req.url.resolve(resp->header("Location"));
    if (!next) co_return std::unexpected(next.error());
    (void)co_await resp->read_all(kErrorBodyLimit);
    // Redirect targets (object storage) get no registry credentials.
    req = HttpRequest{.method = "GET", .url = *next, .headers = {{"User-Agent", config_.user_agent}}, .body = {}};
    resp = co_await http_.open(req);
  }
  if (!resp) co_return std::unexpected(resp.error());
  co_return std::unexpected(co_await error_from(*resp, op, repository, digest));
}

Task<Result<UploadSession>> RegistryClient::start_upload(std::string repository) {
  HttpRequest req{.method = "POST", .url = url("/v2/" + repository + "/blobs/uploads/"), .headers = {}, .body = {}};
  auto resp = co_await send("start upload", req, push_scope(repository), repository);
  if (!resp) co_return std::unexpected(resp.error());
  if (resp->status() != 202) co_return std::unexpected(co_await error_from(*resp, "start upload", repository, ""));
  auto loc = req.url.resolve(resp->header("Location"));
  (void)co_await resp->read_all(kErrorBodyLimit);
  if (!loc) co_return std::unexpected(loc.error());
  co_return UploadSession{*loc};
}

Task<Result<MountOutcome>> RegistryClient::mount_blob(std::string repository, std::string digest,
                                                      std::string from_repository) {
  HttpRequest req{.method = "POST",
                  .url = url("/v2/" + repository + "/blobs/uploads/?mount=" + pct_digest(digest) + "&from=" + from_repository),
                  .headers = {}, .body = {}};
  auto resp = co_await send("mount blob", req, push_scope(repository) + " " + pull_scope(from_repository), repository,
                            digest);
  if (!resp) co_return std::unexpected(resp.error());
  const int st = resp->status();
  if (st != 201 && st != 202) co_return std::unexpected(co_await error_from(*resp, "mount blob", repository, digest));
  MountOutcome out;
  out.mounted = st == 201;
  if (!out.mounted) {
    auto loc = req.url.resolve(resp->header("Location"));
    if (!loc) co_return std::unexpected(loc.error());
    out.session = UploadSession{*loc};
  }
  (void)co_await resp->read_all(kErrorBodyLimit);
  co_return out;
}

Task<Result<RequestStream>> RegistryClient::open_stream(std::string method, std::string repository, Url url,
                                                        Headers headers, std::uint64_t length) {
  HttpRequest req{.method = method, .url = std::move(url), .headers = std::move(headers), .body = {}};
  req.headers.emplace_back("Content-Type", "application/octet-stream");
  req.headers.emplace_back("User-Agent", config_.user_agent);
  const auto scope = push_scope(repository);
  if (challenge_ && challenge_->scheme == "bearer" && !authorization(scope)) {
    const std::vector<Challenge> known{*challenge_};
    auto a = co_await authenticate(known, scope);
    if (!a) co_return std::unexpected(a.error());
  }
  if (auto a = authorization(scope)) req.headers.emplace_back("Authorization", *a);
  if (config_.limiter) co_await config_.limiter->request();
  auto s = co_await http_.open_upload(std::move(req), length);
  if (!s) {
    auto e = s.error();
    e.operation = method + " blob";
    e.registry = config_.host;
    e.repository = repository;
    co_return std::unexpected(e);
  }
  co_return std::move(*s);
}

Task<Result<RequestStream>> RegistryClient::open_patch(std::string repository, UploadSession session,
                                                       std::uint64_t offset, std::uint64_t length) {
  Headers h;
  if (length > 0) h.emplace_back("Content-Range", std::to_string(offset) + "-" + std::to_string(offset + length - 1));
  co_return co_await open_stream("PATCH", repository, session.location, std::move(h), length);
}

Task<Result<RequestStream>> RegistryClient::open_put(std::string repository, UploadSession session,
                                                     std::string digest, std::uint64_t length) {
  Url u = session.location;
  u.target += (u.target.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") + pct_digest(digest);
  co_return co_await open_stream("PUT", repository, u, {}, length);
}

Task<Result<void>> RegistryClient::finish_put(std::string repository, std::string digest, RequestStream stream) {
  auto resp = co_await stream.finish();
  if (config_.on_response) config_.on_response(resp ? resp->status() : 0);
  if (!resp) {
    auto e = resp.error();
    e.operation = "PUT blob";
    e.registry = config_.host;
    e.repository = repository;
    e.digest = digest;
    co_return std::unexpected(e);
  }
  if (resp->status() != 201 && resp->status() != 204) {
    co_return std::unexpected(co_await error_from(*resp, "PUT blob", repository, digest));
  }
  (void)co_await resp->read_all(kErrorBodyLimit);
  co_return Result<void>{};
}

Task<Result<UploadSession>> RegistryClient::finish_patch(std::string repository, RequestStream stream) {
  auto resp = co_await stream.finish();
  if (config_.on_response) config_.on_response(resp ? resp->status() : 0);
  if (!resp) {
    auto e = resp.error();
    e.operation = "PATCH blob";
    e.repository = repository;
    co_return std::unexpected(e);
  }
  if (resp->status() != 202) co_return std::unexpected(co_await error_from(*resp, "PATCH blob", repository, ""));
  auto loc = url("/").resolve(resp->header("Location"));
  (void)co_await resp->read_all(kErrorBodyLimit);
  if (!loc) co_return std::unexpected(loc.error());
  co_return UploadSession{*loc};
}

Task<Result<void>> RegistryClient::complete_upload(std::string repository, UploadSession session, std::string digest,
                                                   std::string body) {
  Url u = session.location;
  u.target += (u.target.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") + pct_digest(digest);
  HttpRequest req{.method = "PUT", .url = u, .headers = {{"Content-Type", "application/octet-stream"}},
                  .body = std::move(body)};
  auto resp = co_await send("complete upload", std::move(req), push_scope(repository), repository, digest);
  if (!resp) co_return std::unexpected(resp.error());
  if (resp->status() != 201 && resp->status() != 204) {
    co_return std::unexpected(co_await error_from(*resp, "complete upload", repository, digest));
  }
  (void)co_await resp->read_all(kErrorBodyLimit);
  co_return Result<void>{};
}

Task<Result<void>> RegistryClient::put_blob(std::string repository, std::string digest, std::string bytes) {
  if (Sha256::of(bytes) != digest) co_return fail(ErrorKind::DigestMismatch, "blob bytes do not match " + digest);
  auto session = co_await start_upload(repository);
  if (!session) co_return std::unexpected(session.error());
  co_return co_await complete_upload(repository, *session, digest, std::move(bytes));
}

}  // namespace ferry::registry
