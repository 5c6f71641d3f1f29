// Copier implementation: manifest tree walk, blob dedupe, pipelined streaming with sha256.
#include "registry/copier.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <map>
#include <random>
#include <set>

#include "reconcilers/model/failpoint.hpp"
#include "registry/wire.hpp"

namespace ferry::registry {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// The error of a request to the source registry, or of the bytes it served (Error::at_source).
std::unexpected<Error> from_source(Error e) {
  e.at_source = true;
  return std::unexpected(std::move(e));
}

// Counting semaphore for coroutines sharing one thread.
class Gate {
 public:
  Gate(asio::any_io_executor ex, std::size_t n) : ex_(ex), free_(n == 0 ? 1 : n) {}
  Task<void> acquire() {
    if (free_ > 0) {
      --free_;
      co_return;
    }
    auto t = std::make_shared<asio::steady_timer>(ex_, asio::steady_timer::time_point::max());
    waiters_.push_back(t);
    co_await t->async_wait(use_tuple);  // woken by release(), which hands over its slot
  }
  void release() {
    if (!waiters_.empty()) {
      auto t = waiters_.front();
      waiters_.pop_front();
      t->cancel();
    } else {
      ++free_;
    }
  }

 private:
  asio::any_io_executor ex_;
  std::size_t free_;
  std::deque<std::shared_ptr<asio::steady_timer>> waiters_;
};

struct GateHold {
  Gate& gate;
  ~GateHold() { gate.release(); }
};

// One-shot event for coroutines sharing one thread.
class Event {
 public:
  explicit Event(asio::any_io_executor ex) : timer_(ex, asio::steady_timer::time_point::max()) {}
  Task<void> wait() {
    if (set_) co_return;
    co_await timer_.async_wait(use_tuple);
  }
  void notify() {
    set_ = true;
    timer_.cancel();
  }
  bool is_set() const { return set_; }

 private:
  asio::steady_timer timer_;
  bool set_ = false;
};

// Child manifests of an index read or written at once.
constexpr std::size_t kManifestsAtOnce = 8;

template <class T>
struct Joined {
  Joined(asio::any_io_executor ex, std::vector<std::function<Task<T>()>> t)
      : ex(ex), tasks(std::move(t)), results(tasks.size()), left(tasks.size()), done(ex) {}
  asio::any_io_executor ex;
  std::vector<std::function<Task<T>()>> tasks;  // each lives until every task has finished
  std::vector<std::optional<T>> results;
  std::size_t next = 0, left;
  std::exception_ptr error;
  Event done;
};

// Spawns the next task not started; when it finishes, the one after.
template <class T>
void spawn_next(std::shared_ptr<Joined<T>> sh) {
  const std::size_t i = sh->next++;
  asio::co_spawn(sh->ex, sh->tasks[i](), [sh, i](std::exception_ptr e, T r) {
    if (e && !sh->error) sh->error = e;
    if (!e) sh->results[i].emplace(std::move(r));
    if (sh->next < sh->tasks.size()) spawn_next(sh);
    if (--sh->left == 0) sh->done.notify();
  });
}

// Runs the tasks, at most `at_once` at a time (0: all at once), and waits for all of them;
// results in order.
template <class T>
Task<std::vector<T>> join_all(asio::any_io_executor ex, std::vector<std::function<Task<T>()>> tasks,
                              std::size_t at_once = 0) {
  if (tasks.empty()) co_return std::vector<T>{};
  auto sh = std::make_shared<Joined<T>>(ex, std::move(tasks));
  const std::size_t n = sh->tasks.size();
  for (std::size_t k = 0, start = at_once == 0 ? n : std::min(at_once, n); k < start; ++k) spawn_next(sh);
  co_await sh->done.wait();
  if (sh->error) std::rethrow_exception(sh->error);
  std::vector<T> out;
  out.reserve(n);
  for (auto& r : sh->results) out.push_back(std::move(*r));
  co_return out;
}

// Writes a blob's bytes into an upload session: one streaming PUT ?digest= (monolithic), or
// PATCH requests of at most `patch` bytes followed by commit().
class UploadWriter {
 public:
  UploadWriter(RegistryClient& dst, std::string repo, UploadSession session, std::string digest, std::uint64_t total,
               bool monolithic, std::uint64_t patch)
      : dst_(dst), repo_(std::move(repo)), session_(std::move(session)), digest_(std::move(digest)), total_(total),
        monolithic_(monolithic), patch_(monolithic || patch == 0 ? total : patch) {}

  Task<Result<void>> write(std::span<const std::byte> data) {
    while (!data.empty()) {
      if (!current_) {
        auto opened = co_await open_next();
        if (!opened) co_return opened;
      }
      const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(left_, data.size()));
      if (k == 0) co_return fail(ErrorKind::Protocol, "blob longer than its declared size");
      auto w = co_await current_->write(data.first(k));
      if (!w) co_return std::unexpected(w.error());
      data = data.subspan(k);
      left_ -= k;
      offset_ += k;
      if (left_ == 0 && !monolithic_) {
        auto next = co_await dst_.finish_patch(repo_, std::move(*current_));
        current_.reset();
        if (!next) co_return std::unexpected(next.error());
        session_ = *next;
      }
    }
    co_return Result<void>{};
  }

  // After every byte was written (and verified): commit the blob.
  Task<Result<void>> commit() {
    FERRY_FAILPOINT("blob.commit.before");
    if (monolithic_) {
      if (!current_) {  // an empty blob
        auto opened = co_await open_next();
        if (!opened) co_return opened;
      }
      auto stream = std::move(*current_);
      current_.reset();
      co_return co_await dst_.finish_put(repo_, digest_, std::move(stream));
    }
    co_return co_await dst_.complete_upload(repo_, session_, digest_);
  }

 private:
  Task<Result<void>> open_next() {
    const std::uint64_t len = std::min(patch_, total_ - offset_);
    // (No co_await inside ?: — GCC 12 miscompiles it.)
    Result<RequestStream> s = fail(ErrorKind::Protocol, "upload not opened");
    if (monolithic_) {
      s = co_await dst_.open_put(repo_, session_, digest_, total_);
    } else {
      s = co_await dst_.open_patch(repo_, session_, offset_, len);
    }
    if (!s) co_return std::unexpected(s.error());
    current_.emplace(std::move(*s));
    left_ = monolithic_ ? total_ : len;
    co_return Result<void>{};
  }

  RegistryClient& dst_;
  std::string repo_;
  UploadSession session_;
  std::string digest_;
  std::uint64_t total_;
  bool monolithic_;
  std::uint64_t patch_;
  std::uint64_t offset_ = 0;
  std::uint64_t left_ = 0;
  std::optional<RequestStream> current_;
};

struct BlobState {
  explicit BlobState(asio::any_io_executor ex) : done(ex) {}
  Event done;
  std::optional<Error> error;
  std::string repository;  // a repository at the destination that has the blob
};

struct Node {
  Manifest manifest;
  ManifestInfo info;
};

}  // namespace

struct Copier::Impl {
  asio::any_io_executor ex;
  ConfigResolver resolver;
  CopyOptions options;
  CopyStats stats;
  Gate blob_gate;
  Gate image_gate;
  std::map<std::pair<int, std::string>, std::shared_ptr<RegistryClient>> clients;
  std::map<std::string, std::shared_ptr<BlobState>> blobs;       // key: destination host + digest
  std::map<std::string, std::shared_ptr<BlobState>> repo_blobs;  // key: host + repository + digest
  std::mt19937_64 rng{std::random_device{}()};

  Impl(asio::any_io_executor e, ConfigResolver r, CopyOptions o)
      : ex(e), resolver(std::move(r)), options(o), blob_gate(e, o.max_parallel_blobs),
        image_gate(e, o.max_parallel_images) {}

  std::shared_ptr<RegistryClient> client(const std::string& host, Side side) {
    auto key = std::make_pair(static_cast<int>(side), host);
    auto it = clients.find(key);
    if (it == clients.end()) {
      it = clients.emplace(key, std::make_shared<RegistryClient>(ex, resolver(host, side))).first;
    }
    return it->second;
  }

  // What earlier copies placed is forgotten: a repository may have been deleted at a destination
  // meanwhile, and a long-lived copier's maps must not grow for ever. Blobs still being placed
  // stay, so that the images waiting for them keep waiting.
  void forget_placed() {
    std::erase_if(blobs, [](const auto& kv) { return kv.second->done.is_set(); });
    std::erase_if(repo_blobs, [](const auto& kv) { return kv.second->done.is_set(); });
  }

  // Copies (and copy_all runs) under way; the last one to end forgets what was placed, and so
  // does any copy that ends with more than remember_placed in mind. Counted around the awaited
  // work, not by a guard in the frame: a frame destroyed unfinished (its io_context gone) must
  // not touch a copier that may be gone too.
  std::size_t active = 0;
  void begin() { ++active; }
  void end() {
    if (--active == 0 || blobs.size() + repo_blobs.size() > options.remember_placed) forget_placed();
  }

  void set_resolver(ConfigResolver r) {
    resolver = std::move(r);
    forget_placed();
    for (auto it = clients.begin(); it != clients.end();) {
      const auto next = resolver(it->first.second, static_cast<Side>(it->first.first));
      if (RegistryClient::same_connection(it->second->config(), next)) {
        it->second->retune(next);
        ++it;
      } else {
        it = clients.erase(it);
      }
    }
  }

  static bool same_registry(const RegistryClient& a, const RegistryClient& b) {
    return a.host() == b.host() && a.config().plain_http == b.config().plain_http;
  }

  // GET src, PATCH dst, verify sha256 and size, PUT ?digest=. Nothing is committed on mismatch.
  // `streamed` counts the bytes this attempt added to stats.bytes_copied.
  Task<Result<void>> stream_blob(RegistryClient& src, std::string src_repo, RegistryClient& dst, std::string dst_repo,
                                 Descriptor desc, std::optional<UploadSession> session, std::uint64_t& streamed,
                                 Lane lane) {
    auto where = [&](ErrorKind k, std::string msg) {
      return std::unexpected(Error{.kind = k, .message = std::move(msg), .operation = "copy blob",
                                   .registry = src.host(), .repository = src_repo, .digest = desc.digest,
                                   .at_source = true});
    };
    // Open the source stream and the upload session concurrently: one round trip less.
    Result<ResponseStream> get = fail(ErrorKind::Protocol, "not opened");
    if (!session) {
      auto [g, s] = co_await (src.get_blob(src_repo, desc.digest) && dst.start_upload(dst_repo));
      if (!s) co_return std::unexpected(s.error());
      session = *s;
      get = std::move(g);
    } else {
      get = co_await src.get_blob(src_repo, desc.digest);
    }
    if (!get) co_return from_source(get.error());
    const auto cl = get->content_length();
    if (desc.size < 0 && !cl) co_return where(ErrorKind::Protocol, "blob size unknown (no descriptor size, no Content-Length)");
    const std::uint64_t size = desc.size >= 0 ? static_cast<std::uint64_t>(desc.size) : *cl;
    if (cl && *cl != size) {
      co_return where(ErrorKind::DigestMismatch, "source serves " + std::to_string(*cl) + " bytes, descriptor says " +
                                                     std::to_string(size));
    }
    UploadWriter writer(dst, dst_repo, *session, desc.digest, size, options.stream_in_put, options.patch_bytes);
    // S21: bytes read from the source and written to the destination count against both
    // registries' limits; a limited registry gets pieces of about 1/8 s of its rate.
    Limiter* limits[] = {src.config().limiter.get(), dst.config().limiter.get()};
    std::size_t piece = options.chunk_bytes;
    for (auto* l : limits)
      if (l) piece = l->piece(piece);
    std::vector<std::byte> a(piece), b(piece);
    Sha256 hash;
    std::uint64_t seen = 0;
    auto first = co_await get->read(a);
    if (!first) co_return from_source(first.error());
    std::size_t n = *first;
    while (n > 0) {
      seen += n;
      if (seen > size) co_return where(ErrorKind::DigestMismatch, "source serves more bytes than the descriptor size");
      const std::span<const std::byte> chunk(a.data(), n);
      hash.update(chunk);
      if (seen == size) {
        // The last chunk is checked before it is sent: a mismatching blob never completes
        // its upload, whatever the destination registry would have verified.
        if (const auto got = hash.final_digest(); got != desc.digest) {
          co_return where(ErrorKind::DigestMismatch, "source bytes hash to " + got + "; upload abandoned");
        }
      }
      for (auto* l : limits)
        if (l) co_await l->bytes(n, lane);
      // Write this chunk while the next one is read.
      auto [w, r] = co_await (writer.write(chunk) && get->read(b));
      if (!w) co_return std::unexpected(w.error());
      if (!r) co_return from_source(r.error());
      stats.bytes_copied += n;
      streamed += n;
      std::swap(a, b);
      n = *r;
    }
    if (seen != size) {
      co_return where(ErrorKind::Network, "source ended the blob after " + std::to_string(seen) + " of " +
                                              std::to_string(size) + " bytes");
    }
    if (size == 0 && Sha256::of("") != desc.digest) {
      co_return where(ErrorKind::DigestMismatch, "empty blob does not match its digest");
    }
    co_return co_await writer.commit();
  }

  // HEAD-skip, same-registry mount, else stream with bounded retries.
  Task<Result<void>> transfer_blob(RegistryClient& src, std::string src_repo, RegistryClient& dst, std::string dst_repo,
                                   Descriptor desc, std::optional<UploadSession> session, Lane lane) {
    co_await blob_gate.acquire();
    GateHold hold{blob_gate};
    if (!session) {
      auto head = co_await dst.head_blob(dst_repo, desc.digest);
      if (!head) co_return std::unexpected(head.error());
      if (*head) {
        ++stats.blobs_skipped;
        co_return Result<void>{};
      }
      if (same_registry(src, dst) && src_repo != dst_repo) {
        auto m = co_await dst.mount_blob(dst_repo, desc.digest, src_repo);
        if (!m) co_return std::unexpected(m.error());
        if (m->mounted) {
          ++stats.blobs_mounted;
          co_return Result<void>{};
        }
        session = m->session;
      }
    }
    std::uniform_real_distribution<double> jitter(0.0, 1.0);
    std::chrono::milliseconds waited{0};
    for (int attempt = 1;; ++attempt) {
      std::uint64_t streamed = 0;
      auto r = co_await stream_blob(src, src_repo, dst, dst_repo, desc, session, streamed, lane);
      if (r) {
        FERRY_FAILPOINT("blob.commit.after");
        ++stats.blobs_copied;
        if (options.on_blob_committed) options.on_blob_committed(streamed);
        co_return r;
      }
      stats.bytes_copied -= streamed;  // counted again by the next attempt
      session.reset();  // a failed session may be unusable; start a fresh one
      if (!r.error().retryable() || attempt >= options.retry.max_attempts || waited >= options.retry.max_total) {
        co_return r;
      }
      const auto d = retry_delay(options.retry, attempt, jitter(rng));
      spdlog::debug("retrying blob digest={} attempt={} delay_ms={} cause=\"{}\"", desc.digest, attempt, d.count(),
                    r.error().to_string());
      asio::steady_timer t(ex, d);
      co_await t.async_wait(use_tuple);
      waited += d;
    }
  }

  // One upload per (destination registry, digest) in this run; other repositories of that
  // registry mount it from the first, and later images of the same repository wait and skip.
  Task<Result<void>> ensure_blob(RegistryClient* src, std::string src_repo, RegistryClient* dst, std::string dst_repo,
                                 Descriptor desc, Lane lane) {
    const std::string repo_key = dst->host() + " " + dst_repo + " " + desc.digest;
    if (auto it = repo_blobs.find(repo_key); it != repo_blobs.end()) {
      auto state = it->second;
      co_await state->done.wait();
      if (!state->error) {
        ++stats.blobs_skipped;
        co_return Result<void>{};
      }
      co_return co_await transfer_blob(*src, src_repo, *dst, dst_repo, desc, std::nullopt, lane);
    }
    auto state = std::make_shared<BlobState>(ex);
    repo_blobs.emplace(repo_key, state);
    auto r = co_await place_blob(src, src_repo, dst, dst_repo, desc, lane);
    if (!r) {
      state->error = r.error();
      repo_blobs.erase(repo_key);  // a later image may try again
    }
    state->done.notify();
    co_return r;
  }

  Task<Result<void>> place_blob(RegistryClient* src, std::string src_repo, RegistryClient* dst, std::string dst_repo,
                                Descriptor desc, Lane lane) {
    const std::string key = dst->host() + " " + desc.digest;
    auto it = blobs.find(key);
    if (it == blobs.end()) {
      auto state = std::make_shared<BlobState>(ex);
      blobs.emplace(key, state);
      auto r = co_await transfer_blob(*src, src_repo, *dst, dst_repo, desc, std::nullopt, lane);
      if (r) {
        state->repository = dst_repo;
      } else {
        state->error = r.error();
        blobs.erase(key);
      }
      state->done.notify();
      co_return r;
    }
    auto state = it->second;
    co_await state->done.wait();
    std::optional<UploadSession> session;
    if (!state->error) {
      auto m = co_await dst->mount_blob(dst_repo, desc.digest, state->repository);
      if (m && m->mounted) {
        ++stats.blobs_mounted;
        co_return Result<void>{};
      }
      if (m) session = m->session;
    }
    co_return co_await transfer_blob(*src, src_repo, *dst, dst_repo, desc, session, lane);
  }

  Task<Result<CopyResult>> copy(Reference source, Reference destination,
                                std::function<void()> manifest_written = {}, Lane lane = Lane::Push) {
    begin();
    auto r = co_await copy_one(std::move(source), std::move(destination), std::move(manifest_written), lane);
    end();
    co_return r;
  }

  // One child manifest of an index, by digest.
  Task<Result<void>> put_child(RegistryClient* dst, std::string repo, const Manifest* m,
                               const std::function<void()>* written) {
    auto p = co_await dst->put_manifest(std::move(repo), m->digest, m->media_type, m->bytes);
    if (!p) co_return std::unexpected(p.error());
    FERRY_FAILPOINT("manifest.child.after");
    ++stats.manifests_pushed;
    (*written)();
    co_return Result<void>{};
  }

  Task<Result<CopyResult>> copy_one(Reference source, Reference destination,
                                    std::function<void()> manifest_written, Lane lane) {
    const std::function<void()> written = [&] {
      if (!manifest_written) return;
      auto f = std::move(manifest_written);
      manifest_written = nullptr;
      f();
    };
    for (const auto* r : {&source, &destination}) {
      if (!valid_repository_name(r->repository)) {
        co_return fail(ErrorKind::InvalidReference, "repository name '" + r->repository + "' is outside the OCI grammar");
      }
      if (!r->digest.empty() && !valid_digest(r->digest)) co_return fail(ErrorKind::InvalidReference, "invalid digest '" + r->digest + "'");
      if (!r->tag.empty() && !valid_tag(r->tag)) co_return fail(ErrorKind::InvalidReference, "invalid tag '" + r->tag + "'");
      if (r->tag.empty() && r->digest.empty()) co_return fail(ErrorKind::InvalidReference, "reference without tag or digest");
    }
    const auto src_client = client(source.registry, Side::Source);
    const auto dst_client = client(destination.registry, Side::Destination);
    auto& src = *src_client;
    auto& dst = *dst_client;

    // Phase 1: read and verify the whole manifest tree before writing anything.
    auto top = co_await src.get_manifest(source.repository, source.identifier());
    if (!top) co_return from_source(top.error());
    if (!destination.digest.empty() && destination.digest != top->digest) {
      co_return fail(ErrorKind::DigestMismatch, "destination digest " + destination.digest + " differs from source " + top->digest);
    }
    auto top_info = inspect_manifest(top->bytes, top->media_type);
    if (!top_info) {
      auto e = top_info.error();
      e.registry = src.host();
      e.repository = source.repository;
      e.digest = top->digest;
      co_return from_source(std::move(e));
    }
    // Level by level: the child manifests of every index of one level are read at once.
    std::vector<std::vector<Node>> levels;  // below the top, by depth; pushed deepest level first
    std::vector<Descriptor> blob_list;
    std::set<std::string> seen;
    std::vector<ManifestInfo> frontier{*top_info};
    for (int depth = 0; !frontier.empty(); ++depth) {
      std::vector<Descriptor> wanted;  // the child manifests one level down
      for (const auto& info : frontier) {
        for (const auto& d : info.children) {
          if (!seen.insert(d.digest).second) continue;
          if (!info.is_index) {
            if (!d.foreign) blob_list.push_back(d);
          } else {
            wanted.push_back(d);
          }
        }
      }
      if (wanted.empty()) break;
      if (depth >= 4) co_return fail(ErrorKind::Unsupported, "index nesting deeper than 4 levels");
      std::vector<std::function<Task<Result<Manifest>>()>> gets;
      for (const auto& d : wanted) {
        gets.push_back([s = &src, repo = source.repository, digest = d.digest] { return s->get_manifest(repo, digest); });
      }
      auto got = co_await join_all<Result<Manifest>>(ex, std::move(gets), kManifestsAtOnce);
      std::vector<Node> level;
      frontier.clear();
      for (std::size_t i = 0; i < got.size(); ++i) {
        if (!got[i]) co_return from_source(got[i].error());
        auto ci = inspect_manifest(got[i]->bytes, got[i]->media_type);
        if (!ci) {
          auto e = ci.error();
          e.registry = src.host();
          e.repository = source.repository;
          e.digest = wanted[i].digest;
          co_return from_source(std::move(e));
        }
        frontier.push_back(*ci);
        level.push_back(Node{std::move(*got[i]), std::move(*ci)});
      }
      levels.push_back(std::move(level));
    }

    // Phase 2: every blob, in parallel.
    std::vector<std::function<Task<Result<void>>()>> tasks;
    for (const auto& d : blob_list) {
      tasks.push_back([this, s = &src, sr = source.repository, t = &dst, dr = destination.repository, d, lane] {
        return ensure_blob(s, sr, t, dr, d, lane);
      });
    }
    auto results = co_await join_all<Result<void>>(ex, std::move(tasks));
    for (auto& r : results)
      if (!r) co_return std::unexpected(r.error());

    // Phase 3: child manifests by digest, the deepest level first and each level's at once (an
    // index is written after every manifest it lists), then the top manifest; the tag last.
    for (auto level = levels.rbegin(); level != levels.rend(); ++level) {
      std::vector<std::function<Task<Result<void>>()>> puts;
      for (const auto& node : *level) {
        puts.push_back([this, t = &dst, repo = destination.repository, m = &node.manifest, w = &written] {
          return put_child(t, repo, m, w);
        });
      }
      auto put = co_await join_all<Result<void>>(ex, std::move(puts), kManifestsAtOnce);
      for (auto& r : put)
        if (!r) co_return std::unexpected(r.error());
    }
    CopyResult result{.digest = top->digest, .tagged = false};
    const bool by_tag = !destination.tag.empty() && !options.digest_only;
    FERRY_FAILPOINT("manifest.top.before");
    auto p = co_await dst.put_manifest(destination.repository, by_tag ? destination.tag : top->digest, top->media_type,
                                       top->bytes);
    if (!p) co_return std::unexpected(p.error());
    FERRY_FAILPOINT("manifest.top.after");
    ++stats.manifests_pushed;
    written();
    result.tagged = by_tag;
    spdlog::debug("copied src={} dst={} digest={}", source.to_string(), destination.to_string(), result.digest);
    co_return result;
  }

  Task<Result<CopyResult>> copy_gated(Reference source, Reference destination) {
    co_await image_gate.acquire();
    GateHold hold{image_gate};
    co_return co_await copy(std::move(source), std::move(destination));
  }
};

Copier::Copier(asio::any_io_executor ex, ConfigResolver resolver, CopyOptions options)
    : impl_(std::make_unique<Impl>(ex, std::move(resolver), options)) {}
Copier::~Copier() = default;

const CopyStats& Copier::stats() const { return impl_->stats; }
std::shared_ptr<RegistryClient> Copier::client(const std::string& host, Side side) { return impl_->client(host, side); }
void Copier::set_resolver(ConfigResolver resolver) { impl_->set_resolver(std::move(resolver)); }

Task<Result<CopyResult>> Copier::copy(Reference source, Reference destination,
                                      std::function<void()> manifest_written, Lane lane) {
  return impl_->copy(std::move(source), std::move(destination), std::move(manifest_written), lane);
}

Task<std::vector<Result<CopyResult>>> Copier::copy_all(std::vector<CopyJob> jobs) {
  impl_->begin();  // the whole run shares what its images placed
  std::vector<std::function<Task<Result<CopyResult>>()>> tasks;
  for (auto& j : jobs) {
    tasks.push_back([im = impl_.get(), j] { return im->copy_gated(j.source, j.destination); });
  }
  auto results = co_await join_all<Result<CopyResult>>(impl_->ex, std::move(tasks));
  impl_->end();
  co_return results;
}

namespace {

Task<void> tick(const Copier& copier, asio::steady_timer& ticker, const bool& finished,
                const std::function<void(const CopyStats&)>& progress, std::chrono::milliseconds interval) {
  while (!finished) {
    ticker.expires_after(interval);
    co_await ticker.async_wait(use_tuple);
    if (!finished) progress(copier.stats());
  }
  progress(copier.stats());  // the final numbers, once
}

}  // namespace

std::vector<Result<CopyResult>> run_copies(std::vector<CopyJob> jobs, ConfigResolver resolver, CopyOptions options,
                                           const std::function<void(const CopyStats&)>& progress,
                                           std::chrono::milliseconds progress_interval) {
  asio::io_context ioc;
  Copier copier(ioc.get_executor(), std::move(resolver), options);
  std::vector<Result<CopyResult>> out;
  std::exception_ptr error;
  bool finished = false;
  asio::steady_timer ticker(ioc);
  asio::co_spawn(ioc, copier.copy_all(std::move(jobs)),
                 [&](std::exception_ptr e, std::vector<Result<CopyResult>> r) {
                   error = e;
                   out = std::move(r);
                   finished = true;
                   ticker.cancel();
                 });
  if (progress) asio::co_spawn(ioc, tick(copier, ticker, finished, progress, progress_interval), asio::detached);
  ioc.run();
  if (error) std::rethrow_exception(error);
  return out;
}

Result<std::vector<std::string>> list_tags(const RegistryConfig& config, const std::string& repository) {
  return run_with_client(config, [&](RegistryClient& client) { return client.tags(repository); });
}

}  // namespace ferry::registry
