// Table-driven tests of the registry layer's pure parts: references, challenges, Link
// headers, retry policy, credentials files, manifest inspection. No sockets.
#include <gtest/gtest.h>

#include "registry/auth.hpp"
#include "registry/reference.hpp"
#include "registry/retry.hpp"
#include "registry/wire.hpp"

namespace ferry::registry {
namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');

struct RefCase {
  std::string text;
  bool ok;
  std::string registry, repository, tag, digest;
};

TEST(Reference, ParsesAndRejects) {
  const std::vector<RefCase> cases = {
      {"127.0.0.1:5001/prod/app:v1", true, "127.0.0.1:5001", "prod/app", "v1", ""},
      {"127.0.0.1:5001/prod/app", true, "127.0.0.1:5001", "prod/app", "latest", ""},
      {"127.0.0.1:5001/prod/app@" + kDigest, true, "127.0.0.1:5001", "prod/app", "", kDigest},
      {"127.0.0.1:5001/prod/app:v1@" + kDigest, true, "127.0.0.1:5001", "prod/app", "v1", kDigest},
      {"localhost/a", true, "localhost", "a", "latest", ""},
      {"registry.example.com/a/b/c:1.0-rc_1", true, "registry.example.com", "a/b/c", "1.0-rc_1", ""},
      {"busybox", true, "docker.io", "library/busybox", "latest", ""},
      {"user/app:2", true, "docker.io", "user/app", "2", ""},
      {"reg.io/a__b/c.d/e---f", true, "reg.io", "a__b/c.d/e---f", "latest", ""},
      {"reg.io/Upper/app", false, "", "", "", ""},
      {"reg.io/../etc/passwd", false, "", "", "", ""},
      {"reg.io/a/../b", false, "", "", "", ""},
      {"reg.io/a//b", false, "", "", "", ""},
      {"reg.io/a/", false, "", "", "", ""},
      {"reg.io/-a", false, "", "", "", ""},
      {"reg.io/a_", false, "", "", "", ""},
      {"reg.io/a___b", false, "", "", "", ""},
      {"reg.io/a..b", false, "", "", "", ""},
      {"reg.io/a:.bad", false, "", "", "", ""},
      {"reg.io/a:" + std::string(129, 't'), false, "", "", "", ""},
      {"reg.io/a@sha256:abc", false, "", "", "", ""},
      {"reg.io/a@md5:" + std::string(32, 'a'), false, "", "", "", ""},
      {"reg.io/a@sha256:" + std::string(64, 'A'), false, "", "", "", ""},
      {"", false, "", "", "", ""},
      {"reg.io/" + std::string(256, 'a'), false, "", "", "", ""},
      {"reg.io/a%2fb", false, "", "", "", ""},
      {"re g.io/a", false, "", "", "", ""},
  };
  for (const auto& c : cases) {
    auto r = parse_reference(c.text);
    EXPECT_EQ(r.has_value(), c.ok) << c.text;
    if (!r) {
      EXPECT_EQ(r.error().kind, ErrorKind::InvalidReference) << c.text;
      continue;
    }
    if (!c.ok) continue;
    EXPECT_EQ(r->registry, c.registry) << c.text;
    EXPECT_EQ(r->repository, c.repository) << c.text;
    EXPECT_EQ(r->tag, c.tag) << c.text;
    EXPECT_EQ(r->digest, c.digest) << c.text;
  }
}

TEST(Reference, RoundTripsAndIdentifier) {
  auto r = parse_reference("127.0.0.1:5001/prod/app:v1@" + kDigest);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->to_string(), "127.0.0.1:5001/prod/app:v1@" + kDigest);
  EXPECT_EQ(r->identifier(), kDigest);
  EXPECT_EQ(parse_reference("h.io/a:t")->identifier(), "t");
  EXPECT_EQ(api_host("docker.io"), "registry-1.docker.io");
  EXPECT_EQ(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
}

TEST(Reference, LoopbackHosts) {
  for (const char* h : {"localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5001", "127.1.2.3:80", "[::1]:5000",
                        "::1"}) {
    EXPECT_TRUE(is_loopback_host(h)) << h;
  }
  for (const char* h : {"registry.example.com", "128.0.0.1:5000", "127.0.0.1.example.com", "10.0.0.1:5000",
                        "localhost.example.com", "[::2]:5000", "docker.io", "127.0.0:5000"}) {
    EXPECT_FALSE(is_loopback_host(h)) << h;
  }
}

TEST(Challenge, ParsesBearerBasicAndSeveral) {
  struct Case {
    std::string header;
    std::vector<std::pair<std::string, std::map<std::string, std::string>>> want;
  };
  const std::vector<Case> cases = {
      {R"(Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push")",
       {{"bearer",
         {{"realm", "https://auth.example.com/token"}, {"service", "registry.example.com"}, {"scope", "repository:a/b:pull,push"}}}}},
      {R"(Basic realm="basic-realm")", {{"basic", {{"realm", "basic-realm"}}}}},
      {R"(BASIC Realm=plain)", {{"basic", {{"realm", "plain"}}}}},
      {R"(Bearer realm="r", error="insufficient_scope", scope="a b")",
       {{"bearer", {{"realm", "r"}, {"error", "insufficient_scope"}, {"scope", "a b"}}}}},
      {R"(Basic realm="x", Bearer realm="y",service="s")",
       {{"basic", {{"realm", "x"}}}, {"bearer", {{"realm", "y"}, {"service", "s"}}}}},
      {R"(Bearer realm="with \"quote\", comma")", {{"bearer", {{"realm", "with \"quote\", comma"}}}}},
      {"", {}},
  };
  for (const auto& c : cases) {
    auto got = parse_www_authenticate(c.header);
    ASSERT_EQ(got.size(), c.want.size()) << c.header;
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].scheme, c.want[i].first) << c.header;
      EXPECT_EQ(got[i].params, c.want[i].second) << c.header;
    }
  }
}

TEST(LinkHeader, FindsNext) {
  const std::vector<std::pair<std::string, std::optional<std::string>>> cases = {
      {R"(</v2/_catalog?last=b&n=2>; rel="next")", "/v2/_catalog?last=b&n=2"},
      {R"(<https://r.io/v2/a/tags/list?n=1&last=x>; rel=next)", "https://r.io/v2/a/tags/list?n=1&last=x"},
      {R"(</p1>; rel="prev", </p3>; rel="next")", "/p3"},
      {R"(</p1>; rel="prev")", std::nullopt},
      {"", std::nullopt},
      {"garbage", std::nullopt},
  };
  for (const auto& [h, want] : cases) EXPECT_EQ(parse_next_link(h), want) << h;
}

TEST(Retry, StatusClassification) {
  for (int s : {408, 429, 500, 502, 503, 504}) EXPECT_TRUE(retryable_status(s)) << s;
  for (int s : {200, 201, 400, 401, 403, 404, 409, 501, 505}) EXPECT_FALSE(retryable_status(s)) << s;
}

TEST(Retry, BackoffWithJitterAndRetryAfter) {
  RetryPolicy p;
  p.base_delay = std::chrono::milliseconds(100);
  p.max_delay = std::chrono::milliseconds(1000);
  using ms = std::chrono::milliseconds;
  const std::vector<std::tuple<int, double, std::optional<ms>, ms>> cases = {
      {1, 0.0, std::nullopt, ms(50)},   {1, 0.999, std::nullopt, ms(99)}, {2, 1.0, std::nullopt, ms(200)},
      {3, 0.0, std::nullopt, ms(200)},  {10, 1.0, std::nullopt, ms(1000)}, {50, 0.0, std::nullopt, ms(500)},
      {1, 0.5, ms(300), ms(300)},       {1, 0.5, ms(5000), ms(1000)},      {1, 0.5, ms(0), ms(0)},
  };
  for (const auto& [attempt, jitter, ra, want] : cases) {
    EXPECT_EQ(retry_delay(p, attempt, jitter, ra), want) << attempt << " " << jitter;
  }
}

TEST(Retry, ParsesRetryAfter) {
  const long long now = 1445412480;  // Wed, 21 Oct 2015 07:28:00 GMT
  EXPECT_EQ(parse_retry_after("3", now), std::chrono::milliseconds(3000));
  EXPECT_EQ(parse_retry_after(" 0 ", now), std::chrono::milliseconds(0));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", now), std::chrono::milliseconds(5000));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), std::chrono::milliseconds(0));
  EXPECT_EQ(parse_retry_after("-1", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("soon", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("", now), std::nullopt);
}

TEST(Credentials, FromDockerConfig) {
  const std::string cfg = R"({"auths":{
    "127.0.0.1:5000":{"auth":")" + base64_encode("alice:s3:cret") + R"("},
    "https://reg.example.com/v1/":{"username":"bob","password":"pw"},
    "https://index.docker.io/v1/":{"auth":")" + base64_encode("hub:pw") + R"("},
    "tok.example.com":{"identitytoken":"refresh"}}})";
  auto a = credentials_from_docker_config(cfg, "127.0.0.1:5000");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->username, "alice");
  EXPECT_EQ(a->password, "s3:cret");
  auto b = credentials_from_docker_config(cfg, "reg.example.com");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->username, "bob");
  auto hub = credentials_from_docker_config(cfg, "registry-1.docker.io");
  ASSERT_TRUE(hub);
  EXPECT_EQ(hub->username, "hub");
  auto t = credentials_from_docker_config(cfg, "tok.example.com");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->identity_token, "refresh");
  auto none = credentials_from_docker_config(cfg, "other:1");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(credentials_from_docker_config("not json", "x"));
  EXPECT_FALSE(credentials_from_docker_config(R"({"auths":{"x":{"auth":"!!!"}}})", "x"));
  auto bad = credentials_from_docker_config(R"({"auths":{"x":{"auth":")" + base64_encode("nocolon") + R"("}}})", "x");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message.find("nocolon"), std::string::npos) << "secrets must not reach messages";
}

TEST(Credentials, BasicHeaderAndUserPassword) {
  auto c = parse_user_password("user:pa:ss");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->password, "pa:ss");
  EXPECT_EQ(basic_authorization(*c), "Basic " + base64_encode("user:pa:ss"));
  EXPECT_EQ(base64_encode("ab"), "YWI=");
  EXPECT_EQ(base64_decode("YWI=").value(), "ab");
  EXPECT_FALSE(parse_user_password("nopassword"));
  EXPECT_FALSE(parse_user_password(":x"));
}

// Found by tests/fuzz (fuzz_docker_config): a run of '=' longer than the decoded bytes made the
// length wrap around (std::length_error); padding is at most "==" and only at the end.
TEST(Credentials, Base64PaddingIsAtMostTwoAtTheEnd) {
  auto bad = base64_decode(std::string(104, '=') + "\r");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "invalid base64 (padding)");
  EXPECT_FALSE(base64_decode("===="));
  EXPECT_FALSE(base64_decode("YW==YWI="));
  EXPECT_FALSE(base64_decode("Y=Ja"));
  EXPECT_EQ(base64_decode("YQ==").value(), "a");
  EXPECT_EQ(base64_decode("").value(), "");
  auto config = credentials_from_docker_config(R"({"auths":{"x":{"auth":"====="}}})", "x");
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().message, "docker config: 'auth' is not valid base64");
}

// Found while writing tests/fuzz/fuzz_manifest: a descriptor size that is no whole number made
// Boost.JSON's to_number throw out of inspect_manifest; it is a protocol error now.
TEST(Manifest, SizeThatIsNoWholeNumberIsAProtocolError) {
  const std::string d = "sha256:" + std::string(64, '1');
  for (std::string size : {"1.5", "1e300", "-1e300"}) {
    auto m = inspect_manifest(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":")" + d +
                                  R"(","size":)" + size + "},\"layers\":[]}",
                              "");
    ASSERT_FALSE(m) << size;
    EXPECT_EQ(m.error().kind, ErrorKind::Protocol) << size;
    EXPECT_EQ(m.error().message, "descriptor size is not a whole number of bytes") << size;
  }
  auto whole = inspect_manifest(R"({"manifests":[{"digest":")" + d + R"(","size":2e3}]})", "");
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->children.at(0).size, 2000);
}

TEST(Manifest, InspectsKinds) {
  const std::string d1 = "sha256:" + std::string(64, '1'), d2 = "sha256:" + std::string(64, '2');
  auto image = inspect_manifest(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"c","digest":")" + d1 + R"(","size":2},
    "layers":[{"mediaType":"l","digest":")" + d2 + R"(","size":3},
              {"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":")" + d2 + R"(","size":3,"urls":["x"]}]})",
                                "");
  ASSERT_TRUE(image);
  EXPECT_FALSE(image->is_index);
  ASSERT_EQ(image->children.size(), 3u);
  EXPECT_EQ(image->children[0].digest, d1);
  EXPECT_TRUE(image->children[2].foreign);
  auto index = inspect_manifest(R"({"schemaVersion":2,"manifests":[{"digest":")" + d1 + R"(","size":9}]})",
                                "application/vnd.docker.distribution.manifest.list.v2+json");
  ASSERT_TRUE(index);
  EXPECT_TRUE(index->is_index);
  EXPECT_EQ(index->media_type, "application/vnd.docker.distribution.manifest.list.v2+json");
  EXPECT_EQ(inspect_manifest("[]", "").error().kind, ErrorKind::Protocol);
  EXPECT_EQ(inspect_manifest(R"({"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"})", "")
                .error().kind,
            ErrorKind::Unsupported);
  EXPECT_EQ(inspect_manifest(R"({"config":{"digest":"md5:x"},"layers":[]})", "application/vnd.oci.image.manifest.v1+json")
                .error().kind,
            ErrorKind::Unsupported);
}

TEST(Errors, RegistryErrorBodiesAreTyped) {
  struct Case {
    int status;
    std::string body;
    ErrorKind kind;
    std::string code;
    bool retryable;
  };
  const std::vector<Case> cases = {
      {404, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})", ErrorKind::NotFound, "MANIFEST_UNKNOWN", false},
      {400, R"({"errors":[{"code":"DIGEST_INVALID","message":"x"}]})", ErrorKind::DigestMismatch, "DIGEST_INVALID", false},
      {403, R"({"errors":[{"code":"DENIED","message":"no"}]})", ErrorKind::Denied, "DENIED", false},
      {401, "", ErrorKind::Unauthorized, "", false},
      {503, "<html>", ErrorKind::Http, "", true},
      {429, R"({"errors":[{"code":"TOOMANYREQUESTS"}]})", ErrorKind::Http, "TOOMANYREQUESTS", true},
      {400, R"({"errors":[{"code":"NAME_INVALID"}]})", ErrorKind::Http, "NAME_INVALID", false},
  };
  for (const auto& c : cases) {
    Error e;
    apply_error_body(e, c.status, c.body);
    EXPECT_EQ(e.kind, c.kind) << c.body;
    EXPECT_EQ(e.code, c.code) << c.body;
    EXPECT_EQ(e.retryable(), c.retryable) << c.body;
  }
  Error e{.kind = ErrorKind::NotFound, .message = "manifest unknown", .operation = "GET manifest", .registry = "r:5",
          .repository = "a/b", .digest = "v1", .http_status = 404, .code = "MANIFEST_UNKNOWN"};
  EXPECT_EQ(e.to_string(), "GET manifest r:5/a/b@v1: not found (404 MANIFEST_UNKNOWN): manifest unknown");
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256::of(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 h;
  h.update(std::string_view("a"));
  h.update(std::string_view("bc"));
  EXPECT_EQ(h.final_digest(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace ferry::registry
