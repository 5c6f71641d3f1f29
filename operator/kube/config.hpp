// Where the Kubernetes API server is and how to authenticate: kubeconfig files and in-cluster
// config.
#pragma once

#include <chrono>
#include <expected>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::kube {

struct ClusterConfig {
  std::string server;  // "https://10.0.0.1:443" or "http://127.0.0.1:8080"
  std::string ca_pem;  // PEM bundle; empty: system trust store
  bool insecure_skip_tls_verify = false;
  std::string client_cert_pem;  // client certificate authentication (with client_key_pem)
  std::string client_key_pem;
  std::string token;                 // static bearer token
  std::filesystem::path token_file;  // re-read when it changes (service-account token rotation)
  std::string default_namespace = "default";
  std::string context;  // the kubeconfig context used, for logs
};

// Parsed `server` URL.
struct ServerAddress {
  bool tls = true;
  std::string host;  // without brackets for IPv6
  std::string port;
  std::string base_path;  // without a trailing slash; usually empty
};
std::expected<ServerAddress, std::string> parse_server(std::string_view server);

// Reads a kubeconfig (YAML or JSON). `context` empty: the file's current-context. Relative file
// paths are resolved against the kubeconfig's directory; *-data fields are base64.
std::expected<ClusterConfig, std::string> load_kubeconfig(const std::filesystem::path& file,
                                                          std::string_view context = {});
// Same, from text already read (`dir` resolves relative paths).
std::expected<ClusterConfig, std::string> parse_kubeconfig(std::string_view text,
                                                           const std::filesystem::path& dir,
                                                           std::string_view context = {});

// The service-account config of a pod: KUBERNETES_SERVICE_HOST/PORT, the token and CA under
// `sa_dir` (/var/run/secrets/kubernetes.io/serviceaccount by default).
using EnvLookup = std::function<std::optional<std::string>(const char*)>;
std::expected<ClusterConfig, std::string> load_in_cluster(
    const EnvLookup& env,
    const std::filesystem::path& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

// The bearer token to send now: the static token, or the token file's content, re-read when
// its modification time changes or a minute has passed (kubelet rotates projected tokens).
class TokenSource {
 public:
  explicit TokenSource(const ClusterConfig& config);
  std::string token();

 private:
  std::string static_token_;
  std::filesystem::path file_;
  std::mutex mutex_;
  std::string cached_;
  std::filesystem::file_time_type mtime_{};
  std::chrono::steady_clock::time_point read_at_{};
};

}  // namespace ferry::kube
