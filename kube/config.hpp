// Where the Kubernetes API server is and how to authenticate: kubeconfig files (static
// credentials and exec credential plugins) and in-cluster config.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::kube {

// A kubeconfig user's `exec` stanza: a credential plugin (aws eks get-token,
// gke-gcloud-auth-plugin, kubelogin...) run as client-go's plugin/pkg/client/auth/exec runs it.
struct ExecConfig {
  std::string user;     // the kubeconfig user's name, for errors
  // As written, except that a relative path with a slash is resolved against the kubeconfig's
  // folder (a bare name is looked up on PATH when run).
  std::string command;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::string api_version;  // client.authentication.k8s.io/v1 or /v1beta1
  std::string install_hint;
  bool provide_cluster_info = false;
  // KUBERNETES_EXEC_INFO: the ExecCredential (spec.interactive false, spec.cluster when
  // provideClusterInfo), built when the kubeconfig is read.
  std::string exec_info;
};

struct ClusterConfig {
  std::string server;  // "https://10.0.0.1:443" or "http://127.0.0.1:8080"
  std::string ca_pem;  // PEM bundle; empty: system trust store
  bool insecure_skip_tls_verify = false;
  std::string client_cert_pem;  // client certificate authentication (with client_key_pem)
  std::string client_key_pem;
  std::string token;                 // static bearer token
  std::filesystem::path token_file;  // re-read when it changes (service-account token rotation)
  std::optional<ExecConfig> exec;    // credentials from a plugin; its token or certificate wins
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

// controller-runtime's order: `kubeconfig` (a flag) when set, else $KUBECONFIG, else the
// in-cluster configuration, else ~/.kube/config.
std::expected<ClusterConfig, std::string> load_default_config(const std::string& kubeconfig,
                                                              std::string_view context);

// What an exec plugin printed (an ExecCredential's status): a token, or a client certificate
// and key (PEM), or both; `expiry` unset: valid until the API server answers 401.
struct ExecCredential {
  std::string token;
  std::string client_cert_pem;
  std::string client_key_pem;
  std::optional<std::chrono::system_clock::time_point> expiry;
};
// Parses a plugin's stdout as client-go does: kind ExecCredential, the configured apiVersion, a
// status with a token or a certificate/key pair, expirationTimestamp in RFC 3339. Errors never
// quote the output (it holds the secret).
std::expected<ExecCredential, std::string> parse_exec_credential(std::string_view out,
                                                                 const ExecConfig& exec);

// Runs the plugin and returns its stdout, or why it failed (not found, exit status, signal,
// timeout). The default, run_exec_plugin, uses posix_spawn (PATH search for a bare name), stdin
// on /dev/null, stderr inherited, the environment plus `env` plus KUBERNETES_EXEC_INFO.
using ExecRunner = std::function<std::expected<std::string, std::string>(const ExecConfig&)>;
std::expected<std::string, std::string> run_exec_plugin(const ExecConfig& exec,
                                                        std::chrono::milliseconds timeout);

// What to authenticate a request with: a bearer token (may be empty) and, from an exec plugin,
// a client certificate that replaces the kubeconfig's. `generation` changes whenever the plugin
// ran again, so a holder can tell a fresh credential from the one that was refused.
struct Credential {
  std::string token;
  std::string client_cert_pem;
  std::string client_key_pem;
  std::uint64_t generation = 0;
};

// The credentials to send now:
// - the static token, or the token file's content, re-read when its modification time changes
//   or a minute has passed (kubelet rotates projected tokens);
// - with an exec plugin, its credential, cached until a little before its expirationTimestamp
//   (kRefreshMargin, or half its lifetime when that is shorter) and run again after
//   `invalidate` (the API server answered 401 to it). One plugin run at a time.
class TokenSource {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;
  static constexpr std::chrono::seconds kRefreshMargin{10};
  static constexpr std::chrono::seconds kExecTimeout{60};

  // `runner` and `clock` empty: run_exec_plugin and the system clock.
  explicit TokenSource(const ClusterConfig& config, ExecRunner runner = {}, Clock clock = {});

  // Errors name the kubeconfig user, the command and its installHint.
  std::expected<Credential, std::string> credential();
  // The bearer token alone (empty when the plugin fails); for static and file tokens.
  std::string token();
  // The API server refused the credential of `generation`: the next call runs the plugin again
  // (unless another caller already did). False when there is no plugin to ask.
  bool invalidate(std::uint64_t generation);
  bool uses_exec() const { return exec_.has_value(); }

 private:
  std::string static_token_;
  std::filesystem::path file_;
  std::optional<ExecConfig> exec_;
  ExecRunner runner_;
  Clock clock_;
  std::mutex mutex_;
  std::string cached_;
  std::filesystem::file_time_type mtime_{};
  std::chrono::steady_clock::time_point read_at_{};
  std::optional<ExecCredential> exec_cached_;
  std::chrono::system_clock::time_point refresh_at_{};
  std::uint64_t generation_ = 0;
};

}  // namespace ferry::kube
