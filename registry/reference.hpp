// Image references (registry/repository:tag@digest) and the OCI name grammar; pure, no I/O.
#pragma once

#include <string>
#include <string_view>

#include "registry/error.hpp"

namespace ferry::registry {

struct Reference {
  std::string registry;    // host[:port] as written, e.g. 127.0.0.1:5000
  std::string repository;  // e.g. prod/app
  std::string tag;         // empty when only a digest was given
  std::string digest;      // "sha256:<64 hex>" or empty

  // What a manifest request addresses: the digest when known, else the tag.
  std::string identifier() const { return digest.empty() ? tag : digest; }
  std::string to_string() const;
  bool operator==(const Reference&) const = default;
};

// Parses "host[:port]/repo[:tag][@sha256:...]". A reference without a registry host
// refers to Docker Hub (docker.io, "library/" for single-component names), as docker does.
// Without tag or digest the tag is "latest".
Result<Reference> parse_reference(std::string_view text);

// OCI distribution grammar: path components of [a-z0-9]+ joined by '.', '_', '__' or '-'+,
// separated by '/', at most 255 characters in total. Rejects traversal such as "../x".
bool valid_repository_name(std::string_view name);
// [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
bool valid_tag(std::string_view tag);
// "sha256:" followed by 64 lowercase hex digits (the only algorithm Ferry verifies).
bool valid_digest(std::string_view digest);

// Docker Hub's API host for the "docker.io" alias; any other host is returned unchanged.
std::string api_host(std::string_view registry);

// Whether host[:port] names this machine: localhost, 127.0.0.0/8 or [::1] (crane and skopeo talk
// plain HTTP to these unless told otherwise).
bool is_loopback_host(std::string_view registry);

}  // namespace ferry::registry
