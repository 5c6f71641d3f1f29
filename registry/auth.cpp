// Challenge parsing, credentials files and Basic auth encoding.
#include "registry/auth.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <cctype>

namespace ferry::registry {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~/").find(c) != std::string_view::npos;
}

// Host[:port] of a docker config `auths` key, which may be a URL like https://host/v1/.
std::string normalise_host(std::string_view key) {
  if (key.find("://") != std::string_view::npos) {
    if (auto u = boost::urls::parse_uri(key); u) return std::string(u->encoded_host_and_port());
  }
  auto slash = key.find('/');
  return std::string(key.substr(0, slash));
}

}  // namespace

std::vector<Challenge> parse_www_authenticate(std::string_view h) {
  std::vector<Challenge> out;
  std::size_t i = 0;
  auto skip_ws = [&] {
    while (i < h.size() && (h[i] == ' ' || h[i] == '\t')) ++i;
  };
  auto read_token = [&] {
    std::size_t start = i;
    while (i < h.size() && is_token_char(h[i])) ++i;
    return h.substr(start, i - start);
  };
  while (i < h.size()) {
    skip_ws();
    while (i < h.size() && (h[i] == ',' || h[i] == ' ')) ++i;
    auto scheme = read_token();
    if (scheme.empty()) break;
    Challenge ch{.scheme = lower(scheme), .params = {}};
    // Parameters: name=value or name="quoted", separated by commas. A token followed by
    // whitespace and another token without '=' starts the next challenge.
    while (true) {
      skip_ws();
      const std::size_t mark = i;
      auto name = read_token();
      skip_ws();
      if (name.empty() || i >= h.size() || h[i] != '=') {
        i = mark;
        break;
      }
      ++i;  // '='
      skip_ws();
      std::string value;
      if (i < h.size() && h[i] == '"') {
        ++i;
        while (i < h.size() && h[i] != '"') {
          if (h[i] == '\\' && i + 1 < h.size()) ++i;
          value += h[i++];
        }
        if (i < h.size()) ++i;  // closing quote
      } else {
        value = std::string(read_token());
      }
      ch.params[lower(name)] = value;
      skip_ws();
      if (i < h.size() && h[i] == ',') {
        ++i;
        continue;
      }
      break;
    }
    out.push_back(std::move(ch));
  }
  return out;
}

Result<Credentials> parse_user_password(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return fail(ErrorKind::Config, "credentials must be USER:PASSWORD");
  }
  return Credentials{.username = std::string(text.substr(0, colon)),
                     .password = std::string(text.substr(colon + 1)),
                     .identity_token = {}};
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

Result<std::string> base64_decode(std::string_view text) {
  std::string in;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) in += c;
  if (in.size() % 4 != 0) return fail(ErrorKind::Config, "invalid base64 (length)");
  std::size_t pad = 0;
  while (pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
  // At most "==", and only at the end: EVP_DecodeBlock reads '=' anywhere as zero bits, and a
  // run of them longer than the output made the length below wrap around.
  if (pad > 2 || in.find('=') < in.size() - pad) return fail(ErrorKind::Config, "invalid base64 (padding)");
  std::string out(3 * in.size() / 4, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return fail(ErrorKind::Config, "invalid base64");
  // EVP_DecodeBlock counts padding as zero bytes; n is 3/4 of the length, so at least pad.
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string basic_authorization(const Credentials& creds) {
  return "Basic " + base64_encode(creds.username + ":" + creds.password);
}

Result<Credentials> credentials_from_docker_config(std::string_view json, std::string_view registry_host) {
  boost::system::error_code ec;
  auto doc = boost::json::parse(json, ec);
  if (ec || !doc.is_object()) return fail(ErrorKind::Config, "docker config is not a JSON object");
  const auto* auths = doc.as_object().if_contains("auths");
  if (!auths) return Credentials{};
  if (!auths->is_object()) return fail(ErrorKind::Config, "docker config: 'auths' is not an object");
  std::string want(registry_host);
  if (want == "registry-1.docker.io" || want == "index.docker.io") want = "docker.io";
  for (const auto& [key, entry] : auths->as_object()) {
    std::string host = normalise_host(key);
    if (host == "index.docker.io" || host == "registry-1.docker.io") host = "docker.io";
    if (host != want) continue;
    if (!entry.is_object()) return fail(ErrorKind::Config, "docker config: entry for a registry is not an object");
    const auto& e = entry.as_object();
    auto str = [&](std::string_view k) -> std::string {
      const auto* v = e.if_contains(k);
      return v && v->is_string() ? std::string(v->as_string()) : std::string();
    };
    Credentials c;
    c.identity_token = str("identitytoken");
    if (auto a = str("auth"); !a.empty()) {
      auto decoded = base64_decode(a);
      if (!decoded) return fail(ErrorKind::Config, "docker config: 'auth' is not valid base64");
      auto up = parse_user_password(*decoded);
      if (!up) return fail(ErrorKind::Config, "docker config: 'auth' is not base64 of USER:PASSWORD");
      c.username = up->username;
      c.password = up->password;
    } else {
      c.username = str("username");
      c.password = str("password");
    }
    return c;
  }
  return Credentials{};
}

}  // namespace ferry::registry
