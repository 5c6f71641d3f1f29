// Pagination, error bodies, manifest inspection and sha256.
#include "registry/wire.hpp"

#include <boost/json.hpp>
#include <stdexcept>

#include "registry/reference.hpp"

namespace ferry::registry {

std::optional<std::string> parse_next_link(std::string_view h) {
  // Link: <url>; rel="next", <url2>; rel="prev"
  std::size_t pos = 0;
  while (pos < h.size()) {
    const auto lt = h.find('<', pos);
    if (lt == std::string_view::npos) return std::nullopt;
    const auto gt = h.find('>', lt);
    if (gt == std::string_view::npos) return std::nullopt;
    const auto target = h.substr(lt + 1, gt - lt - 1);
    auto next = h.find('<', gt);
    const auto params = h.substr(gt + 1, next == std::string_view::npos ? std::string_view::npos : next - gt - 1);
    for (std::string_view p : {std::string_view("rel=\"next\""), std::string_view("rel=next")}) {
      if (params.find(p) != std::string_view::npos) return std::string(target);
    }
    if (next == std::string_view::npos) break;
    pos = next;
  }
  return std::nullopt;
}

void apply_error_body(Error& err, int status, std::string_view body) {
  err.http_status = status;
  switch (status) {
    case 401: err.kind = ErrorKind::Unauthorized; break;
    case 403: err.kind = ErrorKind::Denied; break;
    case 404: err.kind = ErrorKind::NotFound; break;
    default: err.kind = ErrorKind::Http; break;
  }
  boost::system::error_code ec;
  auto doc = boost::json::parse(body, ec);
  if (ec || !doc.is_object()) return;
  const auto* errors = doc.as_object().if_contains("errors");
  if (!errors || !errors->is_array() || errors->as_array().empty()) return;
  const auto& first = errors->as_array().front();
  if (!first.is_object()) return;
  if (const auto* c = first.as_object().if_contains("code"); c && c->is_string()) err.code = std::string(c->as_string());
  if (const auto* m = first.as_object().if_contains("message"); m && m->is_string()) {
    if (err.message.empty()) err.message = std::string(m->as_string());
  }
  if (err.code == "DIGEST_INVALID" || err.code == "SIZE_INVALID") err.kind = ErrorKind::DigestMismatch;
  if (err.code == "DENIED") err.kind = ErrorKind::Denied;
  if (err.code == "UNAUTHORIZED") err.kind = ErrorKind::Unauthorized;
  if (err.code.ends_with("_UNKNOWN")) err.kind = ErrorKind::NotFound;
}

Result<ManifestInfo> inspect_manifest(std::string_view bytes, std::string_view content_type) {
  boost::system::error_code ec;
  auto doc = boost::json::parse(bytes, ec);
  if (ec || !doc.is_object()) return fail(ErrorKind::Protocol, "manifest is not a JSON object");
  const auto& o = doc.as_object();
  ManifestInfo info;
  if (const auto* mt = o.if_contains("mediaType"); mt && mt->is_string()) info.media_type = std::string(mt->as_string());
  if (info.media_type.empty()) info.media_type = std::string(content_type.substr(0, content_type.find(';')));
  auto descriptor = [](const boost::json::value& v) -> Result<Descriptor> {
    if (!v.is_object()) return fail(ErrorKind::Protocol, "descriptor is not an object");
    const auto& d = v.as_object();
    Descriptor out;
    const auto* dg = d.if_contains("digest");
    if (!dg || !dg->is_string()) return fail(ErrorKind::Protocol, "descriptor without digest");
    out.digest = std::string(dg->as_string());
    if (!valid_digest(out.digest)) return fail(ErrorKind::Unsupported, "descriptor digest '" + out.digest + "' is not sha256");
    if (const auto* mt = d.if_contains("mediaType"); mt && mt->is_string()) out.media_type = std::string(mt->as_string());
    if (const auto* s = d.if_contains("size"); s && s->is_number()) {
      // 1.5 or 1e300 would make to_number throw: a size that is no whole number is refused.
      boost::system::error_code size_ec;
      out.size = s->to_number<long long>(size_ec);
      if (size_ec) return fail(ErrorKind::Protocol, "descriptor size is not a whole number of bytes");
    }
    out.foreign = d.if_contains("urls") != nullptr &&
                  (out.media_type.find("foreign") != std::string::npos || out.media_type.find("nondistributable") != std::string::npos);
    return out;
  };
  const auto* manifests = o.if_contains("manifests");
  const bool index_type = info.media_type == media::oci_index || info.media_type == media::docker_list;
  if (index_type || (manifests && !o.if_contains("layers") && !o.if_contains("config"))) {
    info.is_index = true;
    if (!manifests || !manifests->is_array()) return fail(ErrorKind::Protocol, "index without a manifests array");
    for (const auto& m : manifests->as_array()) {
      auto d = descriptor(m);
      if (!d) return std::unexpected(d.error());
      info.children.push_back(*d);
    }
    return info;
  }
  if (info.media_type == "application/vnd.docker.distribution.manifest.v1+json" ||
      info.media_type == "application/vnd.docker.distribution.manifest.v1+prettyjws") {
    return fail(ErrorKind::Unsupported, "Docker schema 1 manifests are not supported");
  }
  if (const auto* cfg = o.if_contains("config")) {
    auto d = descriptor(*cfg);
    if (!d) return std::unexpected(d.error());
    info.children.push_back(*d);
  }
  // OCI artifact manifests (application/vnd.oci.artifact.manifest.v1+json) list "blobs".
  for (const char* key : {"layers", "blobs"}) {
    if (const auto* layers = o.if_contains(key)) {
      if (!layers->is_array()) return fail(ErrorKind::Protocol, std::string(key) + " is not an array");
      for (const auto& l : layers->as_array()) {
        auto d = descriptor(l);
        if (!d) return std::unexpected(d.error());
        info.children.push_back(*d);
      }
    }
  }
  if (info.media_type.empty()) return fail(ErrorKind::Unsupported, "manifest without a media type");
  return info;
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) throw std::runtime_error("EVP sha256 init failed");
}

void Sha256::update(std::span<const std::byte> data) { EVP_DigestUpdate(ctx_.get(), data.data(), data.size()); }
void Sha256::update(std::string_view data) { EVP_DigestUpdate(ctx_.get(), data.data(), data.size()); }

std::string Sha256::final_digest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_.get(), md, &len);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 0xf];
  }
  EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr);
  return out;
}

std::string Sha256::of(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.final_digest();
}

}  // namespace ferry::registry
