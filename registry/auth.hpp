// Registry credentials and WWW-Authenticate challenges; pure, no I/O. Secrets never reach logs.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "registry/error.hpp"

namespace ferry::registry {

// Username/password or an identity token. Deliberately not printable.
struct Credentials {
  std::string username;
  std::string password;
  std::string identity_token;  // docker config "identitytoken": an OAuth2 refresh token
  bool empty() const { return username.empty() && password.empty() && identity_token.empty(); }
  bool operator==(const Credentials&) const = default;
};

struct Challenge {
  std::string scheme;                         // lower-cased: "basic", "bearer"
  std::map<std::string, std::string> params;  // keys lower-cased: realm, service, scope, error
};

// RFC 7235 challenges: `Bearer realm="https://a/token",service="reg",scope="repository:x:pull"`.
// Several challenges in one header are split; quoted strings may contain commas and escapes.
std::vector<Challenge> parse_www_authenticate(std::string_view header);

// "user:pass" (the password may contain ':').
Result<Credentials> parse_user_password(std::string_view text);

// Credentials for `registry_host` from a Docker config JSON (~/.docker/config.json, a
// kubernetes.io/dockerconfigjson Secret, containers auth.json): `auths` keyed by host or URL,
// with `auth` (base64 user:pass), `username`/`password` or `identitytoken`.
// Returns empty credentials when the host has no entry.
Result<Credentials> credentials_from_docker_config(std::string_view json, std::string_view registry_host);

// "Basic <base64(user:pass)>".
std::string basic_authorization(const Credentials& creds);

std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);

}  // namespace ferry::registry
