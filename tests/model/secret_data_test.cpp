// Secret payloads: registry credentials in both supported shapes, and TLS CA bundles.
#include "reconcilers/model/secret_data.hpp"

#include <gtest/gtest.h>

namespace ferry::model {
namespace {

Secret secret(std::string type, std::map<std::string, std::string> data) {
  Secret s;
  s.metadata.name = "s";
  s.metadata.namespace_ = "ferry-system";
  s.type = std::move(type);
  s.data = std::move(data);
  return s;
}

TEST(SecretData, UsernamePasswordKeysServeAnyHost) {
  auto c = credentials_from_secret(secret("Opaque", {{"username", "robot"}, {"password", "p4ss"}}), "r.example:5000");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->username, "robot");
  EXPECT_EQ(c->password, "p4ss");
  EXPECT_FALSE(credentials_from_secret(secret("Opaque", {{"username", "robot"}}), "r.example:5000"));
}

TEST(SecretData, DockerConfigJsonIsMatchedByHostWithOrWithoutScheme) {
  const std::string auth = encode_base64("robot:p4ss");
  auto s = secret("kubernetes.io/dockerconfigjson",
                  {{".dockerconfigjson", R"({"auths":{"https://r.example:5000":{"auth":")" + auth + R"("}}})"}});
  auto c = credentials_from_secret(s, "r.example:5000");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->username, "robot");
  EXPECT_EQ(c->password, "p4ss");
  EXPECT_FALSE(credentials_from_secret(s, "other.example:5000"));
}

// Found by tests/fuzz (fuzz_docker_config), as in the registry's decoder: padding is at most
// "==" and only at the end, never read as zero bytes.
TEST(SecretData, Base64PaddingIsAtMostTwoAtTheEnd) {
  EXPECT_FALSE(decode_base64(std::string(104, '=') + "\r"));
  EXPECT_FALSE(decode_base64("===="));
  EXPECT_FALSE(decode_base64("YW==YWI="));
  EXPECT_EQ(decode_base64("YQ=="), "a");
  auto s = secret("kubernetes.io/dockerconfigjson", {{".dockerconfigjson", R"({"auths":{"x":{"auth":"========"}}})"}});
  EXPECT_FALSE(credentials_from_secret(s, "x"));
}

TEST(SecretData, CaBundleKeysInOrderOfPreference) {
  EXPECT_EQ(ca_bundle_from_secret(secret("Opaque", {{"ca.crt", "A"}, {"ca.pem", "B"}, {"tls.crt", "C"}})), "A");
  EXPECT_EQ(ca_bundle_from_secret(secret("Opaque", {{"ca.pem", "B"}, {"tls.crt", "C"}})), "B");
  EXPECT_EQ(ca_bundle_from_secret(secret("kubernetes.io/tls", {{"tls.crt", "C"}, {"tls.key", "K"}})), "C");
  EXPECT_FALSE(ca_bundle_from_secret(secret("Opaque", {{"ca", "A"}})));
}

}  // namespace
}  // namespace ferry::model
