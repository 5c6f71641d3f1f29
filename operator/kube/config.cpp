// Kubeconfig and in-cluster configuration loading; pure apart from reading the files named.
#include "operator/kube/config.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <fstream>
#include <sstream>

#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/secret_data.hpp"

namespace ferry::kube {

namespace json = boost::json;

namespace {

std::expected<std::string, std::string> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::unexpected("cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const json::object* find_named(const json::object& root, std::string_view list,
                               std::string_view name, std::string_view field) {
  const auto* arr = root.if_contains(list);
  if (!arr || !arr->is_array()) return nullptr;
  for (const auto& e : arr->as_array()) {
    const auto* o = e.if_object();
    if (!o) continue;
    const auto* n = o->if_contains("name");
    if (n && n->is_string() && n->as_string() == name) {
      const auto* inner = o->if_contains(field);
      return inner ? inner->if_object() : nullptr;
    }
  }
  return nullptr;
}

std::string str(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// `<key>-data` (base64) or `<key>` (a file path); empty when neither is set.
std::expected<std::string, std::string> data_or_file(const json::object& o, const std::string& key,
                                                     const std::filesystem::path& dir) {
  if (auto data = str(o, key + "-data"); !data.empty()) {
    auto decoded = model::decode_base64(data);
    if (!decoded) return std::unexpected(key + "-data is not valid base64");
    return *decoded;
  }
  if (auto file = str(o, key); !file.empty()) {
    std::filesystem::path p(file);
    if (p.is_relative()) p = dir / p;
    return read_file(p);
  }
  return std::string();
}

}  // namespace

std::expected<ServerAddress, std::string> parse_server(std::string_view server) {
  auto url = boost::urls::parse_absolute_uri(server);
  if (!url) return std::unexpected("server \"" + std::string(server) + "\" is not an absolute URL");
  ServerAddress a;
  if (url->scheme() == "https") {
    a.tls = true;
  } else if (url->scheme() == "http") {
    a.tls = false;
  } else {
    return std::unexpected("server \"" + std::string(server) + "\": scheme must be http or https");
  }
  a.host = url->host_address();
  if (a.host.empty()) return std::unexpected("server \"" + std::string(server) + "\" has no host");
  a.port = url->has_port() ? std::string(url->port()) : (a.tls ? "443" : "80");
  a.base_path = url->path();
  while (!a.base_path.empty() && a.base_path.back() == '/') a.base_path.pop_back();
  return a;
}

std::expected<ClusterConfig, std::string> parse_kubeconfig(std::string_view text,
                                                           const std::filesystem::path& dir,
                                                           std::string_view context) {
  auto docs = model::load_documents(text, model::Format::Yaml);
  if (!docs) return std::unexpected("kubeconfig: " + docs.error().message);
  if (docs->empty() || !docs->front().is_object())
    return std::unexpected("kubeconfig: not a mapping");
  const auto& root = docs->front().as_object();
  std::string ctx_name(context);
  if (ctx_name.empty()) ctx_name = str(root, "current-context");
  if (ctx_name.empty())
    return std::unexpected("kubeconfig: no current-context and no --context given");
  const auto* ctx = find_named(root, "contexts", ctx_name, "context");
  if (!ctx) return std::unexpected("kubeconfig: context \"" + ctx_name + "\" not found");
  ClusterConfig c;
  c.context = ctx_name;
  if (auto ns = str(*ctx, "namespace"); !ns.empty()) c.default_namespace = ns;
  const auto cluster_name = str(*ctx, "cluster");
  const auto* cluster = find_named(root, "clusters", cluster_name, "cluster");
  if (!cluster) return std::unexpected("kubeconfig: cluster \"" + cluster_name + "\" not found");
  c.server = str(*cluster, "server");
  if (c.server.empty())
    return std::unexpected("kubeconfig: cluster \"" + cluster_name + "\" has no server");
  if (auto s = parse_server(c.server); !s) return std::unexpected("kubeconfig: " + s.error());
  if (const auto* v = cluster->if_contains("insecure-skip-tls-verify"); v && v->is_bool()) {
    c.insecure_skip_tls_verify = v->as_bool();
  }
  auto ca = data_or_file(*cluster, "certificate-authority", dir);
  if (!ca) return std::unexpected("kubeconfig: " + ca.error());
  c.ca_pem = *ca;
  if (const auto user_name = str(*ctx, "user"); !user_name.empty()) {
    const auto* user = find_named(root, "users", user_name, "user");
    if (!user) return std::unexpected("kubeconfig: user \"" + user_name + "\" not found");
    auto cert = data_or_file(*user, "client-certificate", dir);
    if (!cert) return std::unexpected("kubeconfig: " + cert.error());
    auto key = data_or_file(*user, "client-key", dir);
    if (!key) return std::unexpected("kubeconfig: " + key.error());
    c.client_cert_pem = *cert;
    c.client_key_pem = *key;
    if (c.client_cert_pem.empty() != c.client_key_pem.empty()) {
      return std::unexpected("kubeconfig: user \"" + user_name +
                             "\" needs both client-certificate and client-key");
    }
    c.token = str(*user, "token");
    if (auto tf = str(*user, "tokenFile"); !tf.empty() && c.token.empty()) {
      std::filesystem::path p(tf);
      c.token_file = p.is_relative() ? dir / p : p;
    }
    if (user->contains("exec") || user->contains("auth-provider")) {
      return std::unexpected("kubeconfig: user \"" + user_name +
                             "\" uses exec/auth-provider credentials, which Ferry does not run");
    }
  }
  return c;
}

std::expected<ClusterConfig, std::string> load_kubeconfig(const std::filesystem::path& file,
                                                          std::string_view context) {
  auto text = read_file(file);
  if (!text) return std::unexpected(text.error());
  return parse_kubeconfig(*text, file.parent_path(), context);
}

std::expected<ClusterConfig, std::string> load_in_cluster(const EnvLookup& env,
                                                          const std::filesystem::path& sa_dir) {
  auto host = env("KUBERNETES_SERVICE_HOST");
  auto port = env("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty() || !port || port->empty()) {
    return std::unexpected(
        "not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset); pass --kubeconfig");
  }
  ClusterConfig c;
  c.context = "in-cluster";
  const bool v6 = host->find(':') != std::string::npos;
  c.server = "https://" + (v6 ? "[" + *host + "]" : *host) + ":" + *port;
  c.token_file = sa_dir / "token";
  if (!std::filesystem::exists(c.token_file)) {
    return std::unexpected("in-cluster: " + c.token_file.string() + " does not exist");
  }
  auto ca = read_file(sa_dir / "ca.crt");
  if (!ca) return std::unexpected("in-cluster: " + ca.error());
  c.ca_pem = *ca;
  if (auto ns = read_file(sa_dir / "namespace"); ns && !ns->empty()) c.default_namespace = *ns;
  return c;
}

TokenSource::TokenSource(const ClusterConfig& config)
    : static_token_(config.token), file_(config.token_file) {}

std::string TokenSource::token() {
  if (file_.empty()) return static_token_;
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(file_, ec);
  if (cached_.empty() || (!ec && mtime != mtime_) || now - read_at_ > std::chrono::minutes(1)) {
    if (auto t = read_file(file_)) {
      cached_ = *t;
      while (!cached_.empty() && (cached_.back() == '\n' || cached_.back() == '\r'))
        cached_.pop_back();
      mtime_ = mtime;
      read_at_ = now;
    }
  }
  return cached_;
}

}  // namespace ferry::kube
