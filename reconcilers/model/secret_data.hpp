// Decoding of Secret payloads: base64 data values and Docker config JSON credentials.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "reconcilers/model/resources.hpp"

namespace ferry::model {

// Standard base64 (with padding); nullopt when malformed.
std::optional<std::string> decode_base64(std::string_view in);
std::string encode_base64(std::string_view in);

struct BasicCredentials {
  std::string username;
  std::string password;
};

// Credentials for `host` ("127.0.0.1:5000", matched with or without scheme) from a Secret of
// type kubernetes.io/dockerconfigjson (`auths.<host>.auth` or username/password), or from
// `username`/`password` keys. nullopt when the Secret holds none for that host.
std::optional<BasicCredentials> credentials_from_secret(const Secret& secret, std::string_view host);

// The PEM bundle of a TLS CA Secret: its `ca.crt` key, else `ca.pem`, else `tls.crt` (a
// cert-manager Certificate's Secret). nullopt when it has none of them.
std::optional<std::string> ca_bundle_from_secret(const Secret& secret);

}  // namespace ferry::model
