// OCI distribution API client for one registry: ping, catalog/tags, manifests, blobs,
// uploads, cross-repository mount; authentication and retries underneath. No delete
// operation exists here, by design (SPEC S10).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "registry/auth.hpp"
#include "registry/http.hpp"
#include "registry/limits.hpp"
#include "registry/wire.hpp"
#include "registry/retry.hpp"

namespace ferry::registry {

struct RegistryConfig {
  std::string host;          // host[:port] as written in references
  bool plain_http = false;   // http:// instead of https://
  TlsOptions tls;
  Credentials credentials;   // empty: anonymous
  RetryPolicy retry;
  HttpOptions http;
  std::string user_agent = "ferry/0.1";
  // S21: shared by every client of this registry; null means unlimited.
  std::shared_ptr<Limiter> limiter;
  // Told the status of every response (0: none came: refused, reset, timeout, TLS); metrics.
  std::function<void(int status)> on_response;
};

struct Manifest {
  std::string bytes;       // exactly as served
  std::string media_type;  // Content-Type of the response
  std::string digest;      // sha256 of bytes, verified against the reference when it is a digest
};

struct ManifestHead {
  std::string media_type;
  std::string digest;  // Docker-Content-Digest, may be empty
  std::uint64_t size = 0;
};

// Where an upload continues (an absolute URL from Location).
struct UploadSession {
  Url location;
};

// The referrers of a manifest (OCI 1.1): what the referrers API lists, or, where a registry has no
// such API (docker distribution 2.8 and v3), the index under the tag schema's sha256-<hex> tag.
struct Referrers {
  std::vector<Descriptor> manifests;
  std::string fallback_tag;    // set when they came from the tag schema: the tag,
  std::string fallback_index;  // and the digest of the index it names
  bool api = false;            // the registry answered the referrers API
};

struct MountOutcome {
  bool mounted = false;
  std::optional<UploadSession> session;  // when the registry declined the mount
};

class RegistryClient {
 public:
  RegistryClient(boost::asio::any_io_executor ex, RegistryConfig config);
  ~RegistryClient();
  const std::string& host() const { return config_.host; }
  const RegistryConfig& config() const { return config_; }
  // Whether a client made with `a` can serve `b` as it is: the same host, scheme, TLS,
  // credentials, timeouts, retry policy, user agent and limiter. Only the response callback may
  // differ; retune() takes it.
  static bool same_connection(const RegistryConfig& a, const RegistryConfig& b);
  // Takes `next`'s response callback; everything else must be same_connection().
  void retune(const RegistryConfig& next) { config_.on_response = next.on_response; }

  // GET /v2/: reachable, speaks the distribution API, and learns the auth challenge.
  Task<Result<void>> ping();
  // All repositories / tags, following Link pagination with n=page_size.
  Task<Result<std::vector<std::string>>> catalog(int page_size = 100);
  Task<Result<std::vector<std::string>>> tags(std::string repository, int page_size = 100);

  // nullopt when the manifest does not exist.
  Task<Result<std::optional<ManifestHead>>> head_manifest(std::string repository, std::string reference);
  // Refuses manifests over 4 MiB and bytes that do not match a digest reference.
  Task<Result<Manifest>> get_manifest(std::string repository, std::string reference);
  // The referrers of the manifest `digest`; empty when it has none (or the registry neither has
  // the API nor the tag).
  Task<Result<Referrers>> referrers(std::string repository, std::string digest);
  // PUT the bytes unchanged; returns the digest the registry reports (or computes locally).
  Task<Result<std::string>> put_manifest(std::string repository, std::string reference, std::string media_type,
                                         std::string bytes);

  // Size of the blob, nullopt when absent.
  Task<Result<std::optional<std::uint64_t>>> head_blob(std::string repository, std::string digest);
  // Streaming GET, following redirects (to object storage) without leaking credentials.
  Task<Result<ResponseStream>> get_blob(std::string repository, std::string digest);

  // POST /blobs/uploads/: opens an upload session.
  Task<Result<UploadSession>> start_upload(std::string repository);
  // POST ?mount=digest&from=repo: mounted (201) or an upload session to fall back on (202).
  Task<Result<MountOutcome>> mount_blob(std::string repository, std::string digest, std::string from_repository);
  // One PATCH of `length` bytes at `offset`; the body follows through the returned stream.
  // Pass the stream to finish_patch to learn the next location.
  Task<Result<RequestStream>> open_patch(std::string repository, UploadSession session, std::uint64_t offset,
                                         std::uint64_t length);
  Task<Result<UploadSession>> finish_patch(std::string repository, RequestStream stream);
  // PUT ?digest= with a streamed body of `length` bytes: uploads and commits in one request.
  // The registry verifies the digest before committing; finish with finish_put.
  Task<Result<RequestStream>> open_put(std::string repository, UploadSession session, std::string digest,
                                       std::uint64_t length);
  Task<Result<void>> finish_put(std::string repository, std::string digest, RequestStream stream);
  // PUT ?digest=: commits the session, with an optional final body (monolithic upload).
  Task<Result<void>> complete_upload(std::string repository, UploadSession session, std::string digest,
                                     std::string body = {});
  // POST then monolithic PUT of an in-memory blob.
  Task<Result<void>> put_blob(std::string repository, std::string digest, std::string bytes);

 private:
  struct Token {
    std::string value;
    std::chrono::steady_clock::time_point expires;
  };
  Url url(std::string target) const;
  Task<Result<RequestStream>> open_stream(std::string method, std::string repository, Url url, Headers headers,
                                          std::uint64_t length);
  Task<Result<ResponseStream>> send(std::string operation, HttpRequest req, std::string scope,
                                    std::string repository = {}, std::string digest = {});
  Task<Result<void>> authenticate(const std::vector<Challenge>& challenges, const std::string& scope);
  std::optional<std::string> authorization(const std::string& scope);
  Task<Error> error_from(ResponseStream& resp, std::string operation, std::string repository, std::string digest);
  Task<void> sleep(std::chrono::milliseconds d);
  Task<Result<std::vector<std::string>>> list(std::string operation, std::string first_target, std::string field,
                                              std::string scope, std::string repository);

  boost::asio::any_io_executor ex_;
  RegistryConfig config_;
  HttpClient http_;
  std::optional<Challenge> challenge_;       // learned from the first 401
  std::map<std::string, Token> tokens_;      // bearer tokens per scope
  std::mt19937_64 rng_{std::random_device{}()};
};

std::string pull_scope(const std::string& repository);
std::string push_scope(const std::string& repository);

// For callers without an event loop (the CLI): runs `work(client)`, a coroutine on a client for
// `config`, to completion on a private io_context and returns its result.
template <class Work>
auto run_with_client(const RegistryConfig& config, Work work)
    -> typename decltype(work(std::declval<RegistryClient&>()))::value_type {
  using T = typename decltype(work(std::declval<RegistryClient&>()))::value_type;
  boost::asio::io_context ioc;
  RegistryClient client(ioc.get_executor(), config);
  std::optional<T> out;
  std::exception_ptr error;
  boost::asio::co_spawn(ioc, work(client), [&](std::exception_ptr e, T r) {
    error = e;
    out = std::move(r);
  });
  ioc.run();
  if (error) std::rethrow_exception(error);
  return std::move(*out);
}

}  // namespace ferry::registry
