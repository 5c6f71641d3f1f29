#include "registry/oci_layout.hpp"

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "registry/client.hpp"
#include "registry/wire.hpp"

namespace ferry::registry {

namespace {

namespace fs = std::filesystem;

std::unexpected<Error> layout_error(const LayoutReference& src, ErrorKind kind, std::string why) {
  Error e;
  e.kind = kind;
  e.message = std::move(why);
  e.operation = "read OCI layout";
  e.registry = "oci:" + src.dir;
  e.at_source = true;
  return std::unexpected(std::move(e));
}

class LayoutPush {
 public:
  LayoutPush(const LayoutReference& src, RegistryClient& dst, const Reference& to, const CopyOptions& options,
             CopyStats& stats)
      : src_(src), dst_(dst), to_(to), options_(options), stats_(stats) {}

  Task<Result<CopyResult>> run() {
    auto top = find_top();
    if (!top) co_return std::unexpected(top.error());
    if (!to_.digest.empty() && to_.digest != top->digest) {
      co_return layout_error(src_, ErrorKind::DigestMismatch,
                             "the destination names " + to_.digest + " but the layout's image is " + top->digest);
    }
    auto pushed = co_await push_manifest(*top, to_.digest.empty() ? to_.tag : top->digest, 0);
    if (!pushed) co_return std::unexpected(pushed.error());
    co_return CopyResult{top->digest, to_.digest.empty()};
  }

 private:
  fs::path blob_path(const std::string& digest) const {
    const auto colon = digest.find(':');
    return fs::path(src_.dir) / "blobs" / digest.substr(0, colon) / digest.substr(colon + 1);
  }

  Result<std::string> read_blob(const Descriptor& d, std::size_t limit) const {
    if (!valid_digest(d.digest)) return layout_error(src_, ErrorKind::Unsupported, "unsupported digest " + d.digest);
    std::ifstream in(blob_path(d.digest), std::ios::binary);
    if (!in) return layout_error(src_, ErrorKind::NotFound, "blob " + d.digest + " is missing from blobs/");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.size() > limit) return layout_error(src_, ErrorKind::TooLarge, d.digest + " is over the manifest limit");
    if (Sha256::of(bytes) != d.digest) {
      return layout_error(src_, ErrorKind::DigestMismatch, "blobs/ file of " + d.digest + " does not match its digest");
    }
    return bytes;
  }

  // The manifest of index.json tagged src_.tag (org.opencontainers.image.ref.name), or its only one.
  Result<Descriptor> find_top() const {
    std::ifstream in(fs::path(src_.dir) / "index.json", std::ios::binary);
    if (!in) return layout_error(src_, ErrorKind::NotFound, "no index.json (is " + src_.dir + " an OCI image layout?)");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    boost::system::error_code ec;
    auto doc = boost::json::parse(text, ec);
    const auto* manifests = doc.is_object() ? doc.as_object().if_contains("manifests") : nullptr;
    if (ec || !manifests || !manifests->is_array()) {
      return layout_error(src_, ErrorKind::Protocol, "index.json is not an image index");
    }
    std::vector<std::pair<std::string, Descriptor>> found;
    for (const auto& m : manifests->as_array()) {
      if (!m.is_object()) continue;
      const auto& o = m.as_object();
      Descriptor d;
      if (const auto* v = o.if_contains("digest"); v && v->is_string()) d.digest = v->as_string();
      if (const auto* v = o.if_contains("mediaType"); v && v->is_string()) d.media_type = v->as_string();
      std::string name;
      if (const auto* a = o.if_contains("annotations"); a && a->is_object()) {
        if (const auto* n = a->as_object().if_contains("org.opencontainers.image.ref.name"); n && n->is_string())
          name = n->as_string();
      }
      found.emplace_back(name, d);
    }
    std::string names;
    for (const auto& [name, d] : found) {
      if (src_.tag.empty() ? found.size() == 1 : name == src_.tag) return d;
      names += (names.empty() ? "" : ", ") + (name.empty() ? d.digest : name);
    }
    return layout_error(src_, ErrorKind::NotFound,
                        (src_.tag.empty() ? std::string("more than one image and no :TAG given")
                                          : "no image tagged " + src_.tag) +
                            " in index.json (it has: " + (names.empty() ? "nothing" : names) + ")");
  }

  // Children first (blobs of an image, manifests of an index), then the manifest itself.
  Task<Result<void>> push_manifest(const Descriptor& d, const std::string& reference, int depth) {
    if (depth > 4) co_return layout_error(src_, ErrorKind::Protocol, "indexes nested too deep");
    auto bytes = read_blob(d, kMaxManifestBytes);
    if (!bytes) co_return std::unexpected(bytes.error());
    auto info = inspect_manifest(*bytes, d.media_type);
    if (!info) co_return std::unexpected(info.error());
    for (const auto& child : info->children) {
      if (child.foreign) continue;
      // Not `cond ? co_await a : co_await b`: GCC 12 destroys such a result twice.
      Result<void> r;
      if (info->is_index) {
        r = co_await push_manifest(child, child.digest, depth + 1);
      } else {
        r = co_await push_blob(child);
      }
      if (!r) co_return std::unexpected(r.error());
    }
    auto put = co_await dst_.put_manifest(to_.repository, reference, info->media_type, std::move(*bytes));
    if (!put) co_return std::unexpected(put.error());
    ++stats_.manifests_pushed;
    co_return Result<void>{};
  }

  Task<Result<void>> push_blob(const Descriptor& d) {
    if (!pushed_.insert(d.digest).second) co_return Result<void>{};
    auto have = co_await dst_.head_blob(to_.repository, d.digest);
    if (!have) co_return std::unexpected(have.error());
    if (*have) {
      ++stats_.blobs_skipped;
      co_return Result<void>{};
    }
    std::error_code ec;
    const auto size = fs::file_size(blob_path(d.digest), ec);
    if (ec || !valid_digest(d.digest)) {
      co_return layout_error(src_, ErrorKind::NotFound, "blob " + d.digest + " is missing from blobs/");
    }
    std::ifstream in(blob_path(d.digest), std::ios::binary);
    auto session = co_await dst_.start_upload(to_.repository);
    if (!session) co_return std::unexpected(session.error());
    auto stream = co_await dst_.open_put(to_.repository, *session, d.digest, size);
    if (!stream) co_return std::unexpected(stream.error());
    std::vector<char> buf(std::max<std::size_t>(options_.chunk_bytes, 64 * 1024));
    Sha256 hash;
    std::uint64_t sent = 0;
    while (sent < size) {
      in.read(buf.data(), static_cast<std::streamsize>(std::min<std::uint64_t>(buf.size(), size - sent)));
      const auto n = static_cast<std::size_t>(in.gcount());
      if (n == 0) co_return layout_error(src_, ErrorKind::Protocol, "blob " + d.digest + " ended early");
      const std::span<const std::byte> piece(reinterpret_cast<const std::byte*>(buf.data()), n);
      hash.update(piece);
      sent += n;
      // The digest is known only after the last byte: a mismatch is caught before the stream's
      // end, so the registry never commits it (and it would refuse it anyway).
      if (sent == size && hash.final_digest() != d.digest) {
        co_return layout_error(src_, ErrorKind::DigestMismatch, "blobs/ file of " + d.digest + " does not match its digest");
      }
      auto w = co_await stream->write(piece);
      if (!w) co_return std::unexpected(w.error());
      stats_.bytes_copied += n;
    }
    auto done = co_await dst_.finish_put(to_.repository, d.digest, std::move(*stream));
    if (!done) co_return std::unexpected(done.error());
    ++stats_.blobs_copied;
    if (options_.on_blob_committed) options_.on_blob_committed(size);
    co_return Result<void>{};
  }

  const LayoutReference& src_;
  RegistryClient& dst_;
  const Reference& to_;
  const CopyOptions& options_;
  CopyStats& stats_;
  std::set<std::string> pushed_;
};

}  // namespace

std::optional<LayoutReference> parse_layout_reference(std::string_view text) {
  constexpr std::string_view kPrefix = "oci:";
  if (!text.starts_with(kPrefix)) return std::nullopt;
  text.remove_prefix(kPrefix.size());
  LayoutReference out;
  // DIR:TAG, where a tag has no '/' (so "oci:./a:b/c" is the folder "./a:b/c").
  const auto colon = text.rfind(':');
  if (colon != std::string_view::npos && text.substr(colon + 1).find('/') == std::string_view::npos) {
    out.dir = std::string(text.substr(0, colon));
    out.tag = std::string(text.substr(colon + 1));
  } else {
    out.dir = std::string(text);
  }
  return out;
}

Result<CopyResult> push_layout(const LayoutReference& source, const Reference& destination,
                               const RegistryConfig& config, const CopyOptions& options, CopyStats& stats) {
  std::optional<LayoutPush> push;  // lives as long as the client, across the whole run
  return run_with_client(config, [&](RegistryClient& client) {
    push.emplace(source, client, destination, options, stats);
    return push->run();
  });
}

}  // namespace ferry::registry
