// SigV4 signing as AWS documents it and botocore implements it (tests/aws checks both).
#include "aws/sigv4.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <cctype>
#include <ctime>
#include <stdexcept>

#include "aws/credentials.hpp"

namespace ferry::aws {
namespace {

// botocore's SIGNED_HEADERS_BLACKLIST: hop-by-hop headers and ones proxies rewrite.
constexpr std::string_view kUnsigned[] = {"connection",  "expect",  "keep-alive",        "proxy-authenticate",
                                          "proxy-authorization", "te", "trailer", "transfer-encoding",
                                          "upgrade", "user-agent", "x-amzn-trace-id"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) { return lower(a) == lower(b); }

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding of one query component; a '%' not followed by two hex digits stays literal
// (and is then encoded as %25), '+' stays '+' (AWS does not read it as a space).
std::string pct_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// RFC 3986 section 5.2.4 plus AWS's removal of empty segments (botocore remove_dot_segments).
std::string remove_dot_segments(std::string_view path) {
  if (path.empty()) return "/";
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start <= path.size()) {
    const auto slash = path.find('/', start);
    const auto end = slash == std::string_view::npos ? path.size() : slash;
    const auto seg = path.substr(start, end - start);
    if (seg == "..") {
      if (!out.empty()) out.pop_back();
    } else if (!seg.empty() && seg != ".") {
      out.push_back(seg);
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  std::string result = path.front() == '/' ? "/" : "";
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i) result += '/';
    result += out[i];
  }
  if (path.back() == '/' && !out.empty()) result += '/';
  return result;
}

}  // namespace

std::string uri_encode(std::string_view bytes, bool keep_slash) {
  namespace urls = boost::urls;
  if (keep_slash) return urls::encode(bytes, urls::unreserved_chars + '/');
  return urls::encode(bytes, urls::unreserved_chars);
}

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("EVP_Digest(sha256) failed");
  return hex(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
            data.size(), md, &len))
    throw std::runtime_error("HMAC(sha256) failed");
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string signing_key(std::string_view secret, std::string_view date, std::string_view region,
                        std::string_view service) {
  const auto k_date = hmac_sha256("AWS4" + std::string(secret), date);
  const auto k_region = hmac_sha256(k_date, region);
  const auto k_service = hmac_sha256(k_region, service);
  return hmac_sha256(k_service, "aws4_request");
}

std::string amz_date(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string canonical_uri(std::string_view path, bool normalize) {
  if (path.empty()) return "/";
  return uri_encode(normalize ? remove_dot_segments(path) : std::string(path), true);
}

std::string canonical_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  std::size_t start = 0;
  while (start <= query.size() && !query.empty()) {
    const auto amp = query.find('&', start);
    const auto end = amp == std::string_view::npos ? query.size() : amp;
    const auto pair = query.substr(start, end - start);
    if (!pair.empty()) {
      const auto eq = pair.find('=');
      const auto key = pair.substr(0, eq);
      const auto value = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
      pairs.emplace_back(uri_encode(pct_decode(key), false), uri_encode(pct_decode(value), false));
    }
    if (amp == std::string_view::npos) break;
    start = amp + 1;
  }
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [k, v] : pairs) {
    if (!out.empty()) out += '&';
    out += k + "=" + v;
  }
  return out;
}

std::string trim_all(std::string_view value) {
  // Python's str.split() whitespace, as botocore uses: space, \t, \n, \v, \f, \r.
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
  std::string out;
  bool pending = false;
  for (char c : value) {
    if (ws(c)) {
      pending = !out.empty();
      continue;
    }
    if (pending) out.push_back(' ');
    pending = false;
    out.push_back(c);
  }
  return out;
}

Signature sign(const SignableRequest& req, const Credentials& creds, const SigningParams& params) {
  Signature sig;
  sig.amz_date = amz_date(params.time);
  const auto date = sig.amz_date.substr(0, 8);
  sig.scope = date + "/" + params.region + "/" + params.service + "/aws4_request";

  const bool has_sha_header = std::ranges::any_of(
      req.headers, [](const auto& h) { return iequals(h.first, "x-amz-content-sha256"); });
  std::string payload_hash;
  if (has_sha_header && !params.add_content_sha256) {
    for (const auto& [k, v] : req.headers)
      if (iequals(k, "x-amz-content-sha256")) payload_hash = v;
  } else {
    payload_hash = sha256_hex(req.body);
  }

  sig.added.emplace_back("X-Amz-Date", sig.amz_date);
  if (!creds.session_token.empty()) sig.added.emplace_back("X-Amz-Security-Token", creds.session_token);
  if (params.add_content_sha256) sig.added.emplace_back("X-Amz-Content-SHA256", payload_hash);

  // Header name -> values in order; the request's own first, then the added ones (which replace).
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& [k, v] : req.headers) {
    const auto name = lower(k);
    const bool replaced = std::ranges::any_of(sig.added, [&](const auto& a) { return lower(a.first) == name; });
    if (replaced || name == "authorization") continue;
    if (std::ranges::find(kUnsigned, std::string_view(name)) != std::end(kUnsigned)) continue;
    headers.emplace_back(name, v);
  }
  for (const auto& [k, v] : sig.added) headers.emplace_back(lower(k), v);
  std::stable_sort(headers.begin(), headers.end(), [](const auto& a, const auto& b) { return a.first < b.first; });

  std::string canonical_headers;
  for (std::size_t i = 0; i < headers.size(); ++i) {
    if (i == 0 || headers[i].first != headers[i - 1].first) {
      if (i) {
        canonical_headers += '\n';
        sig.signed_headers += ';';
      }
      canonical_headers += headers[i].first + ":";
      sig.signed_headers += headers[i].first;
    } else {
      canonical_headers += ',';
    }
    canonical_headers += trim_all(headers[i].second);
  }

  std::string_view target = req.target;
  if (const auto hash = target.find('#'); hash != std::string_view::npos) target = target.substr(0, hash);
  const auto q = target.find('?');
  const auto path = target.substr(0, q);
  const auto query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);

  std::string method = req.method;
  for (auto& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  sig.canonical_request = method + "\n" + canonical_uri(path, params.normalize_path) + "\n" + canonical_query(query) +
                          "\n" + canonical_headers + "\n\n" + sig.signed_headers + "\n" + payload_hash;
  sig.string_to_sign = "AWS4-HMAC-SHA256\n" + sig.amz_date + "\n" + sig.scope + "\n" + sha256_hex(sig.canonical_request);
  sig.signature =
      hex(hmac_sha256(signing_key(creds.secret_access_key, date, params.region, params.service), sig.string_to_sign));
  sig.authorization = "AWS4-HMAC-SHA256 Credential=" + creds.access_key_id + "/" + sig.scope +
                      ", SignedHeaders=" + sig.signed_headers + ", Signature=" + sig.signature;
  sig.added.emplace_back("Authorization", sig.authorization);
  return sig;
}

void apply(SignableRequest& req, const Signature& sig) {
  std::erase_if(req.headers, [&](const auto& h) {
    return std::ranges::any_of(sig.added, [&](const auto& a) { return iequals(a.first, h.first); });
  });
  for (const auto& h : sig.added) req.headers.push_back(h);
}

}  // namespace ferry::aws
