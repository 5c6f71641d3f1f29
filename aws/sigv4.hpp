// AWS Signature Version 4 for the ECR, SQS and STS APIs: canonical request, string to sign,
// signing key and Authorization header. Pure functions, no I/O; SHA-256 and HMAC from OpenSSL.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::aws {

struct Credentials;

using SignHeaders = std::vector<std::pair<std::string, std::string>>;

// A request as it goes on the wire: `target` is the path and query exactly as sent
// ("/a%20b?x=1"); `headers` must carry Host (HttpClient sends Url::host_header()).
struct SignableRequest {
  std::string method = "GET";
  std::string target = "/";
  SignHeaders headers;
  std::string body;
};

struct SigningParams {
  std::string region;
  std::string service;                     // "ecr", "sqs", "sts"
  std::chrono::system_clock::time_point time;
  bool normalize_path = true;              // every service but S3: remove dot segments and empty ones
  bool add_content_sha256 = false;         // also send and sign x-amz-content-sha256
};

struct Signature {
  std::string amz_date;           // 20150830T123600Z
  std::string scope;              // 20150830/us-east-1/service/aws4_request
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;     // host;x-amz-date
  std::string signature;          // hex
  std::string authorization;      // the Authorization header's value
  SignHeaders added;              // headers to send besides the request's own (X-Amz-Date, ...)
};

// Signs req as given, after replacing any X-Amz-Date / X-Amz-Security-Token / Authorization it
// carries with the ones this signature uses (returned in `added`, Authorization last).
Signature sign(const SignableRequest& req, const Credentials& creds, const SigningParams& params);

// Adds the signature's headers to req.headers (replacing earlier ones of the same names).
void apply(SignableRequest& req, const Signature& sig);

// The building blocks, exposed for the test-suite vectors.
std::string amz_date(std::chrono::system_clock::time_point t);        // YYYYMMDDTHHMMSSZ
std::string canonical_uri(std::string_view path, bool normalize);      // encoded once more, '/' kept
std::string canonical_query(std::string_view query);                   // decoded, re-encoded, sorted
std::string trim_all(std::string_view value);                          // trimmed, whitespace runs -> ' '
std::string uri_encode(std::string_view bytes, bool keep_slash);       // RFC 3986 unreserved kept
std::string sha256_hex(std::string_view data);
std::string hmac_sha256(std::string_view key, std::string_view data);  // raw bytes
std::string hex(std::string_view bytes);
std::string signing_key(std::string_view secret, std::string_view date, std::string_view region,
                        std::string_view service);

}  // namespace ferry::aws
