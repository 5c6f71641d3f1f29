// Request building, response parsing and kubeconfig loading: pure, no sockets.
#include "kube/request.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "kube/config.hpp"
#include "reconcilers/model/clock.hpp"
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

// A kubeconfig with one cluster and a user whose `exec` stanza is `exec_yaml` (flow mapping).
std::string exec_kubeconfig(const std::string& exec_yaml) {
  return R"(apiVersion: v1
kind: Config
current-context: eks
clusters:
- name: eks-cluster
  cluster:
    server: https://eks.example:443
    certificate-authority-data: )" +
         model::encode_base64("EKS-CA") + R"(
    tls-server-name: api.eks.example
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: ferry}
contexts:
- name: eks
  context: {cluster: eks-cluster, user: eks-user}
users:
- name: eks-user
  user:
    exec: )" + exec_yaml + "\n";
}

TEST_F(KubeconfigTest, ExecStanzaIsReadAndKubernetesExecInfoBuilt) {
  auto c = parse_kubeconfig(exec_kubeconfig(R"({apiVersion: client.authentication.k8s.io/v1beta1,
      command: ./bin/get-token, args: [eks, get-token, --cluster-name, prod],
      env: [{name: AWS_PROFILE, value: prod}, {name: EMPTY}],
      installHint: "install the AWS CLI", provideClusterInfo: true})"),
                            dir_);
  ASSERT_TRUE(c) << c.error();
  ASSERT_TRUE(c->exec);
  const auto& e = *c->exec;
  EXPECT_EQ(e.user, "eks-user");
  EXPECT_EQ(e.command, (std::filesystem::absolute(dir_) / "bin/get-token").lexically_normal().string());
  EXPECT_EQ(e.args, (std::vector<std::string>{"eks", "get-token", "--cluster-name", "prod"}));
  ASSERT_EQ(e.env.size(), 2u);
  EXPECT_EQ(e.env[0], (std::pair<std::string, std::string>{"AWS_PROFILE", "prod"}));
  EXPECT_EQ(e.env[1], (std::pair<std::string, std::string>{"EMPTY", ""}));
  EXPECT_EQ(e.install_hint, "install the AWS CLI");
  EXPECT_TRUE(e.provide_cluster_info);
  EXPECT_EQ(json::parse(e.exec_info),
            json::parse(R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential",
              "spec":{"interactive":false,"cluster":{"server":"https://eks.example:443",
              "tls-server-name":"api.eks.example","certificate-authority-data":")" +
                        model::encode_base64("EKS-CA") + R"(","config":{"audience":"ferry"}}}})"));

  // A bare name is looked up on PATH when run; no cluster without provideClusterInfo; v1 with
  // interactiveMode Never or IfAvailable.
  for (const char* mode : {"Never", "IfAvailable"}) {
    auto bare = parse_kubeconfig(exec_kubeconfig(std::string(R"({apiVersion: client.authentication.k8s.io/v1,
        command: aws, interactiveMode: )") + mode + "}"),
                                 dir_);
    ASSERT_TRUE(bare) << bare.error();
    EXPECT_EQ(bare->exec->command, "aws");
    EXPECT_TRUE(bare->exec->args.empty());
    EXPECT_EQ(json::parse(bare->exec->exec_info),
              json::parse(R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
                "spec":{"interactive":false}})"));
  }
  // An absolute command stays as written.
  auto abs = parse_kubeconfig(
      exec_kubeconfig("{apiVersion: client.authentication.k8s.io/v1beta1, command: /usr/bin/gke-auth}"), dir_);
  ASSERT_TRUE(abs) << abs.error();
  EXPECT_EQ(abs->exec->command, "/usr/bin/gke-auth");
}

TEST_F(KubeconfigTest, ExecStanzaErrorsNameTheUser) {
  const struct {
    std::string exec, want;
  } cases[] = {
      {"{apiVersion: client.authentication.k8s.io/v1beta1}", "command is required"},
      {"{command: aws}", "apiVersion is required"},
      {"{command: aws, apiVersion: client.authentication.k8s.io/v1alpha1}",
       "apiVersion \"client.authentication.k8s.io/v1alpha1\" is not supported"},
      {"{command: aws, apiVersion: client.authentication.k8s.io/v1}",
       "interactiveMode is required with client.authentication.k8s.io/v1"},
      {"{command: aws, apiVersion: client.authentication.k8s.io/v1, interactiveMode: Always}",
       "interactiveMode Always needs a terminal"},
      {"{command: aws, apiVersion: client.authentication.k8s.io/v1beta1, interactiveMode: Sometimes}",
       "interactiveMode \"Sometimes\" is not"},
      {"{command: aws, apiVersion: client.authentication.k8s.io/v1beta1, env: [{value: x}]}",
       "env entry without a name"},
      {"{command: aws, apiVersion: client.authentication.k8s.io/v1beta1, args: get-token}",
       "args must be a list of strings"},
      {"aws", "exec must be a mapping"},
  };
  for (const auto& c : cases) {
    auto got = parse_kubeconfig(exec_kubeconfig(c.exec), dir_);
    ASSERT_FALSE(got) << c.exec;
    EXPECT_TRUE(got.error().starts_with("kubeconfig: user \"eks-user\": exec")) << got.error();
    EXPECT_NE(got.error().find(c.want), std::string::npos) << got.error();
  }
  const std::string provider = R"(apiVersion: v1
current-context: c
clusters: [{name: c, cluster: {server: "https://x"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {auth-provider: {name: gcp}}}]
)";
  auto got = parse_kubeconfig(provider, dir_);
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().find("auth-provider"), std::string::npos) << got.error();
}

ExecConfig exec_config(std::string api_version = "client.authentication.k8s.io/v1beta1") {
  ExecConfig e;
  e.user = "eks-user";
  e.command = "aws";
  e.api_version = std::move(api_version);
  return e;
}

TEST(ExecCredential, StatusIsParsedAndRefusalsKeepTheSecretOut) {
  const auto e = exec_config();
  auto tok = parse_exec_credential(R"({"apiVersion":"client.authentication.k8s.io/v1beta1",
      "kind":"ExecCredential","spec":{},"status":{"token":"s3cr3t",
      "expirationTimestamp":"2030-01-02T03:04:05Z"}})",
                                   e);
  ASSERT_TRUE(tok) << tok.error();
  EXPECT_EQ(tok->token, "s3cr3t");
  EXPECT_TRUE(tok->client_cert_pem.empty());
  ASSERT_TRUE(tok->expiry);
  EXPECT_EQ(*tok->expiry, *model::parse_rfc3339("2030-01-02T03:04:05Z"));

  auto cert = parse_exec_credential(R"({"apiVersion":"client.authentication.k8s.io/v1",
      "kind":"ExecCredential","status":{"clientCertificateData":"CERT","clientKeyData":"KEY"}})",
                                    exec_config("client.authentication.k8s.io/v1"));
  ASSERT_TRUE(cert) << cert.error();
  EXPECT_EQ(cert->client_cert_pem, "CERT");
  EXPECT_EQ(cert->client_key_pem, "KEY");
  EXPECT_TRUE(cert->token.empty());
  EXPECT_FALSE(cert->expiry);

  const struct {
    std::string out, want;
  } bad[] = {
      {"token: s3cr3t", "not JSON"},
      {R"(["s3cr3t"])", "not a JSON object"},
      {R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"Secret","status":{"token":"s3cr3t"}})",
       "kind \"Secret\""},
      {R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"s3cr3t"}})",
       "configured to use API version client.authentication.k8s.io/v1beta1 and printed version "
       "\"client.authentication.k8s.io/v1\""},
      {R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential"})", "no status"},
      {R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{}})",
       "neither a token nor a certificate"},
      {R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential",
          "status":{"clientCertificateData":"s3cr3t"}})",
       "a certificate or a key, not both"},
      {R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential",
          "status":{"token":"s3cr3t","expirationTimestamp":"tomorrow"}})",
       "expirationTimestamp"},
  };
  for (const auto& b : bad) {
    auto got = parse_exec_credential(b.out, e);
    ASSERT_FALSE(got) << b.out;
    EXPECT_NE(got.error().find(b.want), std::string::npos) << got.error();
    EXPECT_EQ(got.error().find("s3cr3t"), std::string::npos) << got.error();
  }
}

// A plugin double: counts its runs and prints a token expiring `lifetime` after the fake now.
struct FakePlugin {
  std::chrono::system_clock::time_point now = *model::parse_rfc3339("2030-01-01T00:00:00Z");
  std::optional<std::chrono::seconds> lifetime = std::chrono::minutes(15);
  int runs = 0;
  std::optional<std::string> fail;  // set: the next runs fail with this

  ClusterConfig config() {
    ClusterConfig c;
    c.server = "https://eks.example";
    c.exec = exec_config();
    c.exec->install_hint = "see https://example/install";
    return c;
  }
  TokenSource source() {
    return TokenSource(
        config(),
        [this](const ExecConfig&) -> std::expected<std::string, std::string> {
          ++runs;
          if (fail) return std::unexpected(*fail);
          json::object status{{"token", "token-" + std::to_string(runs)}};
          if (lifetime) status["expirationTimestamp"] = model::format_rfc3339(now + *lifetime);
          return json::serialize(json::object{{"apiVersion", "client.authentication.k8s.io/v1beta1"},
                                              {"kind", "ExecCredential"},
                                              {"status", std::move(status)}});
        },
        [this] { return now; });
  }
};

TEST(ExecTokenSource, CachedUntilShortlyBeforeExpiry) {
  FakePlugin p;
  auto tokens = p.source();
  EXPECT_TRUE(tokens.uses_exec());
  auto first = tokens.credential();
  ASSERT_TRUE(first) << first.error();
  EXPECT_EQ(first->token, "token-1");
  for (int i = 0; i < 50; ++i) {
    p.now += std::chrono::seconds(10);  // 500 s of requests
    EXPECT_EQ(tokens.credential()->token, "token-1");
  }
  EXPECT_EQ(p.runs, 1);
  p.now = *model::parse_rfc3339("2030-01-01T00:14:49Z");  // 11 s before expiry: still good
  EXPECT_EQ(tokens.credential()->token, "token-1");
  p.now += std::chrono::seconds(2);  // 9 s before expiry: refreshed (kRefreshMargin is 10 s)
  auto second = tokens.credential();
  EXPECT_EQ(second->token, "token-2");
  EXPECT_NE(second->generation, first->generation);
  EXPECT_EQ(p.runs, 2);
  EXPECT_EQ(tokens.token(), "token-2");
}

TEST(ExecTokenSource, ShortLivedRefreshedAtHalfLifeAndNoExpiryKeptUntilInvalidated) {
  FakePlugin p;
  p.lifetime = std::chrono::seconds(4);
  auto tokens = p.source();
  EXPECT_EQ(tokens.credential()->token, "token-1");
  p.now += std::chrono::seconds(1);
  EXPECT_EQ(tokens.credential()->token, "token-1");
  p.now += std::chrono::seconds(1);  // half of 4 s
  EXPECT_EQ(tokens.credential()->token, "token-2");

  FakePlugin forever;
  forever.lifetime.reset();
  auto t2 = forever.source();
  auto c = t2.credential();
  forever.now += std::chrono::hours(24 * 365);
  EXPECT_EQ(t2.credential()->token, "token-1");
  EXPECT_EQ(forever.runs, 1);
  // A 401: the refused generation is dropped, once; a late 401 for it changes nothing.
  EXPECT_TRUE(t2.invalidate(c->generation));
  auto fresh = t2.credential();
  EXPECT_EQ(fresh->token, "token-2");
  EXPECT_TRUE(t2.invalidate(c->generation));
  EXPECT_EQ(t2.credential()->token, "token-2");
  EXPECT_EQ(forever.runs, 2);
}

TEST(ExecTokenSource, FailuresNameUserCommandAndHintAndAreRetried) {
  FakePlugin p;
  p.fail = "exited with status 255";
  auto tokens = p.source();
  auto got = tokens.credential();
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(),
            "kubeconfig user \"eks-user\": exec plugin \"aws\": exited with status 255; see "
            "https://example/install");
  EXPECT_EQ(tokens.token(), "");  // runs it again, fails again
  p.fail.reset();
  EXPECT_EQ(tokens.credential()->token, "token-3");  // a failed run is not cached
  EXPECT_EQ(p.runs, 3);

  ClusterConfig plain;
  plain.token = "static";
  TokenSource st(plain);
  EXPECT_FALSE(st.uses_exec());
  EXPECT_FALSE(st.invalidate(0));
  EXPECT_EQ(st.credential()->token, "static");
}

// The real runner on a shell script: KUBERNETES_EXEC_INFO and the stanza's env reach it, stdin
// is not connected, arguments are passed, a failure is reported by exit status.
TEST_F(KubeconfigTest, PluginRunWithExecInfoEnvAndArgs) {
  write("plugin.sh", R"(#!/bin/sh
if [ "$1" = fail ]; then echo "plugin says no" >&2; exit 3; fi
input=$(cat)
printf '%s' "$KUBERNETES_EXEC_INFO" > "$0.info"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s|%s|%s"}}' "$1" "$FERRY_TEST_VAR" "$input"
)");
  std::filesystem::permissions(dir_ / "plugin.sh", std::filesystem::perms::owner_all);
  write("kubeconfig", R"(apiVersion: v1
current-context: c
clusters: [{name: c, cluster: {server: "https://x.example", insecure-skip-tls-verify: true}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users:
- name: u
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never, command: ./plugin.sh,
           args: [hello], env: [{name: FERRY_TEST_VAR, value: "a b"}], provideClusterInfo: true}
)");
  auto c = load_kubeconfig(dir_ / "kubeconfig");
  ASSERT_TRUE(c) << c.error();
  TokenSource tokens(*c);
  auto cred = tokens.credential();
  ASSERT_TRUE(cred) << cred.error();
  EXPECT_EQ(cred->token, "hello|a b|");  // args, env, and nothing on stdin
  std::ifstream info_file(dir_ / "plugin.sh.info");
  const std::string info((std::istreambuf_iterator<char>(info_file)), {});
  EXPECT_EQ(json::parse(info),
            json::parse(R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
              "spec":{"interactive":false,"cluster":{"server":"https://x.example",
              "insecure-skip-tls-verify":true}}})"));

  auto failing = c->exec;
  failing->args = {"fail"};
  auto out = run_exec_plugin(*failing, std::chrono::seconds(10));
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error(), "exited with status 3");
  failing->command = "ferry-no-such-plugin";
  out = run_exec_plugin(*failing, std::chrono::seconds(10));
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error(), "executable not found on PATH");

  write("slow.sh", "#!/bin/sh\nexec sleep 30\n");
  std::filesystem::permissions(dir_ / "slow.sh", std::filesystem::perms::owner_all);
  failing->command = (dir_ / "slow.sh").string();
  const auto t0 = std::chrono::steady_clock::now();
  out = run_exec_plugin(*failing, std::chrono::milliseconds(300));
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error(), "did not finish within 300ms");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

}  // namespace
}  // namespace ferry::kube
