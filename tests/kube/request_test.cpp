// Request building, response parsing and kubeconfig loading: pure, no sockets.
#include "operator/kube/request.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>

#include "operator/kube/config.hpp"
#include "reconcilers/model/secret_data.hpp"

namespace ferry::kube {
namespace {

namespace json = boost::json;

TEST(ResourcePath, CoreGroupNamedGroupScopesAndSubresources) {
  struct Case {
    ResourceType type;
    std::string ns, name, sub, want;
  };
  const Case cases[] = {
      {replication_configs(), "", "", "", "/apis/ferry.dev/v1alpha1/replicationconfigs"},
      {replication_configs(), "ignored", "a", "status",
       "/apis/ferry.dev/v1alpha1/replicationconfigs/a/status"},
      {secrets(), "ferry-system", "creds", "", "/api/v1/namespaces/ferry-system/secrets/creds"},
      {secrets(), "", "", "", "/api/v1/secrets"},
      {leases(), "ferry-system", "ferry-leader", "",
       "/apis/coordination.k8s.io/v1/namespaces/ferry-system/leases/ferry-leader"},
      {events(), "default", "", "", "/apis/events.k8s.io/v1/namespaces/default/events"},
  };
  for (const auto& c : cases) EXPECT_EQ(resource_path(c.type, c.ns, c.name, c.sub), c.want);
}

TEST(Requests, ListWatchAndWrites) {
  ListParams lp;
  lp.limit = 2;
  lp.continue_token = "a b&c";
  lp.label_selector = "app=x";
  EXPECT_EQ(list_request(registries(), "", lp).target,
            "/apis/ferry.dev/v1alpha1/registries?limit=2&continue=a%20b%26c&labelSelector=app=x");
  WatchParams wp;
  wp.resource_version = "42";
  wp.timeout_seconds = 60;
  auto w = watch_request(registries(), "", wp);
  EXPECT_EQ(w.method, "GET");
  EXPECT_EQ(w.target,
            "/apis/ferry.dev/v1alpha1/"
            "registries?watch=true&resourceVersion=42&allowWatchBookmarks=true&timeoutSeconds=60");
  WatchParams fresh;
  fresh.allow_bookmarks = false;
  fresh.timeout_seconds = 0;
  EXPECT_EQ(watch_request(registries(), "", fresh).target,
            "/apis/ferry.dev/v1alpha1/registries?watch=true");

  json::value obj = {{"metadata", {{"name", "x"}, {"resourceVersion", "7"}}},
                     {"status", json::object{}}};
  auto put = replace_request(registries(), "", "x", obj, "status");
  EXPECT_EQ(put.method, "PUT");
  EXPECT_EQ(put.target, "/apis/ferry.dev/v1alpha1/registries/x/status");
  EXPECT_EQ(put.content_type, "application/json");
  EXPECT_EQ(json::parse(put.body), obj);
  auto patch =
      merge_patch_request(registries(), "", "x", json::value{{"status", {{"a", 1}}}}, "status");
  EXPECT_EQ(patch.method, "PATCH");
  EXPECT_EQ(patch.content_type, "application/merge-patch+json");
  auto post = create_request(leases(), "ns", obj);
  EXPECT_EQ(post.method, "POST");
  EXPECT_EQ(post.target, "/apis/coordination.k8s.io/v1/namespaces/ns/leases");
  auto del = delete_request(image_replications(), "", "r-1");
  EXPECT_EQ(del.method, "DELETE");
  EXPECT_EQ(del.target, "/apis/ferry.dev/v1alpha1/imagereplications/r-1?propagationPolicy=Background");
  EXPECT_TRUE(del.body.empty());
  EXPECT_EQ(get_request(config_maps(), "ferry-system", "ferry-state-effective").target,
            "/api/v1/namespaces/ferry-system/configmaps/ferry-state-effective");
}

TEST(Responses, StatusErrorsAreRead) {
  auto e = api_error(
      409,
      R"({"kind":"Status","code":409,"reason":"Conflict","message":"the object has been modified"})");
  EXPECT_TRUE(e.conflict());
  EXPECT_FALSE(e.already_exists());
  EXPECT_EQ(e.to_string(), "409 Conflict: the object has been modified");
  EXPECT_TRUE(api_error(409, R"({"reason":"AlreadyExists"})").already_exists());
  auto plain = api_error(502, "bad gateway");
  EXPECT_EQ(plain.message, "bad gateway");
  EXPECT_TRUE(api_error(404, "{}").not_found());
}

TEST(WatchStream, LinesAcrossChunksAndEvents) {
  LineSplitter s;
  EXPECT_TRUE(s.feed(R"({"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"5"}}})")
                  .empty());
  auto lines = s.feed(
      "\n{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}\r\n{\"ty");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(s.pending(), 4u);
  auto ev = parse_watch_event(lines[0]);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->type, "ADDED");
  EXPECT_EQ(name_of(ev->object), "a");
  EXPECT_EQ(ev->resource_version(), "5");
  EXPECT_EQ(parse_watch_event(lines[1])->resource_version(), "9");
  std::string err;
  EXPECT_FALSE(parse_watch_event("{\"type\":1}", &err));
  EXPECT_FALSE(err.empty());
  EXPECT_FALSE(parse_watch_event("not json"));
}

TEST(ServerAddress, Parsed) {
  auto a = parse_server("https://10.0.0.1");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->tls);
  EXPECT_EQ(a->port, "443");
  auto b = parse_server("http://127.0.0.1:8001/prefix/");
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->tls);
  EXPECT_EQ(b->port, "8001");
  EXPECT_EQ(b->base_path, "/prefix");
  auto c = parse_server("https://[::1]:6443");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "::1");
  EXPECT_FALSE(parse_server("ftp://x"));
  EXPECT_FALSE(parse_server("not a url"));
}

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() /
        ("ferry-kubeconfig-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
         "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::filesystem::path dir_;
};

TEST_F(KubeconfigTest, CurrentContextDataFieldsAndFiles) {
  write("ca.pem", "CA-PEM");
  write("token", "file-token\n");
  const std::string text = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev-cluster
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: ca.pem}
- name: prod-cluster
  cluster: {server: "https://prod:443", certificate-authority-data: )" +
                           model::encode_base64("PROD-CA") + R"(, insecure-skip-tls-verify: true}
contexts:
- name: dev
  context: {cluster: dev-cluster, user: dev-user, namespace: team}
- name: prod
  context: {cluster: prod-cluster, user: prod-user}
users:
- name: dev-user
  user: {tokenFile: token}
- name: prod-user
  user: {client-certificate-data: )" +
                           model::encode_base64("CERT") +
                           ", client-key-data: " + model::encode_base64("KEY") +
                           R"(}
)";
  auto dev = parse_kubeconfig(text, dir_);
  ASSERT_TRUE(dev) << dev.error();
  EXPECT_EQ(dev->context, "dev");
  EXPECT_EQ(dev->server, "https://127.0.0.1:6443");
  EXPECT_EQ(dev->ca_pem, "CA-PEM");
  EXPECT_EQ(dev->default_namespace, "team");
  EXPECT_EQ(dev->token_file, dir_ / "token");
  EXPECT_EQ(TokenSource(*dev).token(), "file-token");
  auto prod = parse_kubeconfig(text, dir_, "prod");
  ASSERT_TRUE(prod) << prod.error();
  EXPECT_EQ(prod->ca_pem, "PROD-CA");
  EXPECT_TRUE(prod->insecure_skip_tls_verify);
  EXPECT_EQ(prod->client_cert_pem, "CERT");
  EXPECT_EQ(prod->client_key_pem, "KEY");
  auto missing = parse_kubeconfig(text, dir_, "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), "kubeconfig: context \"nope\" not found");
}

TEST_F(KubeconfigTest, JsonAsTheDoubleWritesItAndStaticToken) {
  const std::string text = R"({"apiVersion":"v1","kind":"Config","current-context":"double",
    "clusters":[{"name":"double","cluster":{"server":"http://127.0.0.1:1234"}}],
    "contexts":[{"name":"double","context":{"cluster":"double","user":"u","namespace":"default"}}],
    "users":[{"name":"u","user":{"token":"t0k"}}]})";
  auto c = parse_kubeconfig(text, dir_);
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(TokenSource(*c).token(), "t0k");
  EXPECT_TRUE(c->ca_pem.empty());
}

TEST_F(KubeconfigTest, InClusterReadsServiceAccountAndRereadsRotatedToken) {
  write("token", "one");
  write("ca.crt", "CLUSTER-CA");
  write("namespace", "ferry-system");
  auto env = [](const char* k) -> std::optional<std::string> {
    if (std::string_view(k) == "KUBERNETES_SERVICE_HOST") return "10.96.0.1";
    if (std::string_view(k) == "KUBERNETES_SERVICE_PORT") return "443";
    return std::nullopt;
  };
  auto c = load_in_cluster(env, dir_);
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->server, "https://10.96.0.1:443");
  EXPECT_EQ(c->ca_pem, "CLUSTER-CA");
  EXPECT_EQ(c->default_namespace, "ferry-system");
  TokenSource tokens(*c);
  EXPECT_EQ(tokens.token(), "one");
  write("token", "two");
  std::filesystem::last_write_time(
      dir_ / "token", std::filesystem::last_write_time(dir_ / "token") + std::chrono::seconds(5));
  EXPECT_EQ(tokens.token(), "two");
  auto none = load_in_cluster([](const char*) { return std::optional<std::string>(); }, dir_);
  EXPECT_FALSE(none);
}

}  // namespace
}  // namespace ferry::kube
