// SigV4 against the published AWS test suite (aws-sig-v4-test-suite / aws-c-auth v4 vectors,
// 2015-08-30 12:36:00Z, us-east-1, service "service"), cases written out from their request,
// canonical request and signature. botocore is the second oracle (test_sigv4_botocore.py).
#include <gtest/gtest.h>

#include "aws/credentials.hpp"
#include "aws/sigv4.hpp"

namespace ferry::aws {
namespace {

const Credentials kCreds{.access_key_id = "AKIDEXAMPLE", .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"};
constexpr auto kTime = std::chrono::sys_days{std::chrono::year{2015} / 8 / 30} + std::chrono::hours(12) +
                       std::chrono::minutes(36);
const std::string kEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const std::string kStsToken =
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwth"
    "Ax7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVX"
    "AkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

struct SuiteCase {
  std::string name;
  std::string method;
  std::string target;
  SignHeaders headers;  // besides Host
  std::string body;
  std::string canonical;  // with "\n" as in the suite's files
  std::string signature;
  bool normalize = true;
  std::string token;
  bool content_sha256 = false;
};

std::string vanilla_canonical(const std::string& method, const std::string& uri, const std::string& query) {
  return method + "\n" + uri + "\n" + query + "\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" +
         kEmpty;
}

std::vector<SuiteCase> suite() {
  const std::string unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  const std::string form_hash = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
  return {
      {"get-vanilla", "GET", "/", {}, "", vanilla_canonical("GET", "/", ""),
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-vanilla-query", "GET", "/", {}, "", vanilla_canonical("GET", "/", ""),
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-vanilla-empty-query-key", "GET", "/?Param1=value1", {}, "", vanilla_canonical("GET", "/", "Param1=value1"),
       "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
      {"get-vanilla-query-order-key-case", "GET", "/?Param2=value2&Param1=value1", {}, "",
       vanilla_canonical("GET", "/", "Param1=value1&Param2=value2"),
       "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
      {"get-vanilla-query-order-encoded", "GET", "/?Param-3=Value3&Param=Value2&%E1%88%B4=Value1", {}, "",
       vanilla_canonical("GET", "/", "%E1%88%B4=Value1&Param=Value2&Param-3=Value3"),
       "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac"},
      {"get-vanilla-query-unreserved", "GET", "/?" + unreserved + "=" + unreserved, {}, "",
       vanilla_canonical("GET", "/", unreserved + "=" + unreserved),
       "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
      {"get-vanilla-utf8-query", "GET", "/?\xE1\x88\xB4=bar", {}, "", vanilla_canonical("GET", "/", "%E1%88%B4=bar"),
       "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
      {"get-header-key-duplicate", "GET", "/", {{"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}},
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n\nhost;my-"
       "header1;x-amz-date\n" + kEmpty,
       "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
      {"get-header-value-multiline", "GET", "/", {{"My-Header1", "value1\n  value2\n     value3"}}, "",
       "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1 value2 value3\nx-amz-date:20150830T123600Z\n\nhost;my-"
       "header1;x-amz-date\n" + kEmpty,
       "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd"},
      {"get-header-value-order", "GET", "/",
       {{"My-Header1", "value4"}, {"My-Header1", "value1"}, {"My-Header1", "value3"}, {"My-Header1", "value2"}}, "",
       "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\nx-amz-date:20150830T123600Z\n\nhost;"
       "my-header1;x-amz-date\n" + kEmpty,
       "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
      {"get-header-value-trim", "GET", "/", {{"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}}, "",
       "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;"
       "my-header1;my-header2;x-amz-date\n" + kEmpty,
       "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
      {"get-space-normalized", "GET", "/example space/", {}, "", vanilla_canonical("GET", "/example%20space/", ""),
       "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
      {"get-space-unnormalized", "GET", "/example space/", {}, "", vanilla_canonical("GET", "/example%20space/", ""),
       "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741", false},
      {"get-unreserved", "GET", "/" + unreserved, {}, "", vanilla_canonical("GET", "/" + unreserved, ""),
       "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
      {"get-utf8", "GET", "/\xE1\x88\xB4", {}, "", vanilla_canonical("GET", "/%E1%88%B4", ""),
       "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
      {"get-relative-normalized", "GET", "/example/..", {}, "", vanilla_canonical("GET", "/", ""),
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-relative-unnormalized", "GET", "/example/..", {}, "", vanilla_canonical("GET", "/example/..", ""),
       "eca7ead57bb5aa5c8e28007acd4ff04e1ff9a0ff3b237ec1554a184887ff9282", false},
      {"get-relative-relative-normalized", "GET", "/example1/example2/../..", {}, "", vanilla_canonical("GET", "/", ""),
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-relative-relative-unnormalized", "GET", "/example1/example2/../..", {}, "",
       vanilla_canonical("GET", "/example1/example2/../..", ""),
       "dc33e0856fd4baca4d7aa2146c38958283844764f38c74252a333df5e613003b", false},
      {"get-slash-dot-slash-normalized", "GET", "/./", {}, "", vanilla_canonical("GET", "/", ""),
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-slash-dot-slash-unnormalized", "GET", "/./", {}, "", vanilla_canonical("GET", "/./", ""),
       "68714168e6557f8f2de0ef956fc24dc2593a4bd2961f8df51898d8a134695145", false},
      {"get-slash-normalized", "GET", "//", {}, "", vanilla_canonical("GET", "/", ""),
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-slash-unnormalized", "GET", "//", {}, "", vanilla_canonical("GET", "//", ""),
       "c88bcd3d312d75078c0cd961d6deae3f4c754924b01669efcfcb439fd5e5b76e", false},
      {"get-slash-pointless-dot-normalized", "GET", "/./example", {}, "", vanilla_canonical("GET", "/example", ""),
       "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5"},
      {"get-slash-pointless-dot-unnormalized", "GET", "/./example", {}, "", vanilla_canonical("GET", "/./example", ""),
       "beb03f223f7deae4146464f06e29eebbee9c8afbe15c290cf07aa8b119e14cff", false},
      {"get-slashes-normalized", "GET", "//example//", {}, "", vanilla_canonical("GET", "/example/", ""),
       "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"},
      {"get-slashes-unnormalized", "GET", "//example//", {}, "", vanilla_canonical("GET", "//example//", ""),
       "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5", false},
      {"get-vanilla-with-session-token", "GET", "/", {}, "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:"
       "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267\n\nhost;x-amz-date;x-amz-security-token\n" + kEmpty,
       "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8", true,
       "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"},
      {"post-vanilla", "POST", "/", {}, "", vanilla_canonical("POST", "/", ""),
       "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
      {"post-vanilla-query", "POST", "/?Param1=value1", {}, "", vanilla_canonical("POST", "/", "Param1=value1"),
       "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
      {"post-header-key-case", "POST", "/", {}, "", vanilla_canonical("POST", "/", ""),
       "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
      {"post-header-key-sort", "POST", "/", {{"My-Header1", "value1"}}, "",
       "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-"
       "date\n" + kEmpty,
       "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
      {"post-header-value-case", "POST", "/", {{"My-Header1", "VALUE1"}}, "",
       "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-"
       "date\n" + kEmpty,
       "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
      {"post-sts-header-before", "POST", "/", {}, "",
       "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:" + kStsToken +
           "\n\nhost;x-amz-date;x-amz-security-token\n" + kEmpty,
       "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead", true, kStsToken},
      {"post-x-www-form-urlencoded", "POST", "/",
       {{"Content-Type", "application/x-www-form-urlencoded"}, {"Content-Length", "13"}}, "Param1=value1",
       "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-"
       "content-sha256:" + form_hash + "\nx-amz-date:20150830T123600Z\n\ncontent-length;content-type;host;x-amz-content-"
       "sha256;x-amz-date\n" + form_hash,
       "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b", true, "", true},
      {"post-x-www-form-urlencoded-parameters", "POST", "/",
       {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}, {"Content-Length", "13"}}, "Param1=value1",
       "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\nhost:example."
       "amazonaws.com\nx-amz-content-sha256:" + form_hash + "\nx-amz-date:20150830T123600Z\n\ncontent-length;content-"
       "type;host;x-amz-content-sha256;x-amz-date\n" + form_hash,
       "328d1b9eaadca9f5818ef05e8392801e091653bafec24fcab71e7344e7f51422", true, "", true},
  };
}

TEST(SigV4Suite, CanonicalRequestSignatureAndAuthorization) {
  for (const auto& c : suite()) {
    SignableRequest req{.method = c.method, .target = c.target, .headers = {{"Host", "example.amazonaws.com"}}, .body = c.body};
    for (const auto& h : c.headers) req.headers.push_back(h);
    Credentials creds = kCreds;
    creds.session_token = c.token;
    const auto sig = sign(req, creds,
                          SigningParams{.region = "us-east-1", .service = "service", .time = kTime,
                                        .normalize_path = c.normalize, .add_content_sha256 = c.content_sha256});
    EXPECT_EQ(sig.canonical_request, c.canonical) << c.name;
    EXPECT_EQ(sig.signature, c.signature) << c.name;
    EXPECT_EQ(sig.authorization, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                                 "SignedHeaders=" + sig.signed_headers + ", Signature=" + c.signature)
        << c.name;
  }
}

TEST(SigV4Suite, StringToSignAndHeadersOfGetVanilla) {
  SignableRequest req{.method = "GET", .target = "/", .headers = {{"Host", "example.amazonaws.com"}}};
  const auto sig = sign(req, kCreds, SigningParams{.region = "us-east-1", .service = "service", .time = kTime});
  EXPECT_EQ(sig.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
  EXPECT_EQ(sig.amz_date, "20150830T123600Z");
  apply(req, sig);
  ASSERT_EQ(req.headers.size(), 3u);
  EXPECT_EQ(req.headers[1], (std::pair<std::string, std::string>{"X-Amz-Date", "20150830T123600Z"}));
  EXPECT_EQ(req.headers[2].first, "Authorization");
}

TEST(SigV4, SigningKeyOfTheDocumentationExample) {
  // docs.aws.amazon.com "Examples of how to derive a signing key for Signature Version 4".
  EXPECT_EQ(hex(signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

TEST(SigV4, ResigningReplacesDateTokenAndAuthorization) {
  SignableRequest req{.method = "POST", .target = "/", .headers = {{"Host", "h"}, {"x-amz-date", "19990101T000000Z"},
                                                                   {"authorization", "old"}, {"X-Amz-Security-Token", "old"}}};
  Credentials creds = kCreds;
  creds.session_token = "tok";
  const auto sig = sign(req, creds, SigningParams{.region = "r", .service = "s", .time = kTime});
  EXPECT_EQ(sig.signed_headers, "host;x-amz-date;x-amz-security-token");
  EXPECT_NE(sig.canonical_request.find("x-amz-date:20150830T123600Z\nx-amz-security-token:tok\n"), std::string::npos);
  apply(req, sig);
  int auth = 0;
  for (const auto& [k, v] : req.headers) auth += (k == "Authorization" || k == "authorization");
  EXPECT_EQ(auth, 1);
}

TEST(SigV4, HopByHopAndUserAgentAreNotSigned) {
  SignableRequest req{.method = "GET", .target = "/", .headers = {{"Host", "h"}, {"User-Agent", "ferry"},
                                                                  {"Connection", "keep-alive"}, {"Expect", "100-continue"}}};
  const auto sig = sign(req, kCreds, SigningParams{.region = "r", .service = "s", .time = kTime});
  EXPECT_EQ(sig.signed_headers, "host;x-amz-date");
}

TEST(SigV4, QueryCanonicalization) {
  EXPECT_EQ(canonical_query(""), "");
  EXPECT_EQ(canonical_query("b=2&a=1&&a=0"), "a=0&a=1&b=2");
  EXPECT_EQ(canonical_query("list-type&prefix=a%20b%2fc"), "list-type=&prefix=a%20b%2Fc");
  EXPECT_EQ(canonical_query("k=a+b"), "k=a%2Bb");
  EXPECT_EQ(canonical_query("bad=%zz&tail=%4"), "bad=%25zz&tail=%254");
  EXPECT_EQ(canonical_query("x=%7e%41"), "x=~A");
  EXPECT_EQ(canonical_query("a=b=c"), "a=b%3Dc");
}

TEST(SigV4, UriAndTrim) {
  EXPECT_EQ(canonical_uri("", true), "/");
  EXPECT_EQ(canonical_uri("/a b/\xC3\xBC+~", true), "/a%20b/%C3%BC%2B~");
  EXPECT_EQ(canonical_uri("/a%2Fb", true), "/a%252Fb");  // the wire path is encoded once more
  EXPECT_EQ(canonical_uri("/a/./b/../c/", true), "/a/c/");
  EXPECT_EQ(trim_all("  a \t b\n\nc  "), "a b c");
  EXPECT_EQ(trim_all(""), "");
  EXPECT_EQ(uri_encode("a/b c", false), "a%2Fb%20c");
  EXPECT_EQ(amz_date(kTime), "20150830T123600Z");
}

}  // namespace
}  // namespace ferry::aws
