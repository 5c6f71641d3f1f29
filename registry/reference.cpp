// Image reference parsing and name validation.
#include "registry/reference.hpp"

#include <algorithm>

namespace ferry::registry {
namespace {

bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool valid_component(std::string_view c) {
  if (c.empty() || !lower_alnum(c.front()) || !lower_alnum(c.back())) return false;
  std::size_t i = 0;
  while (i < c.size()) {
    if (lower_alnum(c[i])) {
      ++i;
      continue;
    }
    // A separator: '.', '_', '__' or one or more '-', always followed by an alnum.
    std::size_t j = i;
    if (c[i] == '.') {
      j = i + 1;
    } else if (c[i] == '_') {
      j = (i + 1 < c.size() && c[i + 1] == '_') ? i + 2 : i + 1;
    } else if (c[i] == '-') {
      while (j < c.size() && c[j] == '-') ++j;
    } else {
      return false;
    }
    if (j >= c.size() || !lower_alnum(c[j])) return false;
    i = j;
  }
  return true;
}

bool looks_like_host(std::string_view s) {
  return s.find('.') != std::string_view::npos || s.find(':') != std::string_view::npos ||
         s == "localhost" || std::any_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

bool valid_host(std::string_view h) {
  if (h.empty() || h.size() > 255) return false;
  return std::all_of(h.begin(), h.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == ':' || c == '[' || c == ']';
  });
}

}  // namespace

bool valid_repository_name(std::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  std::size_t start = 0;
  while (true) {
    const auto slash = name.find('/', start);
    const auto comp = name.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (!valid_component(comp)) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

bool valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  if (!word(tag.front())) return false;
  return std::all_of(tag.begin(), tag.end(), [&](char c) { return word(c) || c == '.' || c == '-'; });
}

bool valid_digest(std::string_view digest) {
  constexpr std::string_view prefix = "sha256:";
  if (digest.size() != prefix.size() + 64 || !digest.starts_with(prefix)) return false;
  return std::all_of(digest.begin() + prefix.size(), digest.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string api_host(std::string_view registry) {
  if (registry == "docker.io" || registry == "index.docker.io") return "registry-1.docker.io";
  return std::string(registry);
}

bool is_loopback_host(std::string_view registry) {
  std::string_view host = registry;
  if (host.starts_with('[')) {
    host = host.substr(1, host.find(']') == std::string_view::npos ? std::string_view::npos : host.find(']') - 1);
  } else if (host.find(':') == host.rfind(':') && host.find(':') != std::string_view::npos) {
    host = host.substr(0, host.find(':'));  // host:port (a bare IPv6 address has several colons)
  }
  if (host == "localhost" || host == "::1") return true;
  if (!host.starts_with("127.")) return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.') ++dots;
    else if (c < '0' || c > '9') return false;
  }
  return dots == 3;
}

std::string Reference::to_string() const {
  std::string out = registry + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

Result<Reference> parse_reference(std::string_view text) {
  auto bad = [&](std::string why) {
    return fail(ErrorKind::InvalidReference, "invalid image reference '" + std::string(text) + "': " + why);
  };
  if (text.empty()) return bad("empty");
  if (text.size() > 1024) return bad("longer than 1024 characters");
  Reference ref;
  std::string_view rest = text;
  if (const auto at = rest.find('@'); at != std::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (!valid_digest(ref.digest)) return bad("digest must be sha256:<64 lowercase hex>");
  }
  const auto first_slash = rest.find('/');
  if (first_slash != std::string_view::npos && looks_like_host(rest.substr(0, first_slash))) {
    ref.registry = std::string(rest.substr(0, first_slash));
    rest = rest.substr(first_slash + 1);
    if (!valid_host(ref.registry)) return bad("invalid registry host '" + ref.registry + "'");
  } else {
    ref.registry = "docker.io";
  }
  // A tag follows the last ':' that comes after the last '/'.
  const auto last_slash = rest.rfind('/');
  const auto colon = rest.rfind(':');
  if (colon != std::string_view::npos && (last_slash == std::string_view::npos || colon > last_slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!valid_tag(ref.tag)) return bad("invalid tag '" + ref.tag + "'");
  }
  ref.repository = std::string(rest);
  if (ref.registry == "docker.io" && ref.repository.find('/') == std::string::npos) {
    ref.repository = "library/" + ref.repository;
  }
  if (!valid_repository_name(ref.repository)) {
    return bad("repository name '" + ref.repository + "' is outside the OCI grammar");
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

}  // namespace ferry::registry
