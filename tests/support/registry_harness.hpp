// Test harness for the registry layer: real docker-registry processes on free loopback
// ports, Python helpers (token issuer, fault proxy, image builder) and skopeo, each started
// in a fresh temp dir and stopped by its PID when the owning object goes away.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ferry::testing {

// A fresh directory under /tmp, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A child process stopped by its PID (SIGTERM, then SIGKILL) on destruction.
class Process {
 public:
  // Starts argv with stdout+stderr appended to log_path. When read_port is set, the child's
  // first stdout line (a port number) is read back before returning.
  Process(std::vector<std::string> argv, const std::string& log_path, bool read_port = false);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  void stop();

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

// A kube-apiserver + etcd with Ferry's CRDs applied by real kubectl and the ferry-system
// namespace (tests/support/kube_control_plane.py under `dir`), stopped with this object. The
// constructor waits for it (up to 120 s) and throws with its log when it does not come up.
class ControlPlane {
 public:
  explicit ControlPlane(const std::string& dir);
  const std::string& kubeconfig() const { return kubeconfig_; }

 private:
  std::string kubeconfig_;
  std::unique_ptr<Process> process_;
};

// A loopback port that was free a moment ago (bind to port 0, read it back, close).
int free_port();
// Waits until something accepts on 127.0.0.1:port.
bool wait_for_port(int port, int timeout_ms = 15000);

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout (add 2>&1 to the command for stderr)
};
CommandResult run(const std::string& shell_command);
std::string shell_quote(const std::string& s);
std::string support_dir();  // tests/support in the source tree

struct RegistryOptions {
  std::string htpasswd_user;  // Basic auth with this user (bcrypt htpasswd)
  std::string htpasswd_password;
  bool tls = false;           // serve HTTPS with a cert from a CA made for this registry
  std::string token_realm;    // `auth: token` when set
  std::string token_service = "ferry-test";
  std::string token_issuer = "ferry-test-issuer";
  std::string token_rootcert;
};

class Registry {
 public:
  explicit Registry(RegistryOptions options = {});
  ~Registry();
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  const std::string& ca_file() const { return ca_file_; }  // when tls
  std::string dir() const { return dir_.path().string(); }
  std::string skopeo_flags() const;  // TLS/creds flags for skopeo against this registry

 private:
  TempDir dir_;
  int port_ = 0;
  std::string ca_file_;
  RegistryOptions options_;
  std::unique_ptr<Process> process_;
};

// A token issuer (tests/support/token_server.py) with its own signing key and certificate.
class TokenServer {
 public:
  explicit TokenServer(const std::string& user_password);
  std::string realm() const { return "http://127.0.0.1:" + std::to_string(process_->port()) + "/token"; }
  std::string cert_file() const { return dir_ / "token.crt"; }

 private:
  TempDir dir_;
  std::unique_ptr<Process> process_;
};

// tests/support/fault_proxy.py in front of upstream "127.0.0.1:port" with the given flags.
class FaultProxy {
 public:
  FaultProxy(const std::string& upstream, std::vector<std::string> flags);
  std::string host() const { return "127.0.0.1:" + std::to_string(process_->port()); }

 private:
  TempDir dir_;
  std::unique_ptr<Process> process_;
};

// Builds an OCI layout with tests/support/oci_image.py (kind: image, index, artifact) and
// pushes it with skopeo (--preserve-digests) to docker://dest; throws on failure.
void build_and_push(const std::string& kind, const std::vector<std::string>& args, const std::string& dest_ref,
                    const std::string& skopeo_dest_flags = "--dest-tls-verify=false");
// `skopeo inspect --raw`; nullopt when the manifest does not exist or cannot be read.
std::optional<std::string> skopeo_raw(const std::string& ref, const std::string& flags = "--tls-verify=false");

}  // namespace ferry::testing
