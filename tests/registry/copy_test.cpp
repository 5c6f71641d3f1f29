// The registry client and copier against real docker-registry processes, checked with skopeo:
// plain HTTP, Basic auth, TLS, bearer tokens, image kinds, dedupe, and faults through a proxy.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "registry/auth.hpp"
#include "registry/copier.hpp"
#include "registry/wire.hpp"
#include "tests/support/registry_harness.hpp"

namespace ferry::registry {
namespace {

namespace asio = boost::asio;
using ferry::testing::build_and_push;
using ferry::testing::FaultProxy;
using ferry::testing::Registry;
using ferry::testing::RegistryOptions;
using ferry::testing::skopeo_raw;

// Runs one client coroutine to completion on a private io_context.
template <class T, class F>
T run_client(const RegistryConfig& cfg, F f) {
  asio::io_context ioc;
  RegistryClient client(ioc.get_executor(), cfg);
  std::optional<T> out;
  asio::co_spawn(ioc, f(client), [&](std::exception_ptr e, T r) {
    if (e) std::rethrow_exception(e);
    out.emplace(std::move(r));
  });
  ioc.run();
  return std::move(*out);
}

RegistryConfig plain(const std::string& host) {
  RegistryConfig c;
  c.host = host;
  c.plain_http = true;
  c.retry.base_delay = std::chrono::milliseconds(20);
  return c;
}

ConfigResolver both(RegistryConfig src, RegistryConfig dst) {
  return [src, dst](const std::string& host, Side side) {
    auto c = side == Side::Source ? src : dst;
    c.host = host;
    return c;
  };
}

Reference image_ref(const std::string& text) {
  auto r = parse_reference(text);
  if (!r) throw std::runtime_error(r.error().to_string());
  return *r;
}

Result<CopyResult> copy_one(const std::string& src, const std::string& dst, ConfigResolver resolver,
                            CopyOptions options = {}, CopyStats* stats = nullptr) {
  CopyStats last;
  auto r = run_copies({{image_ref(src), image_ref(dst)}}, std::move(resolver), options,
                      [&](const CopyStats& s) { last = s; });
  if (stats) *stats = last;
  return std::move(r.at(0));
}

// Same manifest bytes at source and destination, read by skopeo, not by Ferry.
void expect_same_raw(const std::string& src, const std::string& dst, const std::string& src_flags = "--tls-verify=false",
                     const std::string& dst_flags = "--tls-verify=false") {
  auto a = skopeo_raw(src, src_flags);
  auto b = skopeo_raw(dst, dst_flags);
  ASSERT_TRUE(a) << src;
  ASSERT_TRUE(b) << dst;
  EXPECT_EQ(*a, *b);
}

class PlainRegistries : public ::testing::Test {
 protected:
  Registry src_;
  Registry dst_;
  ConfigResolver resolver_ = both(plain(""), plain(""));
};

TEST_F(PlainRegistries, CopiesSingleImageAndSkipsOrMountsOnRepeat) {
  build_and_push("image", {"--layers", "3", "--layer-bytes", "200000"}, src_.host() + "/prod/app:v1");
  CopyStats st;
  auto r = copy_one(src_.host() + "/prod/app:v1", dst_.host() + "/prod/app:v1", resolver_, {}, &st);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(r->tagged);
  EXPECT_EQ(st.blobs_copied, 4u);
  EXPECT_EQ(st.manifests_pushed, 1u);
  expect_same_raw(src_.host() + "/prod/app:v1", dst_.host() + "/prod/app:v1");
  expect_same_raw(src_.host() + "/prod/app:v1", dst_.host() + "/prod/app@" + r->digest);

  auto again = copy_one(src_.host() + "/prod/app:v1", dst_.host() + "/prod/app:v1", resolver_, {}, &st);
  ASSERT_TRUE(again);
  EXPECT_EQ(st.blobs_copied, 0u);
  EXPECT_EQ(st.blobs_skipped, 4u);

  // Same registry, other repository: blobs are mounted, not streamed.
  auto mounted = copy_one(src_.host() + "/prod/app:v1", src_.host() + "/mirror/app:v1", resolver_, {}, &st);
  ASSERT_TRUE(mounted) << mounted.error().to_string();
  EXPECT_EQ(st.blobs_mounted, 4u);
  EXPECT_EQ(st.bytes_copied, 0u);
  expect_same_raw(src_.host() + "/prod/app:v1", src_.host() + "/mirror/app:v1");
}

TEST_F(PlainRegistries, CopiesByDigestAndDigestOnly) {
  build_and_push("image", {"--seed", "bydigest"}, src_.host() + "/a/b:t1");
  auto digest = run_client<Result<Manifest>>(plain(src_.host()), [](RegistryClient& c) { return c.get_manifest("a/b", "t1"); });
  ASSERT_TRUE(digest);
  CopyOptions opts;
  opts.digest_only = true;
  auto r = copy_one(src_.host() + "/a/b@" + digest->digest, dst_.host() + "/a/b:t1", resolver_, opts);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_FALSE(r->tagged);
  EXPECT_EQ(r->digest, digest->digest);
  EXPECT_FALSE(skopeo_raw(dst_.host() + "/a/b:t1")) << "digest-only copy must not write the tag";
  expect_same_raw(src_.host() + "/a/b:t1", dst_.host() + "/a/b@" + digest->digest);
}

TEST_F(PlainRegistries, CopiesLargeLayerInChunkedPatches) {
  build_and_push("image", {"--layer-bytes", std::to_string(48 << 20), "--seed", "large"}, src_.host() + "/big/one:v1");
  CopyOptions opts;
  opts.stream_in_put = false;
  opts.patch_bytes = 5 << 20;  // ten PATCH requests per blob
  opts.chunk_bytes = 256 << 10;
  CopyStats st;
  auto r = copy_one(src_.host() + "/big/one:v1", dst_.host() + "/big/one:v1", resolver_, opts, &st);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_GE(st.bytes_copied, 48u << 20);
  expect_same_raw(src_.host() + "/big/one:v1", dst_.host() + "/big/one:v1");
}

TEST_F(PlainRegistries, CopiesManyLayers) {
  build_and_push("image", {"--layers", "40", "--layer-bytes", "3000", "--seed", "many"}, src_.host() + "/many/layers:v1");
  CopyStats st;
  auto r = copy_one(src_.host() + "/many/layers:v1", dst_.host() + "/many/layers:v1", resolver_, {}, &st);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(st.blobs_copied, 41u);
  expect_same_raw(src_.host() + "/many/layers:v1", dst_.host() + "/many/layers:v1");
}

TEST_F(PlainRegistries, CopiesFourPlatformIndexWithEveryChild) {
  build_and_push("index", {"--layer-bytes", "50000"}, src_.host() + "/multi/arch:v1");
  CopyStats st;
  auto r = copy_one(src_.host() + "/multi/arch:v1", dst_.host() + "/multi/arch:v1", resolver_, {}, &st);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(st.manifests_pushed, 5u);
  EXPECT_EQ(st.blobs_copied, 8u);
  expect_same_raw(src_.host() + "/multi/arch:v1", dst_.host() + "/multi/arch:v1");
  auto info = inspect_manifest(*skopeo_raw(src_.host() + "/multi/arch:v1"), "");
  ASSERT_TRUE(info);
  ASSERT_EQ(info->children.size(), 4u);
  for (const auto& child : info->children) {
    expect_same_raw(src_.host() + "/multi/arch@" + child.digest, dst_.host() + "/multi/arch@" + child.digest);
  }
}

TEST_F(PlainRegistries, CopiesArtifactWithSubject) {
  build_and_push("image", {"--seed", "subject"}, src_.host() + "/signed/app:v1");
  auto subject = run_client<Result<Manifest>>(plain(src_.host()), [](RegistryClient& c) { return c.get_manifest("signed/app", "v1"); });
  ASSERT_TRUE(subject);
  const std::string fallback_tag = "sha256-" + subject->digest.substr(7);
  build_and_push("artifact", {"--subject", subject->digest, "--subject-size", std::to_string(subject->bytes.size())},
                 src_.host() + "/signed/app:" + fallback_tag);
  auto r = copy_one(src_.host() + "/signed/app:" + fallback_tag, dst_.host() + "/signed/app:" + fallback_tag, resolver_);
  ASSERT_TRUE(r) << r.error().to_string();
  const auto raw = skopeo_raw(dst_.host() + "/signed/app:" + fallback_tag);
  ASSERT_TRUE(raw);
  EXPECT_NE(raw->find("\"subject\""), std::string::npos);
  expect_same_raw(src_.host() + "/signed/app:" + fallback_tag, dst_.host() + "/signed/app:" + fallback_tag);
}

TEST_F(PlainRegistries, FleetSharesOneUploadPerBlob) {
  // 6 images in 3 repositories sharing a base layer: the base is uploaded once.
  std::vector<CopyJob> jobs;
  for (int i = 0; i < 6; ++i) {
    const std::string name = "/team" + std::to_string(i % 3) + "/svc:v" + std::to_string(i);
    build_and_push("image", {"--base-bytes", "300000", "--seed", "fleet" + std::to_string(i), "--layer-bytes", "2000"},
                   src_.host() + name);
    jobs.push_back({image_ref(src_.host() + name), image_ref(dst_.host() + name)});
  }
  CopyStats st;
  auto results = run_copies(jobs, resolver_, {}, [&](const CopyStats& s) { st = s; });
  for (auto& r : results) ASSERT_TRUE(r) << r.error().to_string();
  // Per image: unique layer + config; the base once, mounted into the 2 other repositories.
  EXPECT_EQ(st.blobs_copied, 6u * 2u + 1u);
  EXPECT_EQ(st.blobs_mounted, 2u);
  for (auto& j : jobs) expect_same_raw(j.source.to_string(), j.destination.to_string());
}

TEST_F(PlainRegistries, ListsCatalogAndTagsWithPagination) {
  for (const char* repo : {"/p/a:1", "/p/b:1", "/p/c:1", "/p/c:2", "/p/c:3"}) {
    build_and_push("image", {"--seed", "list"}, src_.host() + repo);
  }
  auto cat = run_client<Result<std::vector<std::string>>>(plain(src_.host()), [](RegistryClient& c) { return c.catalog(2); });
  ASSERT_TRUE(cat) << cat.error().to_string();
  EXPECT_EQ(*cat, (std::vector<std::string>{"p/a", "p/b", "p/c"}));
  auto tags = run_client<Result<std::vector<std::string>>>(plain(src_.host()), [](RegistryClient& c) { return c.tags("p/c", 1); });
  ASSERT_TRUE(tags) << tags.error().to_string();
  std::sort(tags->begin(), tags->end());  // the order is the registry's
  EXPECT_EQ(*tags, (std::vector<std::string>{"1", "2", "3"}));
  auto missing = run_client<Result<std::optional<ManifestHead>>>(plain(src_.host()), [](RegistryClient& c) {
    return c.head_manifest("p/a", "nope");
  });
  ASSERT_TRUE(missing);
  EXPECT_FALSE(*missing);
  auto ping = run_client<Result<void>>(plain(src_.host()), [](RegistryClient& c) { return c.ping(); });
  EXPECT_TRUE(ping);
}

TEST(Copy, InvalidRepositoryRefusedBeforeAnyRequest) {
  // Nothing listens on this port: a request would fail with a network error, not InvalidReference.
  const auto host = "127.0.0.1:" + std::to_string(ferry::testing::free_port());
  Reference bad{.registry = host, .repository = "../etc/passwd", .tag = "v1", .digest = {}};
  auto r = run_copies({{image_ref(host + "/ok:v1"), bad}}, both(plain(""), plain("")), {});
  ASSERT_FALSE(r.at(0));
  EXPECT_EQ(r.at(0).error().kind, ErrorKind::InvalidReference);
  Reference upper{.registry = host, .repository = "Bad/Name", .tag = "v1", .digest = {}};
  r = run_copies({{upper, image_ref(host + "/ok:v1")}}, both(plain(""), plain("")), {});
  ASSERT_FALSE(r.at(0));
  EXPECT_EQ(r.at(0).error().kind, ErrorKind::InvalidReference);
}

TEST(Copy, BasicAuthWithHtpasswd) {
  Registry src({.htpasswd_user = "alice", .htpasswd_password = "wonder:land"});
  Registry dst({.htpasswd_user = "bob", .htpasswd_password = "builder"});
  build_and_push("image", {"--seed", "basic"}, src.host() + "/secure/app:v1",
                 "--dest-tls-verify=false --dest-creds alice:wonder:land");
  auto s = plain("");
  s.credentials = {.username = "alice", .password = "wonder:land", .identity_token = {}};
  auto d = plain("");
  d.credentials = {.username = "bob", .password = "builder", .identity_token = {}};
  auto r = copy_one(src.host() + "/secure/app:v1", dst.host() + "/secure/app:v1", both(s, d));
  ASSERT_TRUE(r) << r.error().to_string();
  expect_same_raw(src.host() + "/secure/app:v1", dst.host() + "/secure/app:v1", src.skopeo_flags(), dst.skopeo_flags());

  auto anon = copy_one(src.host() + "/secure/app:v1", dst.host() + "/secure/other:v1", both(plain(""), d));
  ASSERT_FALSE(anon);
  EXPECT_EQ(anon.error().kind, ErrorKind::Unauthorized) << anon.error().to_string();
  auto wrong = s;
  wrong.credentials.password = "not-the-password";
  auto bad = copy_one(src.host() + "/secure/app:v1", dst.host() + "/secure/other:v1", both(wrong, d));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind, ErrorKind::Unauthorized);
  EXPECT_EQ(bad.error().to_string().find("not-the-password"), std::string::npos);
}

TEST(Copy, TlsWithTestCaVerifiesByDefault) {
  Registry src({.tls = true});
  Registry dst({.tls = true});
  build_and_push("image", {"--seed", "tls"}, src.host() + "/tls/app:v1");
  RegistryConfig s;
  s.tls.ca_files = {src.ca_file()};
  RegistryConfig d;
  d.tls.ca_files = {dst.ca_file()};
  auto r = copy_one(src.host() + "/tls/app:v1", dst.host() + "/tls/app:v1", both(s, d));
  ASSERT_TRUE(r) << r.error().to_string();
  expect_same_raw(src.host() + "/tls/app:v1", dst.host() + "/tls/app:v1");

  // Without the CA: refused by verification (the default).
  auto unverified = copy_one(src.host() + "/tls/app:v1", dst.host() + "/tls/other:v1", both(RegistryConfig{}, d));
  ASSERT_FALSE(unverified);
  EXPECT_EQ(unverified.error().kind, ErrorKind::Tls) << unverified.error().to_string();
  // A CA that did not sign the destination's certificate: refused too.
  RegistryConfig wrong_ca;
  wrong_ca.tls.ca_files = {src.ca_file()};
  auto wrong = copy_one(src.host() + "/tls/app:v1", dst.host() + "/tls/other:v1", both(s, wrong_ca));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().kind, ErrorKind::Tls);
  // The CA as PEM text (how a Registry's tls.caSecretRef reaches the client): same as the file.
  RegistryConfig pem;
  {
    std::ifstream in(dst.ca_file());
    pem.tls.ca_pems = {std::string(std::istreambuf_iterator<char>(in), {})};
  }
  auto from_pem = copy_one(src.host() + "/tls/app:v1", dst.host() + "/tls/pem:v1", both(s, pem));
  ASSERT_TRUE(from_pem) << from_pem.error().to_string();
  RegistryConfig bad_pem;
  bad_pem.tls.ca_pems = {"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"};
  auto refused = copy_one(src.host() + "/tls/app:v1", dst.host() + "/tls/pem:v1", both(s, bad_pem));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind, ErrorKind::Config) << refused.error().to_string();
  // Explicit opt-out.
  RegistryConfig skip;
  skip.tls.verify = false;
  auto skipped = copy_one(src.host() + "/tls/app:v1", dst.host() + "/tls/other:v1", both(skip, skip));
  ASSERT_TRUE(skipped) << skipped.error().to_string();
}

TEST(Copy, BearerTokensFromTokenServer) {
  ferry::testing::TokenServer tokens("carol:t0ken-pass");
  RegistryOptions opts{.token_realm = tokens.realm(), .token_rootcert = tokens.cert_file()};
  Registry src(opts);
  Registry dst(opts);
  // skopeo pushes through the same token flow.
  build_and_push("image", {"--seed", "bearer", "--layers", "2"}, src.host() + "/tok/app:v1",
                 "--dest-tls-verify=false --dest-creds carol:t0ken-pass");
  auto c = plain("");
  c.credentials = {.username = "carol", .password = "t0ken-pass", .identity_token = {}};
  CopyStats st;
  auto r = copy_one(src.host() + "/tok/app:v1", dst.host() + "/tok/app:v1", both(c, c), {}, &st);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(st.blobs_copied, 3u);
  expect_same_raw(src.host() + "/tok/app:v1", dst.host() + "/tok/app:v1", "--tls-verify=false --creds carol:t0ken-pass",
                  "--tls-verify=false --creds carol:t0ken-pass");
  // Same-registry mount needs a token covering two repositories.
  auto m = copy_one(src.host() + "/tok/app:v1", src.host() + "/tok/mirror:v1", both(c, c), {}, &st);
  ASSERT_TRUE(m) << m.error().to_string();
  EXPECT_EQ(st.blobs_mounted, 3u);
  auto cat = run_client<Result<std::vector<std::string>>>([&] { auto x = c; x.host = src.host(); return x; }(),
                                                          [](RegistryClient& cl) { return cl.catalog(1); });
  ASSERT_TRUE(cat) << cat.error().to_string();
  EXPECT_EQ(*cat, (std::vector<std::string>{"tok/app", "tok/mirror"}));
  auto anon = copy_one(src.host() + "/tok/app:v1", dst.host() + "/tok/x:v1", both(plain(""), c));
  ASSERT_FALSE(anon);
  EXPECT_EQ(anon.error().kind, ErrorKind::Unauthorized) << anon.error().to_string();
}

// A reload swaps the copier's table of registries (the engine keeps one Copier): a client whose
// settings did not change is kept, with its connections and tokens; a copy in flight finishes
// on the client it started with; the new table applies to the next copy.
TEST(Copy, ANewTableKeepsUnchangedClientsAndLetsCopiesInFlightFinish) {
  ferry::testing::TokenServer tokens("carol:t0ken-pass");
  RegistryOptions opts{.token_realm = tokens.realm(), .token_rootcert = tokens.cert_file()};
  Registry src(opts);
  Registry dst(opts);
  const std::string creds = "--dest-tls-verify=false --dest-creds carol:t0ken-pass";
  build_and_push("image", {"--seed", "swap-1", "--layers", "3", "--layer-bytes", "65536"}, src.host() + "/sw/a:v1", creds);
  build_and_push("image", {"--seed", "swap-2", "--layers", "3", "--layer-bytes", "65536"}, src.host() + "/sw/b:v1", creds);
  auto good = plain("");
  good.credentials = {.username = "carol", .password = "t0ken-pass", .identity_token = {}};
  auto wrong = good;
  wrong.credentials.password = "rotated-away";

  asio::io_context io;
  Copier copier(io.get_executor(), both(good, good));
  auto copy = [&](const std::string& repo, std::optional<Result<CopyResult>>& out) {
    asio::co_spawn(io, copier.copy(image_ref(src.host() + "/" + repo + ":v1"), image_ref(dst.host() + "/" + repo + ":v1")),
                   [&out](std::exception_ptr e, Result<CopyResult> r) {
                     if (e) std::rethrow_exception(e);
                     out.emplace(std::move(r));
                   });
  };
  std::optional<Result<CopyResult>> first;
  copy("sw/a", first);
  io.run();
  io.restart();
  ASSERT_TRUE(first && *first) << (first ? first->error().to_string() : "not run");
  const auto kept = copier.client(dst.host(), Side::Destination);
  copier.set_resolver(both(good, good));
  EXPECT_EQ(copier.client(dst.host(), Side::Destination), kept) << "same settings: the same client, its token kept";

  std::optional<Result<CopyResult>> in_flight;
  copy("sw/b", in_flight);
  while (!in_flight && copier.stats().blobs_copied < 5) io.run_one();  // sw/b's first blob is in
  ASSERT_FALSE(in_flight) << "the copy must still be running when the table changes";
  copier.set_resolver(both(good, wrong));
  EXPECT_NE(copier.client(dst.host(), Side::Destination), kept) << "other credentials: a new client";
  io.run();
  io.restart();
  ASSERT_TRUE(in_flight && *in_flight) << (in_flight ? in_flight->error().to_string() : "not run");
  expect_same_raw(src.host() + "/sw/b:v1", dst.host() + "/sw/b:v1", "--tls-verify=false --creds carol:t0ken-pass",
                  "--tls-verify=false --creds carol:t0ken-pass");

  std::optional<Result<CopyResult>> after;
  copy("sw/a", after);  // with the new table's wrong password
  io.run();
  ASSERT_TRUE(after);
  ASSERT_FALSE(*after);
  EXPECT_EQ(after->error().kind, ErrorKind::Unauthorized) << after->error().to_string();
}

// Blob HEADs in a FaultProxy --request-log.
int blob_heads_in(const std::string& log) {
  std::ifstream in(log);
  std::string start, end, method, path;
  int n = 0;
  while (in >> start >> end >> method >> path) n += method == "HEAD" && path.find("/blobs/") != std::string::npos;
  return n;
}

// Once no copy is under way, the copier forgets which blobs it placed: the next copy asks the
// destination again (a repository may have been deleted there meanwhile) instead of skipping
// blobs on its word. Within one copy_all run, images still share what the others placed.
TEST(Copy, AnIdleCopierAsksTheDestinationAgainRatherThanTrustingWhatItPlaced) {
  Registry src;
  Registry dst;
  ferry::testing::TempDir logs;
  const std::string log = logs / "requests.log";
  FaultProxy proxy(dst.host(), {"--request-log", log});
  build_and_push("image", {"--seed", "idle", "--layers", "2"}, src.host() + "/id/app:v1");
  asio::io_context io;
  Copier copier(io.get_executor(), both(plain(""), plain("")));
  auto copy = [&] {
    std::optional<Result<CopyResult>> out;
    asio::co_spawn(io, copier.copy(image_ref(src.host() + "/id/app:v1"), image_ref(proxy.host() + "/id/app:v1")),
                   [&out](std::exception_ptr e, Result<CopyResult> r) {
                     if (e) std::rethrow_exception(e);
                     out.emplace(std::move(r));
                   });
    io.run();
    io.restart();
    return out;
  };
  auto first = copy();
  ASSERT_TRUE(first && *first) << (first ? first->error().to_string() : "not run");
  const int after_first = blob_heads_in(log);
  EXPECT_EQ(after_first, 3) << "config and two layers, each asked for once";
  auto second = copy();
  ASSERT_TRUE(second && *second) << (second ? second->error().to_string() : "not run");
  EXPECT_EQ(blob_heads_in(log) - after_first, 3) << "asked again, not skipped on the copier's memory";
  EXPECT_EQ(copier.stats().blobs_copied, 3u) << "and nothing uploaded twice";
}

TEST(Copy, ABusyCopierForgetsWhatItPlacedBeyondItsBound) {
  // One copy_all run keeps the copier busy from the first image to the last (a backfill is like
  // that for hours): what it placed is forgotten once more than remember_placed is in mind, so
  // the second image of the run asks the destination again; without the bound it trusts memory.
  Registry src;
  build_and_push("image", {"--seed", "busy", "--layers", "2"}, src.host() + "/busy/app:v1");
  for (const std::size_t bound : {std::size_t{1000}, std::size_t{2}}) {
    Registry dst;
    ferry::testing::TempDir logs;
    const std::string log = logs / "requests.log";
    FaultProxy proxy(dst.host(), {"--request-log", log});
    CopyOptions options;
    options.max_parallel_images = 1;  // one image after the other, in the same run
    options.remember_placed = bound;
    std::vector<CopyJob> jobs;
    for (const char* tag : {"v1", "v2"})
      jobs.push_back({image_ref(src.host() + "/busy/app:v1"), image_ref(proxy.host() + "/busy/app:" + tag)});
    auto results = run_copies(std::move(jobs), both(plain(""), plain("")), options);
    for (const auto& r : results) ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(blob_heads_in(log), bound == 2 ? 6 : 3) << "bound " << bound << ": config and two layers, asked for "
                                          << (bound == 2 ? "again by the second image" : "once");
  }
}

// ---- faults through tests/support/fault_proxy.py

class Faults : public ::testing::Test {
 protected:
  void SetUp() override {
    build_and_push("image", {"--layers", "2", "--layer-bytes", std::to_string(3 << 20), "--seed", "faults"},
                   src_.host() + "/f/app:v1");
  }
  Registry src_;
  Registry dst_;
};

TEST_F(Faults, ServerErrorsForFirstRequestsAreRetried) {
  FaultProxy proxy(src_.host(), {"--fail-first", "4", "--fail-status", "500"});
  auto r = copy_one(proxy.host() + "/f/app:v1", dst_.host() + "/f/app:v1", both(plain(""), plain("")));
  ASSERT_TRUE(r) << r.error().to_string();
  expect_same_raw(src_.host() + "/f/app:v1", dst_.host() + "/f/app:v1");
}

TEST_F(Faults, TooManyRequestsHonoursRetryAfter) {
  FaultProxy proxy(dst_.host(), {"--fail-first", "3", "--fail-status", "429", "--retry-after", "1"});
  const auto start = std::chrono::steady_clock::now();
  auto r = copy_one(src_.host() + "/f/app:v1", proxy.host() + "/f/app:v1", both(plain(""), plain("")));
  ASSERT_TRUE(r) << r.error().to_string();
  // Three 429s with Retry-After: 1 on the same request path cost at least a second in total.
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1000));
  expect_same_raw(src_.host() + "/f/app:v1", dst_.host() + "/f/app:v1");
}

TEST_F(Faults, PersistentErrorsGiveUpWithTheCause) {
  FaultProxy proxy(src_.host(), {"--fail-first", "1000", "--fail-status", "503"});
  auto cfg = plain("");
  cfg.retry.max_attempts = 3;
  auto r = copy_one(proxy.host() + "/f/app:v1", dst_.host() + "/f/app:v1", both(cfg, plain("")));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().http_status, 503);
  EXPECT_EQ(r.error().code, "UNAVAILABLE");
}

TEST_F(Faults, ConnectionCutMidBlobIsResumedByRetry) {
  FaultProxy proxy(src_.host(), {"--cut-blob-gets", "2"});
  CopyOptions opts;
  opts.retry.base_delay = std::chrono::milliseconds(20);
  auto r = copy_one(proxy.host() + "/f/app:v1", dst_.host() + "/f/app:v1", both(plain(""), plain("")), opts);
  ASSERT_TRUE(r) << r.error().to_string();
  expect_same_raw(src_.host() + "/f/app:v1", dst_.host() + "/f/app:v1");
}

TEST_F(Faults, SlowDestinationCompletes) {
  FaultProxy proxy(dst_.host(), {"--delay-ms", "5"});
  auto r = copy_one(src_.host() + "/f/app:v1", proxy.host() + "/f/app:v1", both(plain(""), plain("")));
  ASSERT_TRUE(r) << r.error().to_string();
  expect_same_raw(src_.host() + "/f/app:v1", dst_.host() + "/f/app:v1");
}

TEST_F(Faults, CorruptSourceBlobIsRefusedAndNothingIsVisible) {
  FaultProxy proxy(src_.host(), {"--corrupt-blobs"});
  for (bool stream_in_put : {true, false}) {
    CopyOptions opts;
    opts.stream_in_put = stream_in_put;
    auto r = copy_one(proxy.host() + "/f/app:v1", dst_.host() + "/f/app:v1", both(plain(""), plain("")), opts);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, ErrorKind::DigestMismatch) << r.error().to_string();
  }
  EXPECT_FALSE(skopeo_raw(dst_.host() + "/f/app:v1"));
  auto tags = run_client<Result<std::vector<std::string>>>(plain(dst_.host()), [](RegistryClient& c) { return c.tags("f/app"); });
  EXPECT_TRUE(!tags || tags->empty());
  // No corrupted blob was committed either.
  auto manifest = run_client<Result<Manifest>>(plain(src_.host()), [](RegistryClient& c) { return c.get_manifest("f/app", "v1"); });
  ASSERT_TRUE(manifest);
  auto info = inspect_manifest(manifest->bytes, manifest->media_type);
  ASSERT_TRUE(info);
  for (const auto& d : info->children) {
    auto head = run_client<Result<std::optional<std::uint64_t>>>(plain(dst_.host()), [d](RegistryClient& c) {
      return c.head_blob("f/app", d.digest);
    });
    ASSERT_TRUE(head);
    EXPECT_FALSE(*head) << d.digest;
  }
}

TEST_F(Faults, OversizedManifestIsRefused) {
  FaultProxy proxy(src_.host(), {"--huge-manifest"});
  auto r = copy_one(proxy.host() + "/f/app:v1", dst_.host() + "/f/app:v1", both(plain(""), plain("")));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::TooLarge) << r.error().to_string();
  EXPECT_FALSE(skopeo_raw(dst_.host() + "/f/app:v1"));
}

TEST(Copy, BlobRedirectsAreFollowedWithoutCredentials) {
  Registry src({.htpasswd_user = "dora", .htpasswd_password = "explorer"});
  Registry dst;
  build_and_push("image", {"--seed", "redirect", "--layers", "2"}, src.host() + "/r/app:v1",
                 "--dest-tls-verify=false --dest-creds dora:explorer");
  // Blob GETs are redirected to another origin, which refuses requests carrying credentials.
  FaultProxy proxy(src.host(), {"--redirect-blobs", "dora:explorer"});
  auto s = plain("");
  s.credentials = {.username = "dora", .password = "explorer", .identity_token = {}};
  CopyStats st;
  auto r = copy_one(proxy.host() + "/r/app:v1", dst.host() + "/r/app:v1", both(s, plain("")), {}, &st);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(st.blobs_copied, 3u);
  expect_same_raw(src.host() + "/r/app:v1", dst.host() + "/r/app:v1", src.skopeo_flags());
}

// ---- the CLI

TEST(CopyCli, CopiesPairsFromFileAndPrintsSummary) {
  Registry src;
  Registry dst;
  build_and_push("image", {"--seed", "cli1"}, src.host() + "/cli/a:v1");
  build_and_push("index", {"--layer-bytes", "1000"}, src.host() + "/cli/b:v1");
  ferry::testing::TempDir tmp;
  std::ofstream(tmp / "list") << "# pairs\n"
                              << src.host() << "/cli/a:v1 " << dst.host() << "/cli/a:v1\n"
                              << src.host() << "/cli/b:v1 " << dst.host() << "/cli/b:v2\n";
  auto r = ferry::testing::run(std::string(FERRY_BIN) + " copy --src-insecure --dest-insecure --from-file " +
                               (tmp / "list") + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("2/2 images"), std::string::npos) << r.output;
  expect_same_raw(src.host() + "/cli/a:v1", dst.host() + "/cli/a:v1");
  expect_same_raw(src.host() + "/cli/b:v1", dst.host() + "/cli/b:v2");

  auto bad = ferry::testing::run(std::string(FERRY_BIN) + " copy --src-insecure --dest-insecure " + src.host() +
                                 "/cli/a:v1 " + dst.host() + "/../x:v1 2>&1");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  auto creds = ferry::testing::run(std::string(FERRY_BIN) + " copy --src-insecure --dest-insecure --src-creds u:hunter2 " +
                                   src.host() + "/cli/none:v1 " + dst.host() + "/cli/none:v1 2>&1");
  EXPECT_EQ(creds.exit_code, 1) << creds.output;
  EXPECT_EQ(creds.output.find("hunter2"), std::string::npos) << creds.output;
}

TEST(CopyCli, AuthfileAndCertDirOverTls) {
  Registry src({.htpasswd_user = "erin", .htpasswd_password = "pa55", .tls = true});
  Registry dst({.tls = true});
  build_and_push("image", {"--seed", "cli-tls"}, src.host() + "/t/app:v1",
                 "--dest-tls-verify=false --dest-creds erin:pa55");
  ferry::testing::TempDir tmp;
  std::ofstream(tmp / "auth.json") << R"({"auths":{")" << src.host() << R"(":{"auth":")"
                                   << base64_encode("erin:pa55") << R"("}}})";
  std::filesystem::create_directories(tmp / "certs");
  std::filesystem::copy_file(dst.ca_file(), tmp / "certs/ca.crt");
  const std::string cmd = std::string(FERRY_BIN) + " copy --src-authfile " + (tmp / "auth.json") + " --src-ca-file " +
                          src.ca_file() + " --dest-cert-dir " + (tmp / "certs") + " " + src.host() + "/t/app:v1 " +
                          dst.host() + "/t/app:v1 2>&1";
  auto r = ferry::testing::run(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_raw(src.host() + "/t/app:v1", dst.host() + "/t/app:v1", src.skopeo_flags());
  // Verification is on by default: without the destination's CA the copy fails (--dest-tls: a
  // loopback registry is plain HTTP unless a TLS flag or https:// says otherwise).
  const std::string base = std::string(FERRY_BIN) + " copy --src-authfile " + (tmp / "auth.json") + " --src-ca-file " +
                           src.ca_file() + " " + src.host() + "/t/app:v1 " + dst.host() + "/t/other:v1";
  auto unverified = ferry::testing::run(base + " --dest-tls 2>&1");
  EXPECT_EQ(unverified.exit_code, 1) << unverified.output;
  EXPECT_NE(unverified.output.find("TLS"), std::string::npos) << unverified.output;
  EXPECT_EQ(unverified.output.find("pa55"), std::string::npos) << unverified.output;
  // Without it, plain HTTP meets the TLS server, and the error says what to do.
  auto plain = ferry::testing::run(base + " 2>&1");
  EXPECT_EQ(plain.exit_code, 1) << plain.output;
  EXPECT_NE(plain.output.find("is a loopback address: if it serves TLS, use --dest-tls"), std::string::npos)
      << plain.output;
}

}  // namespace
}  // namespace ferry::registry
