// Decoding of Secret payloads with OpenSSL's base64 and Boost.JSON.
#include "reconcilers/model/secret_data.hpp"

#include <openssl/evp.h>

#include <boost/json.hpp>

#include "reconcilers/model/parse.hpp"

namespace ferry::model {

std::optional<std::string> decode_base64(std::string_view in) {
  std::string clean;
  clean.reserve(in.size());
  for (char c : in) {
    if (c != '\n' && c != '\r' && c != ' ') clean.push_back(c);
  }
  if (clean.size() % 4 != 0) return std::nullopt;
  if (clean.empty()) return std::string();
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) return std::nullopt;
  std::size_t pad = 0;
  while (pad < clean.size() && clean[clean.size() - 1 - pad] == '=') ++pad;
  // At most "==", and only at the end: EVP_DecodeBlock reads '=' anywhere as zero bits.
  if (pad > 2 || clean.find('=') < clean.size() - pad) return std::nullopt;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string encode_base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

namespace {

std::string_view strip_scheme(std::string_view h) {
  for (std::string_view s : {"https://", "http://"}) {
    if (h.starts_with(s)) h.remove_prefix(s.size());
  }
  while (h.ends_with('/')) h.remove_suffix(1);
  return h;
}

}  // namespace

std::optional<BasicCredentials> credentials_from_secret(const Secret& secret, std::string_view host) {
  if (auto it = secret.data.find(".dockerconfigjson"); it != secret.data.end()) {
    auto doc = parse_json_text(it->second);
    if (!doc || !doc->is_object()) return std::nullopt;
    const auto* auths = doc->as_object().if_contains("auths");
    if (!auths || !auths->is_object()) return std::nullopt;
    for (const auto& kv : auths->as_object()) {
      if (strip_scheme(kv.key()) != strip_scheme(host) || !kv.value().is_object()) continue;
      const auto& entry = kv.value().as_object();
      if (const auto* auth = entry.if_contains("auth"); auth && auth->is_string()) {
        auto decoded = decode_base64(auth->as_string());
        if (!decoded) return std::nullopt;
        auto colon = decoded->find(':');
        if (colon == std::string::npos) return std::nullopt;
        return BasicCredentials{decoded->substr(0, colon), decoded->substr(colon + 1)};
      }
      const auto* u = entry.if_contains("username");
      const auto* p = entry.if_contains("password");
      if (u && p && u->is_string() && p->is_string()) {
        return BasicCredentials{std::string(u->as_string()), std::string(p->as_string())};
      }
    }
    return std::nullopt;
  }
  auto u = secret.data.find("username");
  auto p = secret.data.find("password");
  if (u != secret.data.end() && p != secret.data.end()) return BasicCredentials{u->second, p->second};
  return std::nullopt;
}

std::optional<std::string> ca_bundle_from_secret(const Secret& secret) {
  for (const char* key : {"ca.crt", "ca.pem", "tls.crt"}) {
    if (auto it = secret.data.find(key); it != secret.data.end()) return it->second;
  }
  return std::nullopt;
}

}  // namespace ferry::model
